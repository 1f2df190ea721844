"""Contract tests: the ccxt adapter with a real ccxt client over loopback HTTP, against a venue
shaped like Binance USD-M (paper engine behind it)."""
from __future__ import annotations

import socket
from decimal import Decimal

import pytest

from core.position_types import Leg
from exchange.gateway import (
    Fenced, OrderNotFound, OrderRequest, Rejected, Retryable, UnknownOutcome, fence_scope,
)
from exchange.paper.universe import paper_markets
from tests.support.ccxt_helpers import KEY, SECRET, fake_venue, gateway
from tests.support.helpers import SYM, wait_for

BTC = SYM["BTC"]


@pytest.fixture
def venue():
    v = fake_venue()
    yield v
    v.stop()


@pytest.fixture
def gw(venue, monkeypatch):
    monkeypatch.setenv("BINANCE_API_KEY", KEY)
    monkeypatch.setenv("BINANCE_API_SECRET", SECRET)
    g = gateway(venue.url)
    yield g
    g.close()


def entry(cid="wt-p1-e1-1", qty="0.003", side="buy"):
    return OrderRequest(cid, BTC, Leg.ENTRY, side, Decimal(qty))


def stop(cid="wt-p1-s1-2", price="63700.0", side="sell", qty="0.003"):
    return OrderRequest(cid, BTC, Leg.STOP, side, Decimal(qty), stop_price=Decimal(price))


def trailing(cid="wt-p1-t1-3", cb="0.5", act="65650.0"):
    return OrderRequest(cid, BTC, Leg.TRAILING, "sell", Decimal("0.003"), activation=Decimal(act),
                        callback_pct=Decimal(cb))


def test_markets_come_from_exchange_info_as_exact_decimals(gw, venue):
    specs = gw.markets()
    assert specs == paper_markets()  # tick, lot, min qty, min notional: Decimal-equal, no float drift
    # loading markets took public calls only (exchange info, and the clock offset): no signed
    # spot/sapi requests; then the account set-up checked the position mode
    assert [(m, p) for m, p, _ in venue.requests] == [("GET", "/fapi/v1/exchangeInfo"), ("GET", "/fapi/v1/time"),
                                                      ("GET", "/fapi/v1/positionSide/dual")]


def test_entry_stop_and_native_trailing_reach_the_right_endpoints(gw, venue):
    e = gw.place_order(entry(), 2)
    assert (e.status, e.filled_qty, e.avg_price) == ("filled", Decimal("0.003"), Decimal("65000"))
    (order,) = venue.calls("POST /fapi/v1/order")
    assert order["newClientOrderId"] == "wt-p1-e1-1" and order["type"] == "MARKET"
    assert order["quantity"] == "0.003" and "reduceOnly" not in order

    s = gw.place_order(stop(), 2)
    assert (s.status, s.leg, s.stop_price) == ("open", Leg.STOP, Decimal("63700"))
    t = gw.place_order(trailing(), 2)
    assert (t.status, t.leg) == ("open", Leg.TRAILING)
    algo_stop, algo_trail = venue.calls("POST /fapi/v1/algoOrder")
    assert algo_stop["type"] == "STOP_MARKET" and algo_stop["algoType"] == "CONDITIONAL"
    assert algo_stop["clientAlgoId"] == "wt-p1-s1-2" and algo_stop["reduceOnly"] == "true"
    assert Decimal(algo_stop["triggerPrice"]) == Decimal("63700")
    assert algo_trail["type"] == "TRAILING_STOP_MARKET" and algo_trail["callbackRate"] == "0.5"
    assert Decimal(algo_trail["activatePrice"]) == Decimal("65650") and algo_trail["reduceOnly"] == "true"
    assert {o.cid for o in gw.open_orders(BTC, 2)} == {"wt-p1-s1-2", "wt-p1-t1-3"}
    (pos,) = gw.positions(2)
    assert (pos.symbol, pos.qty, pos.entry_price) == (BTC, Decimal("0.003"), Decimal("65000"))


@pytest.mark.parametrize("asked, sent", [("25", "20"), ("0.05", "0.1"), ("0.555", "0.55"), ("15", "15")])
def test_trailing_callback_is_clamped_to_the_venue_range(gw, venue, asked, sent):
    gw.place_order(entry(), 2)
    gw.place_order(trailing(cb=asked), 2)
    assert venue.calls("POST /fapi/v1/algoOrder")[-1]["callbackRate"] == sent


