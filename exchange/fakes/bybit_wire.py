"""Bybit v5 wire formats for the fake venue: the envelope, instruments, tickers, orders, positions.

Every shape follows the page of Bybit's API docs (github.com/bybit-exchange/docs, rendered at
bybit-exchange.github.io/docs/v5/...) named next to it. Numbers are strings, as Bybit sends
them; values come from the paper engine.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from decimal import Decimal

from core.position_types import Leg
from core.types import MarketSpec
from exchange.paper.engine import PaperOrder

# Symbol names: USDT perpetuals are BASEUSDT; USDC perpetuals are BASEPERP (docs v5/enum "symbol").
USDC_PERP_SUFFIX = "PERP"


def now_ms() -> int:
    return int(time.time() * 1000)


def s(d: Decimal | None) -> str:
    return "" if d is None else format(d.normalize(), "f")


def market_id(symbol: str) -> str:
    """'BTC/USDT:USDT' -> 'BTCUSDT'; 'BTC/USDC:USDC' -> 'BTCPERP'."""
    base, rest = symbol.split("/", 1)
    quote, settle = rest.split(":", 1)
    return base + (USDC_PERP_SUFFIX if settle == "USDC" else quote)


def settle_of(symbol: str) -> str:
    return symbol.rsplit(":", 1)[1]


def envelope(result: object, code: int = 0, msg: str = "OK", now: int | None = None) -> dict:
    """Every v5 answer: {retCode, retMsg, result, retExtInfo, time} (docs v5/intro "Response")."""
    return {"retCode": code, "retMsg": msg, "result": result if result is not None else {},
            "retExtInfo": {}, "time": now_ms() if now is None else now}


def instrument(symbol: str, spec: MarketSpec) -> dict:
    """market/instrument.mdx, linear tab ("official USDT Perpetual instrument structure")."""
    base, rest = symbol.split("/", 1)
    quote = rest.split(":", 1)[0]
    return {
        "symbol": market_id(symbol), "contractType": "LinearPerpetual", "status": "Trading",
        "baseCoin": base, "quoteCoin": quote, "settleCoin": settle_of(symbol),
        "launchTime": "1585526400000", "deliveryTime": "0", "deliveryFeeRate": "",
        "priceScale": str(_decimals(spec.tick_size)),
        "leverageFilter": {"minLeverage": "1", "maxLeverage": "100.00", "leverageStep": "0.01"},
        "priceFilter": {"minPrice": s(spec.tick_size), "maxPrice": "1999999.80", "tickSize": s(spec.tick_size)},
        "lotSizeFilter": {"maxOrderQty": "1000000", "minOrderQty": s(spec.min_qty), "qtyStep": s(spec.lot_size),
                          "postOnlyMaxOrderQty": "1000000", "maxMktOrderQty": "1000000",
                          "minNotionalValue": s(spec.min_notional)},
        "unifiedMarginTrade": True, "fundingInterval": 480, "copyTrading": "both",
        "upperFundingRate": "0.00375", "lowerFundingRate": "-0.00375", "isPreListing": False,
        "preListingInfo": None, "displayName": "",
    }


def _decimals(step: Decimal) -> int:
    exponent = step.normalize().as_tuple().exponent
    assert isinstance(exponent, int), step  # a finite step
    return max(-exponent, 0)


def ticker(symbol: str, price: Decimal) -> dict:
    """market/tickers.mdx, linear tab (the websocket `tickers.<SYMBOL>` data carries the same names)."""
    p = s(price)
    return {"symbol": market_id(symbol), "lastPrice": p, "indexPrice": p, "markPrice": p,
            "prevPrice24h": p, "price24hPcnt": "0", "highPrice24h": p, "lowPrice24h": p,
            "prevPrice1h": p, "openInterest": "0", "openInterestValue": "0", "turnover24h": "0",
            "volume24h": "0", "fundingRate": "0.0001", "nextFundingTime": str(now_ms() + 3600_000),
            "predictedDeliveryPrice": "", "basisRate": "", "deliveryFeeRate": "", "deliveryTime": "0",
            "ask1Size": "1", "bid1Price": p, "ask1Price": p, "bid1Size": "1", "basis": ""}


@dataclass
class OrderRecord:
    """What the fake remembers of one order beyond the engine's view of it."""

    order_id: str
    cid: str
    symbol: str
    side: str  # "buy" | "sell"
    qty: Decimal
    leg: Leg
    trigger_price: Decimal | None
    trigger_direction: int
    created_ms: int
    visible_ms: int  # asynchronous creation: unseen by order queries before this
    status: str | None = None  # set for orders the engine never saw (refused market orders)
    filled: Decimal | None = None  # ... and their fill
    avg: Decimal | None = None
    closed_ms: int | None = None
    parent: str | None = None  # an attached stop-loss: its entry's orderLinkId (it has none of its own)


