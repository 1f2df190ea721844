"""Bybit linear at the adapter level, without HTTP: the parameters we let through, the trap we
refuse (`trailingPercent`), and lookup by orderLinkId through ccxt's real request builders and
parsers (only the transport — ccxt's implicit endpoint methods — is replaced by canned replies)."""
from __future__ import annotations

import asyncio
from decimal import Decimal

import ccxt.async_support as ccxt
import pytest

from core.position_types import Leg
from exchange.ccxt.venues import BybitLinear
from exchange.gateway import OrderRequest, Rejected
from tests.support.helpers import SYM

BTC = SYM["BTC"]


@pytest.fixture
def ex():
    e = ccxt.bybit({"apiKey": "k", "secret": "s"})
    e.set_markets([{
        "id": "BTCUSDT", "symbol": BTC, "base": "BTC", "quote": "USDT", "settle": "USDT", "baseId": "BTC",
        "quoteId": "USDT", "settleId": "USDT", "type": "swap", "swap": True, "linear": True, "inverse": False,
        "contract": True, "spot": False, "option": False, "future": False, "margin": False, "active": True,
        "contractSize": 1, "precision": {"price": 0.1, "amount": 0.001},
        "limits": {"amount": {"min": 0.001}, "cost": {"min": 5}}, "info": {}}])
    yield e
    asyncio.run(e.close())


def test_a_trailing_percent_order_is_refused_by_the_adapter():
    req = OrderRequest("wt-p1-t1-3", BTC, Leg.TRAILING, "sell", Decimal("0.003"),
                       activation=Decimal("65650"), callback_pct=Decimal("0.5"))
    with pytest.raises(Rejected, match="trailingPercent"):
        BybitLinear().order_args(req)


def test_why_it_is_refused_ccxt_would_send_a_plain_reduce_only_market_order(ex):
    request = ex.create_order_request(BTC, "market", "sell", "0.003", None,
                                      {"trailingPercent": "0.5", "reduceOnly": True})
    assert "triggerPrice" not in request and request["orderType"] == "Market"  # closes at once


def test_a_stop_becomes_a_reduce_only_conditional_order_with_our_order_link_id(ex):
    kind, params = BybitLinear().order_args(
        OrderRequest("wt-p1-s1-2", BTC, Leg.STOP, "sell", Decimal("0.003"), stop_price=Decimal("63700.0")))
    assert params == {"clientOrderId": "wt-p1-s1-2", "reduceOnly": True, "stopLossPrice": "63700.0"}
    request = ex.create_order_request(BTC, kind, "sell", "0.003", None, params)
    assert request["orderLinkId"] == "wt-p1-s1-2" and request["reduceOnly"] is True
    assert request["triggerPrice"] == "63700" and request["triggerDirection"] == 2  # fires on the way down
    assert request["category"] == "linear" and "trailingStop" not in request


def test_lookup_by_client_id_asks_open_orders_then_history_by_order_link_id(ex):
    seen = []
    filled = {"orderId": "1", "orderLinkId": "wt-p1-s1-2", "symbol": "BTCUSDT", "side": "Sell",
              "orderType": "Market", "orderStatus": "Filled", "qty": "0.003", "cumExecQty": "0.003",
              "avgPrice": "63650.1", "triggerPrice": "63700", "createdTime": "1", "updatedTime": "2"}

    async def realtime(params):
        seen.append(("realtime", params.get("orderLinkId")))
        return {"retCode": 0, "retMsg": "OK", "result": {"list": []}}

    async def history(params):
        seen.append(("history", params.get("orderLinkId")))
        return {"retCode": 0, "retMsg": "OK", "result": {"list": [filled]}}

    ex.privateGetV5OrderRealtime, ex.privateGetV5OrderHistory = realtime, history
    venue = BybitLinear()
    state = venue.state(asyncio.run(venue.fetch(ex, BTC, "wt-p1-s1-2")))
    assert seen == [("realtime", "wt-p1-s1-2"), ("history", "wt-p1-s1-2")]
    assert (state.cid, state.leg, state.status) == ("wt-p1-s1-2", Leg.STOP, "filled")
    assert (state.avg_price, state.filled_qty) == (Decimal("63650.1"), Decimal("0.003"))
