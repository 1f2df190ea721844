"""Binance USD-M wire formats for the fake venue: exchangeInfo, orders, algo orders, positions,
and the user-data / market stream events.

Every shape is the one Binance documents (the page, or the model of Binance's own connector
SDK generated from its API spec, is named next to each); values come from the paper engine,
as strings (Binance never sends JSON numbers for prices and quantities).
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from core.position_types import Leg
from core.types import MarketSpec
from exchange.paper.engine import PaperOrder

ORDER_TYPES = ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET",
               "TRAILING_STOP_MARKET"]


def market_id(symbol: str) -> str:
    """'BTC/USDT:USDT' -> 'BTCUSDT'."""
    base, rest = symbol.split("/", 1)
    return base + rest.split(":", 1)[0]


def _decimals(step: Decimal) -> int:
    exponent = step.normalize().as_tuple().exponent
    assert isinstance(exponent, int), step  # a finite step
    return max(-exponent, 0)


def s(d: Decimal | None) -> str:
    return "0" if d is None else format(d.normalize(), "f")


def exchange_info(markets: dict[str, MarketSpec], now_ms: int) -> dict:
    symbols = []
    for sym, spec in markets.items():
        base, rest = sym.split("/", 1)
        quote = rest.split(":", 1)[0]
        symbols.append({
            "symbol": market_id(sym), "pair": market_id(sym), "contractType": "PERPETUAL",
            "deliveryDate": 4133404800000, "onboardDate": 1569398400000, "status": "TRADING",
            "baseAsset": base, "quoteAsset": quote, "marginAsset": quote,
            "pricePrecision": _decimals(spec.tick_size), "quantityPrecision": _decimals(spec.lot_size),
            "baseAssetPrecision": 8, "quotePrecision": 8, "underlyingType": "COIN",
            "triggerProtect": "0.0500", "liquidationFee": "0.012500", "marketTakeBound": "0.05",
            "filters": [
                {"filterType": "PRICE_FILTER", "minPrice": s(spec.tick_size), "maxPrice": "10000000",
                 "tickSize": s(spec.tick_size)},
                {"filterType": "LOT_SIZE", "minQty": s(spec.min_qty), "maxQty": "1000000",
                 "stepSize": s(spec.lot_size)},
                {"filterType": "MARKET_LOT_SIZE", "minQty": s(spec.min_qty), "maxQty": "1000000",
                 "stepSize": s(spec.lot_size)},
                {"filterType": "MAX_NUM_ORDERS", "limit": 200},
                {"filterType": "MIN_NOTIONAL", "notional": s(spec.min_notional)},
                {"filterType": "PERCENT_PRICE", "multiplierUp": "1.0500", "multiplierDown": "0.9500",
                 "multiplierDecimal": "4"},
            ],
            "orderTypes": ORDER_TYPES, "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"],
        })
    return {"timezone": "UTC", "serverTime": now_ms, "futuresType": "U_MARGINED",
            "rateLimits": [
                {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 2400},
                {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 300}],
            "exchangeFilters": [], "assets": [{"asset": "USDT", "marginAvailable": True}],
            "symbols": symbols}


_REGULAR_STATUS = {"open": "NEW", "filled": "FILLED", "cancelled": "CANCELED", "expired": "EXPIRED",
                   "rejected": "REJECTED"}
# An engine order that expired was triggered and its child order did not fill: Binance
# reports such an algo order FINISHED (EXPIRED is an algo order's own GTD expiry).
_ALGO_STATUS = {"open": "NEW", "filled": "FINISHED", "cancelled": "CANCELED", "expired": "FINISHED",
                "rejected": "REJECTED"}


def regular_order(o: PaperOrder, order_id: int, now_ms: int) -> dict:
    """New Order (newOrderRespType=RESULT) / Query Order response: SDK models `NewOrderResponse`,
    `QueryOrderResponse`."""
    filled = o.filled_qty or Decimal(0)
    return {
        "orderId": order_id, "symbol": market_id(o.symbol), "status": _REGULAR_STATUS[o.status],
        "clientOrderId": o.cid, "price": "0", "avgPrice": s(o.avg_price), "origQty": s(o.qty),
        "executedQty": s(filled), "cumQty": s(filled),
        "cumQuote": s(filled * o.avg_price if o.avg_price else Decimal(0)),
        "timeInForce": "GTC", "type": "MARKET", "origType": "MARKET",
        "reduceOnly": o.leg is not Leg.ENTRY, "closePosition": False, "side": o.side.upper(),
        "positionSide": "BOTH", "stopPrice": "0", "workingType": "CONTRACT_PRICE",
        "priceProtect": False, "priceMatch": "NONE", "selfTradePreventionMode": "EXPIRE_MAKER",
        "goodTillDate": 0, "time": now_ms, "updateTime": now_ms,
    }


@dataclass(frozen=True, slots=True)
class Child:
    """The matching-engine order a triggered algo order placed (its `actualOrderId`)."""

    order_id: int
    cid: str  # Binance's own id: the docs do not say the child carries our clientAlgoId
    status: str  # FILLED | EXPIRED
    qty: Decimal
    avg_price: Decimal | None


def algo_order(o: PaperOrder, algo_id: int, child: Child | None, now_ms: int, *, status: str | None = None,
               trigger_ms: int = 0, hide_actual_price: bool = False) -> dict:
    """Query Algo Order / Current All Algo Open Orders / New Algo Order response.

    Binance SDK models `QueryAlgoOrderResponse`, `CurrentAllAlgoOpenOrdersResponseInner`,
    `NewAlgoOrderResponse` (binance-connector-python, derivatives_trading_usds_futures);
    https://developers.binance.com/docs/derivatives/usds-margined-futures/trade/rest-api/Query-Algo-Order
    `actualOrderId` "empty string if not triggered", `actualPrice` "0 if not triggered; average
    price if filled/partially filled", `actualQty` "only present when filled/partially filled";
    there is no `executedQty` and no `avgPrice`.
    """
    trailing = o.leg is Leg.TRAILING
    out = {
        "algoId": algo_id, "clientAlgoId": o.cid, "algoType": "CONDITIONAL",
        "orderType": "TRAILING_STOP_MARKET" if trailing else "STOP_MARKET",
        "symbol": market_id(o.symbol), "side": o.side.upper(), "positionSide": "BOTH",
        "timeInForce": "GTC", "quantity": s(o.qty), "algoStatus": status or _ALGO_STATUS[o.status],
        "actualOrderId": str(child.order_id) if child else "",
        "actualPrice": "0" if child is None or hide_actual_price else s(child.avg_price),
        "triggerPrice": s(o.stop_price) if not trailing else "0", "price": "0", "icebergQuantity": None,
        "selfTradePreventionMode": "EXPIRE_MAKER", "workingType": "CONTRACT_PRICE",
        "priceMatch": "NONE", "closePosition": o.close_position, "priceProtect": False,
        "reduceOnly": not o.close_position, "createTime": now_ms, "updateTime": now_ms, "triggerTime": trigger_ms, "goodTillDate": 0,
    }
    if trailing:  # NewAlgoOrderResponse carries them; Binance sends them for trailing orders
        out["activatePrice"] = s(o.activation) if o.activation else None
        out["callbackRate"] = s(o.callback_pct)
    if child is not None:
        out["actualType"] = "MARKET"
        if child.status == "FILLED":
            out["actualQty"] = s(child.qty)
    return out


def child_order(c: Child, o: PaperOrder, now_ms: int) -> dict:
    """Query Order response for the child (GET /fapi/v1/order?orderId=<actualOrderId>):
    SDK model `QueryOrderResponse`."""
    filled = c.qty if c.status == "FILLED" else Decimal(0)
    return {
        "orderId": c.order_id, "symbol": market_id(o.symbol), "status": c.status, "clientOrderId": c.cid,
        "price": "0", "avgPrice": s(c.avg_price) if filled else "0", "origQty": s(o.qty),
        "executedQty": s(filled), "cumQuote": s(filled * c.avg_price if filled and c.avg_price else Decimal(0)),
        "timeInForce": "GTC", "type": "MARKET", "origType": "MARKET", "reduceOnly": True,
        "closePosition": False, "side": o.side.upper(), "positionSide": "BOTH", "stopPrice": "0",
        "workingType": "CONTRACT_PRICE", "priceProtect": False, "priceMatch": "NONE",
        "selfTradePreventionMode": "EXPIRE_MAKER", "goodTillDate": 0, "time": now_ms, "updateTime": now_ms,
    }


def position_risk(symbol: str, qty: Decimal, entry: Decimal | None, mark: Decimal, now_ms: int) -> dict:
    """Position Information V3: SDK model `PositionInformationV3ResponseInner`."""
    upnl = (mark - entry) * qty if entry is not None else Decimal(0)
    return {
        "symbol": market_id(symbol), "positionSide": "BOTH", "positionAmt": s(qty),
        "entryPrice": s(entry), "breakEvenPrice": s(entry), "markPrice": s(mark),
        "unRealizedProfit": s(upnl), "liquidationPrice": "0", "isolatedMargin": "0",
        "notional": s(qty * mark), "marginAsset": "USDT", "isolatedWallet": "0",
        "initialMargin": s(abs(qty * mark) / 10), "maintMargin": s(abs(qty * mark) / 200),
        "positionInitialMargin": s(abs(qty * mark) / 10), "openOrderInitialMargin": "0",
        "adl": 0, "bidNotional": "0", "askNotional": "0", "updateTime": now_ms,
    }


def balance(total: Decimal, now_ms: int) -> list[dict]:
    return [{"accountAlias": "fake", "asset": "USDT", "balance": s(total), "crossWalletBalance": s(total),
             "crossUnPnl": "0", "availableBalance": s(total), "maxWithdrawAmount": s(total),
             "marginAvailable": True, "updateTime": now_ms}]