_STATUS = {"filled": "Filled", "cancelled": "Cancelled", "rejected": "Rejected", "expired": "Cancelled"}


def order_status(r: OrderRecord, o: PaperOrder | None) -> str:
    """docs v5/enum "orderStatus": a resting conditional order is Untriggered, one cancelled
    before it triggered is Deactivated; a market order cut short after a partial fill is
    PartiallyFilledCanceled (IOC semantics, order/create-order)."""
    status = r.status or (o.status if o else "rejected")
    conditional = r.leg in (Leg.STOP, Leg.TRAILING)
    if status == "open":
        return "Untriggered" if conditional else ("PartiallyFilled" if (r.filled or 0) > 0 else "New")
    if status == "cancelled" and conditional:
        return "Deactivated"
    if status == "cancelled" and (r.filled or 0) > 0:
        return "PartiallyFilledCanceled"
    return _STATUS[status]


def reject_reason(r: OrderRecord, o: PaperOrder | None) -> str:
    """docs v5/enum "rejectReason": a fired stop whose market order found nothing to fill is
    cancelled with EC_NoImmediateQtyToFill ("a maker could not be found to fill your order")."""
    return "EC_NoImmediateQtyToFill" if r.status is None and o is not None and o.status == "expired" else "EC_NoError"


def triggered(row: dict) -> dict:
    """A fired conditional order at its "Triggered" moment (docs v5/enum "orderStatus":
    "instantaneous state for conditional orders from Untriggered to New"): nothing filled yet."""
    return row | {"orderStatus": "Triggered", "avgPrice": "", "cumExecQty": "0", "cumExecValue": "0",
                  "leavesQty": row["qty"], "rejectReason": "EC_NoError"}


