"""A whole wave through real actors, the real paper venue and a real SQLite file."""
from __future__ import annotations

import threading
from decimal import Decimal

from sqlalchemy import func, select

from core import trailing as tr
from core.position_types import Leg, Outcome
from persistence.models import EventRow, OrderRow, PositionRow, SignalRow, WaveRow
from tests.support.helpers import SYM, wait_for, wave


def _signals(svc, wave_id):
    with svc.db.tx("db_read") as tx:
        return {r.id: r for r in tx.scalars(select(SignalRow).where(SignalRow.wave_id == wave_id))}


def _positions(svc):
    with svc.db.tx("db_read") as tx:
        return list(tx.scalars(select(PositionRow)))


def test_full_wave_opens_protects_and_accounts_for_every_signal(start_service):
    svc = start_service("risk.max_positions_per_wave=3")
    msg = wave("w1", (SYM["BTC"], "long", 0.9), (SYM["ETH"], "short", 0.8), (SYM["SOL"], "long", 0.7),
               (SYM["XRP"], "long", 0.6), ("NOPE/USDT:USDT", "long", 0.5))
    assert svc.submit(msg, "test")
    wait_for(lambda: svc.stats.waves, what="wave completion")
    summary = svc.stats.waves[0]
    sigs = _signals(svc, "w1")
    assert {s.outcome for s in sigs.values()} <= {o.value for o in Outcome}
    assert all(s.outcome for s in sigs.values()), "every signal has a final outcome"
    # the best three by score are opened; the fourth is skipped because the wave is full
    assert [sigs[f"w1-{i}"].outcome for i in range(4)] == ["protected"] * 3 + ["skipped"]
    assert "wave full" in sigs["w1-3"].reason
    assert sigs["w1-4"].outcome == "rejected" and "unknown symbol" in sigs["w1-4"].reason
    assert summary.outcomes == {"protected": 3, "skipped": 1, "rejected": 1}
    assert sum(summary.outcomes.values()) == len(sigs)

    open_orders = {o.cid: o for o in svc.gateway.engine.open_orders()}
    for p in _positions(svc):
        assert p.phase == "trailing" and p.epoch == 1
        spec = svc.markets[p.symbol]
        side = tr.Side(p.side)
        assert p.stop_price == tr.initial_stop(p.entry_price, side, Decimal(2), spec)
        assert open_orders[p.stop_cid].leg is Leg.STOP and open_orders[p.stop_cid].stop_price == p.stop_price
        assert open_orders[p.trailing_cid].leg is Leg.TRAILING
        venue = {v.symbol: v for v in svc.gateway.engine.positions()}[p.symbol]
        assert abs(venue.qty) == p.qty and (venue.qty > 0) == (side is tr.Side.LONG)
    with svc.db.tx("db_read") as tx:
        w = tx.get(WaveRow, "w1")
        assert w.status == "complete"
        # every order intent was written before it was sent, and now has its fate
        statuses = dict(tx.execute(select(OrderRow.leg, func.count()).group_by(OrderRow.leg)).all())
        assert statuses == {"e": 3, "s": 3, "t": 3}
        assert not tx.scalar(select(func.count()).where(OrderRow.status == "intent"))
        kinds = set(tx.scalars(select(EventRow.kind)))
        assert {"wave_received", "entered", "stop_placed", "trailing_established"} <= kinds


def test_two_signals_for_one_symbol_give_one_position(start_service):
    svc = start_service()
    svc.submit(wave("w1", (SYM["BTC"], "long", 0.9), (SYM["BTC"], "short", 0.95), (SYM["ETH"], "long", 0.1)), "t")
    svc.submit(wave("w2", (SYM["BTC"], "long", 0.99)), "t")  # a racing wave for the same symbol
    wait_for(lambda: len(svc.stats.waves) == 2, what="both waves")
    btc = [p for p in _positions(svc) if p.symbol == SYM["BTC"]]
    assert len(btc) == 1 and btc[0].side == "short"  # the higher-ranked signal won
    outcomes = {**_signals(svc, "w1"), **_signals(svc, "w2")}
    assert outcomes["w1-0"].outcome == "skipped" and "already has an open position" in outcomes["w1-0"].reason
    assert outcomes["w2-0"].outcome == "skipped"
    assert len([v for v in svc.gateway.engine.positions() if v.symbol == SYM["BTC"]]) == 1


def test_failed_entry_is_replaced_by_next_ranked_signal(start_service):
    svc = start_service("risk.max_positions_per_wave=2")
    from core.faults import FaultRule
    svc.venue_faults.add(FaultRule("invalid", op="place_order", leg="entry", symbols=[SYM["ETH"]]))
    svc.submit(wave("w1", (SYM["BTC"], "long", 0.9), (SYM["ETH"], "long", 0.8), (SYM["SOL"], "long", 0.7),
                    (SYM["XRP"], "long", 0.6)), "t")
    wait_for(lambda: svc.stats.waves, what="wave")
    sigs = _signals(svc, "w1")
    assert [sigs[f"w1-{i}"].outcome for i in range(4)] == ["protected", "failed", "protected", "skipped"]
    assert "entry refused" in sigs["w1-1"].reason
    assert svc.stats.waves[0].outcomes == {"protected": 2, "failed": 1, "skipped": 1}


def test_malformed_wave_line_is_rejected_and_next_wave_runs(start_service, tmp_path):
    path = tmp_path / "waves.jsonl"
    path.write_text("\n".join([
        wave("good-1", (SYM["BTC"], "long", 0.5)),
        '{"wave_id": "broken", "signals": [',  # truncated JSON
        '{"wave_id": "no-signals"}',
        wave("good-2", (SYM["ETH"], "short", 0.5)),
    ]) + "\n")
    svc = start_service(f"signals.source=file:{path}", source=True)
    assert svc.wait_for_waves(2, timeout_s=20)
    with svc.db.tx("db_read") as tx:
        waves = {w.id: w for w in tx.scalars(select(WaveRow))}
    assert waves["good-1"].status == waves["good-2"].status == "complete"
    rejected = [w for w in waves.values() if w.status == "rejected"]
    assert len(rejected) == 2
    reasons = sorted(w.reason for w in rejected)
    assert reasons[0].startswith("not valid JSON") and reasons[1] == "signals missing"
    assert svc.stats.waves_rejected == 2


class BarrierGateway:
    """Wraps the paper gateway: every entry waits until all `n` entries are in flight at once.
    If positions were serialized anywhere (a shared lock, a sync ask), the barrier would break."""

    def __init__(self, inner, n: int):
        self.inner, self.barrier = inner, threading.Barrier(n, timeout=10)
        self.broken = False

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def place_order(self, req, timeout):
        if req.leg is Leg.ENTRY:
            try:
                self.barrier.wait()
            except threading.BrokenBarrierError:
                self.broken = True
                raise
        return self.inner.place_order(req, timeout)


def test_positions_of_a_wave_are_in_flight_together(start_service):
    svc = start_service(wrap_gateway=lambda inner: BarrierGateway(inner, 7))
    gw = svc.ctx.gateway
    names = ["BTC", "ETH", "SOL", "XRP", "DOGE", "ADA", "AVAX"]
    svc.submit(wave("w7", *[(SYM[n], "long", 1 - i / 10) for i, n in enumerate(names)]), "t")
    wait_for(lambda: svc.stats.waves, what="wave of 7")
    assert not gw.broken
    assert svc.stats.waves[0].outcomes == {"protected": 7}
