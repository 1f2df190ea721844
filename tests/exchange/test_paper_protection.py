"""The paper venue's close-position and attached stops, as Binance and Bybit document them, and
its own record of each position's protection window (entry fill → first resting stop)."""
from __future__ import annotations

from decimal import Decimal

import pytest

from core.position_types import Leg, attached_cid
from exchange.gateway import OrderRequest, Rejected
from exchange.paper.engine import PaperEngine
from exchange.paper.universe import paper_markets, start_prices

BTC = "BTC/USDT:USDT"
PRICE = start_prices()[BTC]


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def eng(clock):
    e = PaperEngine(paper_markets(), start_prices(), seed=1, slippage_bps=Decimal(0), clock=clock)
    e.fills = []
    e.add_listener(e.fills.append)
    return e


def req(cid, leg, side, qty="0.010", **kw):
    return OrderRequest(cid, BTC, leg, side, Decimal(qty), **kw)


def below(pct: str) -> Decimal:
    return (PRICE * (1 - Decimal(pct) / 100)).quantize(Decimal("0.1"))


def test_a_close_position_stop_rests_on_a_flat_symbol_and_expires_if_it_fires_there(eng):
    eng.place(req("s1", Leg.STOP, "sell", stop_price=below("2"), close_position=True))
    assert [o.cid for o in eng.open_orders(BTC)] == ["s1"] and eng.positions() == []
    eng.set_price(BTC, below("3"))
    assert eng.fetch("s1").status == "expired" and eng.positions() == []  # nothing to close


def test_a_close_position_stop_closes_the_whole_position_on_its_side(eng):
    eng.place(req("s1", Leg.STOP, "sell", stop_price=below("2"), close_position=True))
    eng.place(req("e1", Leg.ENTRY, "buy", "0.010"))
    eng.place(req("e2", Leg.ENTRY, "buy", "0.005"))  # more than any quantity the stop was sent with
    eng.set_price(BTC, below("3"))
    s1 = eng.fetch("s1")
    assert s1.status == "filled" and s1.filled_qty == Decimal("0.015") and eng.positions() == []


def test_one_close_position_stop_per_side_and_none_already_crossed(eng):
    eng.place(req("s1", Leg.STOP, "sell", stop_price=below("2"), close_position=True))
    with pytest.raises(Rejected, match="-4130"):
        eng.place(req("s2", Leg.STOP, "sell", stop_price=below("1"), close_position=True))
    with pytest.raises(Rejected, match="-2021"):
        eng.place(req("s3", Leg.STOP, "buy", stop_price=below("1"), close_position=True))
    with pytest.raises(Rejected, match="-4136"):
        eng.place(req("t1", Leg.TRAILING, "sell", callback_pct=Decimal(1), close_position=True))


def test_an_attached_stop_is_created_at_the_fill_with_the_entry_as_parent(eng):
    eng.place(req("wt-p-e1-1", Leg.ENTRY, "buy", attached_stop=below("2")))
    (stop,) = eng.open_orders(BTC)
    assert stop.cid == attached_cid("wt-p-e1-1") == "wt-p-s1-1" and stop.leg is Leg.STOP
    assert stop.stop_price == below("2") and eng.account.orders[stop.cid].parent == "wt-p-e1-1"
    assert eng.protection_gaps() == [0.0]


def test_an_attached_stop_already_crossed_refuses_the_entry(eng):
    with pytest.raises(Rejected, match="-2021"):
        eng.place(req("wt-p-e1-1", Leg.ENTRY, "buy", attached_stop=PRICE + 10))
    assert eng.positions() == [] and eng.open_orders(BTC) == []


def test_the_window_is_zero_with_the_stop_first_and_timed_without_it(eng, clock):
    eng.place(req("s1", Leg.STOP, "sell", stop_price=below("2"), close_position=True))
    eng.place(req("e1", Leg.ENTRY, "buy"))
    assert eng.protection_gaps() == [0.0]
    eng.place(req("x1", Leg.EXIT, "sell"))
    eng.cancel("s1")
    eng.place(req("e2", Leg.ENTRY, "buy"))  # after the fill: naked until the stop rests
    clock.t += 0.3
    assert eng.protection_gaps() == [0.0, pytest.approx(0.3)]  # still naked: counted so far
    clock.t += 0.2
    eng.place(req("s2", Leg.STOP, "sell", stop_price=below("2")))
    clock.t += 5
    assert eng.protection_gaps() == [0.0, pytest.approx(0.5)]
    eng.place(req("x2", Leg.EXIT, "sell"))
    eng.cancel("s2")
    eng.place(req("e3", Leg.ENTRY, "buy"))
    clock.t += 1
    eng.place(req("x3", Leg.EXIT, "sell"))  # closed without ever being protected: its whole life
    assert eng.protection_gaps() == [0.0, pytest.approx(0.5), pytest.approx(1.0)]


def test_a_close_position_stop_is_still_one_after_the_venue_restarts(tmp_path):
    from exchange.paper.store import PaperStore

    path = tmp_path / "venue.db"
    e = PaperEngine(paper_markets(), start_prices(), seed=1, slippage_bps=Decimal(0), store=PaperStore(path))
    e.place(req("s1", Leg.STOP, "sell", stop_price=below("2"), close_position=True))
    e.place(req("wt-p-e1-1", Leg.ENTRY, "buy", attached_stop=below("5")))
    e.close()
    e = PaperEngine(paper_markets(), start_prices(), seed=1, slippage_bps=Decimal(0), store=PaperStore(path))
    assert e.account.orders["wt-p-s1-1"].parent == "wt-p-e1-1"
    e.set_price(BTC, below("3"))
    assert e.fetch("s1").status == "filled" and e.positions() == []
    e.close()


def test_a_venue_file_from_before_close_position_stops_opens_and_keeps_its_stops(tmp_path):
    import sqlite3

    from exchange.paper.store import PaperStore

    path = tmp_path / "old.db"
    c = sqlite3.connect(path)
    c.executescript("""
        CREATE TABLE orders (cid TEXT PRIMARY KEY, symbol TEXT NOT NULL, leg TEXT NOT NULL,
            side TEXT NOT NULL, qty TEXT NOT NULL, stop_price TEXT, activation TEXT, callback_pct TEXT,
            status TEXT NOT NULL, filled_qty TEXT NOT NULL, avg_price TEXT, activated INTEGER NOT NULL,
            best TEXT, seq INTEGER NOT NULL);
        INSERT INTO orders VALUES ('s1', 'BTC/USDT:USDT', 's', 'sell', '0.010', '60000.0', NULL, NULL,
            'open', '0', NULL, 0, NULL, 1);""")
    c.commit()
    c.close()
    (o,) = PaperStore(path).load().orders
    assert o["cid"] == "s1" and o["close_position"] is False and o["parent"] is None