def test_replace_stop_places_the_new_one_before_cancelling_the_old(gw, venue):
    gw.place_order(entry(), 2)
    gw.place_order(stop("wt-p1-s1-2", "63700.0"), 2)
    gw.place_order(stop("wt-p1-s1-3", "64000.0"), 2)
    assert len(venue.engine.open_orders(BTC)) == 2  # both rest for a moment: never none
    c = gw.cancel_order(BTC, "wt-p1-s1-2", 2)
    assert c.status == "cancelled"
    (left,) = gw.open_orders(BTC, 2)
    assert (left.cid, left.stop_price) == ("wt-p1-s1-3", Decimal("64000"))
    assert venue.calls("DELETE /fapi/v1/algoOrder")[0]["clientAlgoId"] == "wt-p1-s1-2"
    assert gw.fetch_order(BTC, "wt-p1-s1-2", 2).status == "cancelled"


def test_read_timeout_on_an_accepted_order_is_resolved_by_lookup_without_a_duplicate(gw, venue):
    venue.inject("POST /fapi/v1/order", delay_s=4, after=True)  # accepted, answer lost
    with pytest.raises(UnknownOutcome):
        gw.place_order(entry(), timeout=1)
    found = gw.fetch_order(BTC, "wt-p1-e1-1", 2)
    assert (found.status, found.filled_qty) == ("filled", Decimal("0.003"))
    assert len(venue.calls("POST /fapi/v1/order")) == 1
    assert [p.qty for p in gw.positions(2)] == [Decimal("0.003")]  # one entry, not two


def test_lookup_of_an_order_never_placed_says_not_found(gw):
    with pytest.raises(OrderNotFound):
        gw.fetch_order(BTC, "wt-p1-s1-77", 2)
    with pytest.raises(OrderNotFound):
        gw.fetch_order(BTC, "wt-p1-e1-78", 2)


@pytest.mark.parametrize("code, route, request_, expected", [
    (-2019, "POST /fapi/v1/order", "entry", Rejected),  # margin insufficient: do not retry
    (-2021, "POST /fapi/v1/algoOrder", "stop", Rejected),  # would trigger: close at market instead
    (-2022, "POST /fapi/v1/order", "exit", Rejected),  # reduce-only refused: nothing left to close
    (-1007, "POST /fapi/v1/algoOrder", "stop", UnknownOutcome),  # backend timeout: look it up
    (-4116, "POST /fapi/v1/algoOrder", "stop", UnknownOutcome),  # duplicate cid: it exists, adopt it
])
def test_each_venue_error_code_maps_to_its_handling(gw, venue, code, route, request_, expected):
    gw.place_order(entry(), 2)
    req = {"entry": entry("wt-p1-e1-9"), "stop": stop(),
           "exit": OrderRequest("wt-p1-x1-9", BTC, Leg.EXIT, "sell", Decimal("0.003"))}[request_]
    venue.inject(route, code=code)
    with pytest.raises(expected) as err:
        gw.place_order(req, 2)
    assert err.value.code == code
    if expected is Rejected:
        assert not isinstance(err.value, OrderNotFound)


def test_real_reduce_only_and_immediate_trigger_refusals_come_back_as_rejected(gw, venue):
    with pytest.raises(Rejected) as err:  # no position: the engine itself answers -2022
        gw.place_order(OrderRequest("wt-p1-x1-1", BTC, Leg.EXIT, "sell", Decimal("0.003")), 2)
    assert err.value.code == -2022 and "ReduceOnly" in str(err.value)
    gw.place_order(entry(), 2)
    with pytest.raises(Rejected) as err:  # a sell stop above the market would fire at once
        gw.place_order(stop(price="66000.0"), 2)
    assert err.value.code == -2021


def test_backend_timeout_on_a_read_is_retryable(gw, venue):
    venue.inject("GET /fapi/v2/ticker/price", code=-1007, status=503)
    with pytest.raises(Retryable):
        gw.price(BTC, 2)
    assert gw.price(BTC, 2) == Decimal("65000")


