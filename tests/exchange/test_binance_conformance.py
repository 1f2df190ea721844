"""Binance USD-M as documented: algo-order answers (actualQty/actualPrice), ALGO_UPDATE over the
user-data stream, stops stuck between trigger and fill, -2013 for a watched stop, trailing
activation — through real ccxt (REST and ccxt.pro websockets) against the local fake."""
from __future__ import annotations

import io
from decimal import Decimal

import pytest
from loguru import logger

from core.position_types import Leg
from exchange.gateway import OrderRequest, Rejected
from tests.support.ccxt_helpers import binance_venue, gateway  # noqa: F401  (fixture)
from tests.support.helpers import SYM, wait_for

BTC = SYM["BTC"]
STOP = "wt-p1-s1-2"




@pytest.fixture
def open_gateway(venue):
    made = []

    def _open(*extra: str, transport: str = "poll"):
        if transport == "ws":
            extra = (f"exchange.ws_url='{venue.ws_url}'", "exchange.poll_interval_ms=60000", *extra)
        g = gateway(venue.url, *extra)
        made.append(g)
        return g

    yield _open
    for g in made:
        g.close()


def protected(g) -> None:
    g.place_order(OrderRequest("wt-p1-e1-1", BTC, Leg.ENTRY, "buy", Decimal("0.003")), 2)
    g.place_order(OrderRequest(STOP, BTC, Leg.STOP, "sell", Decimal("0.003"), stop_price=Decimal("63700")), 2)


def listening(g):
    orders = []
    g.subscribe(lambda s, p: None, orders.append)
    if g.feed.websocket:
        wait_for(lambda: g.feed.ws_prices_up, 10, "the price socket")
    return orders


def raw_algo(g, cid: str) -> dict:
    return g.loop.call(g.ex.fapiPrivateGetAlgoOrder({"symbol": "BTCUSDT", "clientAlgoId": cid}), 2)


# ---- Query Algo Order: a fired stop is read from actualQty / actualPrice ----------------


def test_a_fired_stop_answers_with_the_documented_algo_shape(open_gateway, venue):
    g = open_gateway()
    protected(g)
    venue.set_price(BTC, Decimal("63650"))
    raw = raw_algo(g, STOP)
    assert raw["algoStatus"] == "FINISHED" and raw["actualOrderId"] != ""
    assert (raw["actualQty"], raw["actualPrice"]) == ("0.003", "63650")
    assert "executedQty" not in raw and "avgPrice" not in raw


def test_a_finished_algo_order_is_read_as_a_fill_at_its_actual_price(open_gateway, venue):
    g = open_gateway()
    protected(g)
    venue.set_price(BTC, Decimal("63650"))
    venue.set_price(BTC, Decimal("64000"))  # the market moves on: the fill price is the venue's, not this
    s = g.fetch_order(BTC, STOP, 2)
    assert (s.status, s.filled_qty, s.avg_price) == ("filled", Decimal("0.003"), Decimal("63650"))


def test_a_finished_algo_order_without_its_price_is_read_from_its_market_order(open_gateway, venue):
    g = open_gateway()
    protected(g)
    venue.set_price(BTC, Decimal("63650"))
    venue.inject("GET /fapi/v1/algoOrder", outcome="no_actual_price")
    s = g.fetch_order(BTC, STOP, 2)
    assert (s.status, s.avg_price) == ("filled", Decimal("63650"))
    child_id = raw_algo(g, STOP)["actualOrderId"]
    assert {"symbol": "BTCUSDT", "orderId": child_id} in venue.calls("GET /fapi/v1/order")


def test_a_finished_algo_order_whose_market_order_expired_is_no_fill(open_gateway, venue):
    g = open_gateway()
    protected(g)
    venue.inject("trigger", outcome="expire")
    venue.set_price(BTC, Decimal("63650"))
    s = g.fetch_order(BTC, STOP, 2)
    assert (s.status, s.filled_qty, s.avg_price) == ("expired", 0, None)
    assert [p.qty for p in g.positions(2)] == [Decimal("0.003")]


# ---- ALGO_UPDATE over the user-data stream ---------------------------------------------