def order(r: OrderRecord, o: PaperOrder | None, now: int) -> dict:
    """order/open-order.mdx (realtime) and order/order-list.mdx (history): one row of `list`.

    The stop-loss a `tpslMode=Partial` entry creates at its fill (create-order.mdx: "it will
    create tp/sl orders with the qty you actually fill") is a conditional order of its own:
    `stopOrderType` PartialStopLoss, `createType` CreateByPartialStopLoss (docs v5/enum), no
    `orderLinkId`, and `parentOrderLinkId` naming its entry ("the linked parent order for
    attached take-profit and stop-loss orders")."""
    filled = r.filled if r.filled is not None else (o.filled_qty if o else Decimal(0))
    avg = r.avg if r.status is not None else (o.avg_price if o else None)
    conditional = r.leg in (Leg.STOP, Leg.TRAILING)
    value = filled * avg if avg is not None else Decimal(0)
    return {
        "orderId": r.order_id, "orderLinkId": "" if r.parent else r.cid, "blockTradeId": "", "symbol": market_id(r.symbol),
        "price": "0", "qty": s(r.qty), "side": "Buy" if r.side == "buy" else "Sell", "isLeverage": "",
        "positionIdx": 0, "orderStatus": order_status(r, o),
        "createType": "CreateByPartialStopLoss" if r.parent else "CreateByUser",
        "cancelType": "UNKNOWN", "rejectReason": reject_reason(r, o), "avgPrice": s(avg) if filled else "",
        "leavesQty": s(r.qty - filled) if order_status(r, o) in ("New", "PartiallyFilled", "Untriggered") else "0",
        "leavesValue": "0", "cumExecQty": s(filled) or "0", "cumExecValue": s(value) or "0",
        "cumExecFee": "0", "timeInForce": "IOC", "orderType": "Market",
        "stopOrderType": ("PartialStopLoss" if r.parent else "Stop") if conditional else "", "orderIv": "",
        "triggerPrice": s(r.trigger_price), "takeProfit": "", "stopLoss": "", "tpTriggerBy": "",
        "slTriggerBy": "", "triggerDirection": r.trigger_direction,
        "triggerBy": "LastPrice" if conditional else "", "lastPriceOnCreated": "",
        "reduceOnly": r.leg is not Leg.ENTRY, "closeOnTrigger": False, "smpType": "None",
        "smpGroup": 0, "smpOrderId": "", "tpslMode": "Partial" if r.parent else "", "tpLimitPrice": "",
        "slLimitPrice": "", "placeType": "", "createdTime": str(r.created_ms), "updatedTime": str(r.closed_ms or now),
        "parentOrderLinkId": r.parent or "",
    }


def position(symbol: str, qty: Decimal, entry: Decimal | None, mark: Decimal, leverage: str,
             idx: int = 0) -> dict:
    """position/position.mdx: one row of `list` (a flat position when asked by symbol)."""
    size = abs(qty)
    side = "" if qty == 0 else ("Buy" if qty > 0 else "Sell")
    return {
        "positionIdx": idx, "riskId": 1, "riskLimitValue": "2000000", "symbol": market_id(symbol),
        "side": side, "size": s(size) or "0", "avgPrice": s(entry) if qty else "0",
        "positionValue": s(size * entry) if qty and entry else "", "tradeMode": 0,
        "positionStatus": "Normal", "autoAddMargin": 0, "adlRankIndicator": 2 if qty else 0,
        "leverage": leverage, "positionBalance": "0", "markPrice": s(mark), "liqPrice": "",
        "bustPrice": "", "positionMM": "0", "positionIM": "0", "tpslMode": "Full",
        "takeProfit": "0.00", "stopLoss": "0.00", "trailingStop": "0.00",
        "unrealisedPnl": s((mark - entry) * qty) if qty and entry else "0", "curRealisedPnl": "0",
        "cumRealisedPnl": "0", "seq": 1, "isReduceOnly": False, "mmrSysUpdatedTime": "",
        "leverageSysUpdatedTime": "", "sessionAvgPrice": "", "createdTime": "1676538056258",
        "updatedTime": str(now_ms()),
    }


def execution(r: OrderRecord, qty: Decimal, price: Decimal, exec_id: str) -> dict:
    """websocket/private/execution.mdx: one element of `data`."""
    return {"category": "linear", "symbol": market_id(r.symbol), "execFee": "0", "execId": exec_id,
            "execPrice": s(price), "execQty": s(qty), "execType": "Trade", "execValue": s(qty * price),
            "isMaker": False, "feeRate": "0.00055", "tradeIv": "", "markIv": "", "blockTradeId": "",
            "markPrice": s(price), "indexPrice": "", "underlyingPrice": "", "leavesQty": "0",
            "orderId": r.order_id, "orderLinkId": r.cid, "orderPrice": "0", "orderQty": s(r.qty),
            "orderType": "Market", "stopOrderType": "Stop" if r.leg in (Leg.STOP, Leg.TRAILING) else "",
            "side": "Buy" if r.side == "buy" else "Sell", "execTime": str(now_ms()), "isLeverage": "0",
            "closedSize": "", "seq": 1}