def test_429_is_honoured_requests_are_held_back_for_retry_after(gw, venue):
    venue.inject("GET /fapi/v2/ticker/price", code=-1003, status=429, retry_after_s=30)
    with pytest.raises(Retryable):
        gw.price(BTC, 2)
    sent = len(venue.requests)
    with pytest.raises(Retryable, match="not sent"):
        gw.place_order(stop(), 2)  # inside the cool-down nothing leaves the process
    assert len(venue.requests) == sent


def test_orders_the_adapter_cannot_express_are_refused_before_sending(gw, venue):
    with pytest.raises(Rejected, match="stop price"):
        gw.place_order(OrderRequest("wt-p1-s1-5", BTC, Leg.STOP, "sell", Decimal("0.003")), 2)
    with pytest.raises(Rejected, match="unknown or untradable symbol"):
        gw.place_order(OrderRequest("wt-p1-e1-5", "NOPE/USDT:USDT", Leg.ENTRY, "buy", Decimal(1)), 2)
    with pytest.raises(Rejected, match="client order id"):
        gw.place_order(entry(cid="wt-" + "x" * 40), 2)
    with pytest.raises(Rejected, match="client order id"):
        gw.place_order(entry(cid="wt p1/e1"), 2)
    with pytest.raises(Rejected, match="unsupported order parameter"):
        gw.venue.check_params({"clientOrderId": "x", "timeInForce": "GTX"})
    assert venue.calls("POST /fapi/v1/order") == [] and venue.calls("POST /fapi/v1/algoOrder") == []


def test_requests_are_signed_with_the_secret_from_the_environment(venue, monkeypatch):
    monkeypatch.setenv("BINANCE_API_KEY", KEY)
    monkeypatch.setenv("BINANCE_API_SECRET", "not-the-secret")
    with pytest.raises(Rejected, match="-1022"):  # the account check at start is signed: no start
        gateway(venue.url).close()


def test_polling_feed_delivers_a_triggered_stop_as_a_fill(gw, venue):
    ticks, orders = {}, []
    gw.subscribe(lambda s, p: ticks.__setitem__(s, p), orders.append)
    gw.place_order(entry(), 2)
    gw.place_order(stop(), 2)
    wait_for(lambda: ticks.get(BTC) == Decimal("65000"), 5, "prices from REST polling")
    venue.set_price(BTC, Decimal("63650"))
    (fill,) = wait_for(lambda: orders, 5, "the stop's fill")
    assert (fill.cid, fill.status, fill.avg_price) == ("wt-p1-s1-2", "filled", Decimal("63650"))
    assert fill.filled_qty == Decimal("0.003") and gw.positions(2) == []
    wait_for(lambda: ticks.get(BTC) == Decimal("63650"), 5, "the new price")


def test_with_the_socket_down_rest_polling_keeps_prices_and_fills_flowing(venue, monkeypatch):
    monkeypatch.setenv("BINANCE_API_KEY", KEY)
    monkeypatch.setenv("BINANCE_API_SECRET", SECRET)
    with socket.socket() as s:  # a loopback port with nobody listening: the socket stays down
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    g = gateway(venue.url, f"exchange.ws_url='ws://127.0.0.1:{dead}'", "exchange.feed='websocket'")
    try:
        ticks, orders = {}, []
        g.subscribe(lambda s, p: ticks.__setitem__(s, p), orders.append)
        g.place_order(entry(), 2)
        g.place_order(stop(), 2)
        wait_for(lambda: g.feed.stats.ws_errors >= 2, 10, "websocket attempts (ccxt.pro, reconnecting)")
        assert not g.feed.ws_prices_up
        venue.set_price(BTC, Decimal("63600"))
        wait_for(lambda: ticks.get(BTC) == Decimal("63600"), 5, "prices by REST polling")
        (fill,) = wait_for(lambda: orders, 5, "the stop's fill by REST polling")
        assert (fill.cid, fill.status) == ("wt-p1-s1-2", "filled")
    finally:
        g.close()


def test_a_fenced_write_never_leaves_the_process(gw, venue):
    """A replaced actor's write is refused at the last moment, on the venue's loop thread."""
    def stale() -> None:
        raise Fenced("epoch 1 of p1 is stale")

    with fence_scope(stale), pytest.raises(Fenced):
        gw.place_order(entry(), timeout=2)
    assert venue.engine.positions() == [] and venue.engine.open_orders() == []
    with fence_scope(lambda: None):  # a current epoch goes through as usual
        assert gw.place_order(entry(), timeout=2).status == "filled"
