"""Binance USD-M wire formats for the fake venue: exchangeInfo, orders, algo orders, positions.

Shapes follow Binance's documented responses closely enough that ccxt's own parsers read
them; values come from the paper engine, as strings (Binance never sends JSON numbers for
prices and quantities).
"""
from __future__ import annotations

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
    return max(-step.normalize().as_tuple().exponent, 0)


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
                {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
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
_ALGO_STATUS = {"open": "NEW", "filled": "FINISHED", "cancelled": "CANCELED", "expired": "EXPIRED",
                "rejected": "REJECTED"}


def regular_order(o: PaperOrder, order_id: int, now_ms: int) -> dict:
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


def algo_order(o: PaperOrder, algo_id: int, actual_id: int | None, now_ms: int) -> dict:
    trailing = o.leg is Leg.TRAILING
    filled = o.filled_qty or Decimal(0)
    return {
        "algoId": algo_id, "clientAlgoId": o.cid, "algoType": "CONDITIONAL",
        "orderType": "TRAILING_STOP_MARKET" if trailing else "STOP_MARKET",
        "symbol": market_id(o.symbol), "side": o.side.upper(), "positionSide": "BOTH",
        "timeInForce": "GTC", "quantity": s(o.qty), "algoStatus": _ALGO_STATUS[o.status],
        "triggerPrice": s(o.stop_price), "price": "0", "icebergQuantity": None,
        "selfTradePreventionMode": "EXPIRE_MAKER", "workingType": "CONTRACT_PRICE",
        "priceMatch": "NONE", "closePosition": False, "priceProtect": False, "reduceOnly": True,
        "activatePrice": s(o.activation) if trailing and o.activation else None,
        "callbackRate": s(o.callback_pct) if trailing else None,
        "createTime": now_ms, "updateTime": now_ms, "triggerTime": now_ms if o.status == "filled" else 0,
        "goodTillDate": 0, "actualOrderId": str(actual_id) if actual_id else "",
        "executedQty": s(filled), "avgPrice": s(o.avg_price),
    }


def position_risk(symbol: str, qty: Decimal, entry: Decimal | None, mark: Decimal, now_ms: int) -> dict:
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