@pytest.mark.parametrize("held", ["triggering", "triggered"])
def test_a_triggered_stop_is_not_a_fill_and_stays_watched(open_gateway, venue, held):
    g = open_gateway(transport="ws")
    orders = listening(g)
    protected(g)
    venue.inject("trigger", outcome=held)
    venue.set_price(BTC, Decimal("63650"))
    wait_for(lambda: STOP in g.feed._triggered, 5, f"the {held.upper()} event")
    assert orders == [] and STOP in g.feed.watched()


def test_a_trigger_then_its_fill_over_the_stream_delivers_the_fill_once(open_gateway, venue):
    g = open_gateway(transport="ws")
    orders = listening(g)
    protected(g)
    venue.set_price(BTC, Decimal("63650"))
    (fill,) = wait_for(lambda: orders, 5, "the fill")
    assert (fill.status, fill.avg_price, fill.filled_qty) == ("filled", Decimal("63650"), Decimal("0.003"))
    assert g.feed.stats.fills == 1 and STOP not in g.feed.watched()


# ---- a stop stuck between trigger and fill ---------------------------------------------


@pytest.mark.parametrize("transport", ["ws", "poll"])
def test_a_stop_stuck_past_the_bound_is_alarmed_and_no_longer_protecting(open_gateway, venue, transport):
    sink = io.StringIO()
    handle = logger.add(sink, level="ERROR", format="{level} {message}")
    try:
        g = open_gateway("exchange.trigger_stuck_s=0.3", transport=transport)
        orders = listening(g)
        protected(g)
        venue.inject("trigger", outcome="triggering")
        venue.set_price(BTC, Decimal("63650"))
        (update,) = wait_for(lambda: orders, 10, "the stuck alarm")
    finally:
        logger.remove(handle)
    assert (update.cid, update.status) == (STOP, "stuck")
    assert "ERROR" in sink.getvalue() and "no longer counted as protecting" in sink.getvalue()
    assert g.open_orders(BTC, 2) == []  # listed by the venue, but a reconcile must not keep it
    assert STOP in g.feed.watched()  # a late fill is still delivered


# ---- -2013 for a watched stop -----------------------------------------------------------


def test_a_watched_stop_the_venue_does_not_know_is_handed_to_its_position(open_gateway, venue):
    g = open_gateway()
    orders = listening(g)
    protected(g)
    venue.inject("GET /fapi/v1/algoOrder", code=-2013)
    venue.set_price(BTC, Decimal("63650"))  # it left the open list; the lookup answers -2013
    (update,) = wait_for(lambda: orders, 5, "the hand-over")
    assert (update.cid, update.status) == (STOP, "not_found")


# ---- trailing activation and callback rate ----------------------------------------------


def test_a_trailing_activation_already_reached_is_refused_by_the_venue(open_gateway):
    g = open_gateway()
    g.place_order(OrderRequest("wt-p1-e1-1", BTC, Leg.ENTRY, "buy", Decimal("0.003")), 2)
    with pytest.raises(Rejected) as err:  # a SELL trailing needs activatePrice above the latest price
        g.place_order(OrderRequest("wt-p1-t1-3", BTC, Leg.TRAILING, "sell", Decimal("0.003"),
                                   activation=Decimal("65000"), callback_pct=Decimal("0.5")), 2)
    assert err.value.code == -2021


def test_a_trailing_without_activation_arms_at_the_latest_price(open_gateway, venue):
    g = open_gateway()
    g.place_order(OrderRequest("wt-p1-e1-1", BTC, Leg.ENTRY, "buy", Decimal("0.003")), 2)
    t = g.place_order(OrderRequest("wt-p1-t1-3", BTC, Leg.TRAILING, "sell", Decimal("0.003"),
                                   callback_pct=Decimal("1")), 2)
    assert t.status == "open" and "activatePrice" not in venue.calls("POST /fapi/v1/algoOrder")[-1]
    venue.set_price(BTC, Decimal("65500"))
    venue.set_price(BTC, Decimal("64840"))  # 1 % under the best since placement
    assert g.fetch_order(BTC, "wt-p1-t1-3", 2).status == "filled"
