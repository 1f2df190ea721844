"""The window-closing entry protocols against each fake venue through the real ccxt adapter:
Binance's closePosition stop resting before the entry, Bybit's stop-loss attached to it."""
from __future__ import annotations

from decimal import Decimal

import pytest

from core import entry_protocol
from core.position_types import Leg, attached_cid
from exchange.gateway import OrderRequest, Rejected
from tests.support.ccxt_helpers import KEY, PROFILES, SECRET, fake_venue, gateway
from tests.support.helpers import SYM, wait_for

BTC = SYM["BTC"]
ENTRY, STOP = "wt-p1-e1-2", "wt-p1-s1-1"


def _open(name, monkeypatch):
    key_env, secret_env = PROFILES[name].key_env
    monkeypatch.setenv(key_env, KEY)
    monkeypatch.setenv(secret_env, SECRET)
    v = fake_venue(name)
    return v, gateway(v.url, name=name)


def _served(name, monkeypatch):
    v, g = _open(name, monkeypatch)
    yield v, g
    g.close()
    v.stop()


@pytest.fixture
def binance(monkeypatch):
    yield from _served("binanceusdm", monkeypatch)


@pytest.fixture
def bybit(monkeypatch):
    yield from _served("bybit", monkeypatch)


def close_position_stop(cid=STOP, price="63700.0"):
    return OrderRequest(cid, BTC, Leg.STOP, "sell", Decimal("0.003"), stop_price=Decimal(price),
                        close_position=True)


def entry(cid=ENTRY, attached=None):
    return OrderRequest(cid, BTC, Leg.ENTRY, "buy", Decimal("0.003"),
                        attached_stop=Decimal(attached) if attached else None)


@pytest.mark.parametrize("name, want", [("binanceusdm", "stop_first"), ("bybit", "attached")])
def test_auto_picks_the_venues_window_closing_protocol(monkeypatch, name, want):
    for _venue, g in _served(name, monkeypatch):
        assert entry_protocol.resolve("auto", name, g.entry_modes) == want


# ---- Binance: the closePosition stop first ----------------------------------------------


def test_binance_close_position_stop_rests_on_a_flat_symbol_before_the_entry(binance):
    venue, g = binance
    s = g.place_order(close_position_stop(), 2)
    assert (s.status, s.leg, s.stop_price) == ("open", Leg.STOP, Decimal("63700"))
    (sent,) = venue.calls("POST /fapi/v1/algoOrder")
    assert sent["closePosition"] == "true" and "quantity" not in sent and "reduceOnly" not in sent
    assert g.positions(2) == []
    assert [(o.cid, o.stop_price) for o in g.open_orders(BTC, 2)] == [(STOP, Decimal("63700"))]
    assert g.fetch_order(BTC, STOP, 2).status == "open"
    g.place_order(entry(), 2)
    assert venue.engine.protection_gaps() == [0.0]  # the venue saw the stop there first


def test_binance_close_position_stop_fired_closes_the_whole_position_at_the_venue_fill(binance):
    venue, g = binance
    g.place_order(close_position_stop(), 2)
    g.place_order(entry(), 2)
    g.place_order(OrderRequest("wt-p1-e1-3", BTC, Leg.ENTRY, "buy", Decimal("0.002")), 2)  # qty drift
    orders = []
    g.subscribe(lambda s, p: None, orders.append)
    venue.set_price(BTC, Decimal("63650"))
    (fill,) = wait_for(lambda: orders, 5, "the stop's fill")
    assert (fill.cid, fill.status, fill.filled_qty, fill.avg_price) == (STOP, "filled", Decimal("0.005"),
                                                                         Decimal("63650"))
    assert g.positions(2) == [] and g.open_orders(BTC, 2) == []
    assert g.fetch_order(BTC, STOP, 2).filled_qty == Decimal("0.005")


def test_binance_close_position_stop_on_a_flat_symbol_at_trigger_expires(binance):
    venue, g = binance
    g.place_order(close_position_stop(), 2)
    venue.set_price(BTC, Decimal("63650"))
    got = wait_for(lambda: (lambda o: o if o.status != "open" else None)(g.fetch_order(BTC, STOP, 2)), 5,
                   "the stop's end")
    assert (got.status, got.filled_qty, got.avg_price) == ("expired", 0, None)
    assert g.positions(2) == []


