"""The persistence guarantees the actors rely on, on SQLite and PostgreSQL alike: exact decimals,
epoch fencing, one open position per symbol under a race, exactly one outcome per signal."""
from __future__ import annotations

import threading
from dataclasses import replace
from decimal import Decimal

import pytest

from core.position_types import Leg, OrderIntent, Outcome, Params, Phase, PositionState, Record
from core.types import Side
from exchange.gateway import Fenced
from exchange.paper.universe import paper_markets
from persistence.db import Database
from persistence.positions import OrderFate, PositionStore, SymbolBusy
from persistence.schema import upgrade
from persistence.waves import WaveStore
from signals.wave import parse_wave
from tests.support.helpers import SYM, wave

PARAMS = Params(Decimal("2.0"), Decimal("1.0"), Decimal("0.5"), notional=Decimal("200"))


@pytest.fixture
def db(db_url):
    d = Database(db_url, call_timeout_s=5, pool_size=12)
    upgrade(d.engine)
    yield d
    d.dispose()


def position(pid: str, symbol: str = SYM["BTC"], **kw) -> PositionState:
    return PositionState(id=pid, signal_id=f"sig-{pid}", wave_id="w1", symbol=symbol, side=Side.LONG,
                         params=PARAMS, **kw)


def test_prices_and_quantities_come_back_exactly(db):
    store = PositionStore(db)
    s = position("p1", symbol=SYM["DOGE"])
    store.create(s)
    exact = replace(s, phase=Phase.TRAILING, qty=Decimal("1234567.891"), entry_price=Decimal("0.1234567"),
                    stop_price=Decimal("0.1209876"), last_price=Decimal("12345678901234.000000001"), seq=2)
    intent = OrderIntent("wt-p1-s1-2", Leg.STOP, "sell", exact.qty, stop_price=exact.stop_price)
    store.commit_step(exact, intents=[intent], records=[Record("stop_placed", {"stop": "0.1209876"})])
    back = store.load("p1", PARAMS)
    assert (back.qty, back.entry_price, back.stop_price, back.last_price) == (
        exact.qty, exact.entry_price, exact.stop_price, exact.last_price)
    assert str(back.entry_price) == "0.1234567"
    row = store.unresolved_orders("p1")[0]
    assert store.order_intent(row) == intent


def test_a_stale_epoch_writes_nothing(db):
    store = PositionStore(db)
    s = position("p1")
    store.create(s)
    assert store.bump_epoch("p1", 1) == 2
    with pytest.raises(Fenced):
        store.commit_step(replace(s, phase=Phase.CLOSED, seq=5),
                          fates=[OrderFate("wt-p1-e1-1", "filled")], records=[Record("closed")])
    back = store.load("p1", PARAMS)
    assert (back.phase, back.epoch, back.seq) == (Phase.NEW, 2, 0)
    with pytest.raises(Fenced):
        store.bump_epoch("p1", 1)  # a second taker with the same view loses


def test_two_racing_positions_on_one_symbol_give_one(db):
    store = PositionStore(db)
    barrier = threading.Barrier(8, timeout=10)
    won, busy = [], []

    def create(n: int) -> None:
        barrier.wait()
        try:
            store.create(position(f"p{n}"))
            won.append(n)
        except SymbolBusy:
            busy.append(n)

    threads = [threading.Thread(target=create, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert len(won) == 1 and len(busy) == 7
    # once it is closed, the symbol is free again
    store.commit_step(replace(store.load(f"p{won[0]}", PARAMS), phase=Phase.CLOSED))
    store.create(position("p99"))
    assert store.open_symbols() == {SYM["BTC"]: "p99"}


def test_each_signal_gets_exactly_one_outcome_and_points_at_its_position(db):
    waves, store = WaveStore(db), PositionStore(db)
    w = parse_wave(wave("w1", (SYM["BTC"], "long", 0.9), (SYM["ETH"], "long", 0.5)),
                   markets=paper_markets(), source="t")
    assert waves.insert(w, 60) == [] and waves.known("w1") and not waves.known("w2")
    s = replace(position("p1"), signal_id="w1-0")
    store.create(s)
    assert [r.position_id for r in waves.pending_signals()] == ["p1", None]
    results = []
    threads = [threading.Thread(target=lambda o=o: results.append(waves.set_outcome("w1-0", o, "r", "p1")))
               for o in (Outcome.PROTECTED, Outcome.FAILED, Outcome.SKIPPED, Outcome.EMERGENCY_CLOSED)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert sorted(results) == [False, False, False, True]
    outcomes = waves.outcomes("w1")
    assert outcomes["pending"] == 1 and sum(outcomes.values()) == 2 and len(outcomes) == 2