def test_binance_second_close_position_stop_on_a_side_and_one_through_the_price_are_refused(binance):
    venue, g = binance
    g.place_order(close_position_stop(), 2)
    with pytest.raises(Rejected) as second:
        g.place_order(close_position_stop("wt-p1-s1-3", "63000.0"), 2)
    assert second.value.code == -4130
    with pytest.raises(Rejected) as through:
        g.place_order(OrderRequest("wt-p2-s1-1", BTC, Leg.STOP, "buy", Decimal("0.003"),
                                   stop_price=Decimal("64000.0"), close_position=True), 2)
    assert through.value.code == -2021


# ---- Bybit: the stop-loss attached to the entry -----------------------------------------

ATTACHED = attached_cid(ENTRY)


def test_bybit_attached_stop_is_created_with_the_fill_and_known_by_the_entrys_id(bybit):
    venue, g = bybit
    e = g.place_order(entry(attached="63700.0"), 2)
    assert (e.status, e.filled_qty) == ("filled", Decimal("0.003"))
    (sent,) = venue.calls("POST /v5/order/create")
    assert (sent["stopLoss"], sent["tpslMode"]) == ("63700", "Partial") and "triggerPrice" not in sent
    assert venue.engine.protection_gaps() == [0.0]  # the venue had the stop with the fill
    (listed,) = g.open_orders(BTC, 2)
    assert (listed.cid, listed.leg, listed.stop_price, listed.status) == (ATTACHED, Leg.STOP, Decimal("63700"), "open")
    got = g.fetch_order(BTC, ATTACHED, 2)
    assert (got.cid, got.status, got.stop_price) == (ATTACHED, "open", Decimal("63700"))
    assert ATTACHED in g.feed.watched()


@pytest.mark.parametrize("transport", ["ws", "poll"])
def test_bybit_attached_stop_fired_closes_the_position_at_the_venue_fill(monkeypatch, transport):
    name = "bybit"
    key_env, secret_env = PROFILES[name].key_env
    monkeypatch.setenv(key_env, KEY)
    monkeypatch.setenv(secret_env, SECRET)
    venue = fake_venue(name)
    extra = (f"exchange.ws_url='{venue.ws_url}'", "exchange.poll_interval_ms=60000") if transport == "ws" else ()
    g = gateway(venue.url, *extra, name=name)
    try:
        g.place_order(entry(attached="63700.0"), 2)
        orders = []
        g.subscribe(lambda s, p: None, orders.append)
        if transport == "ws":  # the fired stop's order row is pushed once: be listening
            wait_for(lambda: any(any(t.startswith("order") for t in ts) for ts in venue.hub.subs.values()),
                     10, "the order socket")
        venue.set_price(BTC, Decimal("63650"))
        (fill,) = wait_for(lambda: orders, 5, "the stop's fill")
        assert (fill.cid, fill.status, fill.filled_qty, fill.avg_price) == (ATTACHED, "filled", Decimal("0.003"),
                                                                             Decimal("63650"))
        assert g.positions(2) == [] and g.open_orders(BTC, 2) == []
        assert g.fetch_order(BTC, ATTACHED, 2).status == "filled"
    finally:
        g.close()
        venue.stop()


def test_bybit_attached_stop_moved_by_placing_the_new_then_cancelling_it_by_its_order_id(bybit):
    venue, g = bybit
    g.place_order(entry(attached="63700.0"), 2)
    g.place_order(OrderRequest("wt-p1-s1-3", BTC, Leg.STOP, "sell", Decimal("0.003"),
                               stop_price=Decimal("64000.0")), 2)
    gone = g.cancel_order(BTC, ATTACHED, 2)
    assert (gone.cid, gone.status) == (ATTACHED, "cancelled")
    assert any(c.get("orderId") and not c.get("orderLinkId") for c in venue.calls("POST /v5/order/cancel"))
    assert [(o.cid, o.stop_price) for o in g.open_orders(BTC, 2)] == [("wt-p1-s1-3", Decimal("64000"))]
    assert g.fetch_order(BTC, ATTACHED, 2).status == "cancelled"


def test_bybit_attached_stop_of_a_partly_filled_entry_is_sized_to_what_filled(bybit):
    venue, g = bybit
    venue.inject("POST /v5/order/create", fill_qty=Decimal("0.002"))
    e = g.place_order(entry(attached="63700.0"), 2)
    assert (e.status, e.filled_qty) == ("cancelled", Decimal("0.002"))
    (listed,) = g.open_orders(BTC, 2)
    assert (listed.cid, listed.stop_price) == (ATTACHED, Decimal("63700"))
    (child,) = [r for r in venue.orders.values() if r.parent == ENTRY]
    assert child.qty == Decimal("0.002")
