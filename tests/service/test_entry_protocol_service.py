"""Stop-first through the real actors and the real paper venue: a refused entry's stop is taken
off the flat symbol even when the venue fails the first cancel, and the symbol stays held until
it is gone."""
from __future__ import annotations

from sqlalchemy import select

from core.faults import FaultRule
from persistence.models import PositionRow, SignalRow
from tests.support.helpers import SYM, wait_for, wave

STOP_FIRST = ("protection.entry_mode='stop_first'",)


def _position(svc, symbol):
    with svc.db.tx("db_read") as tx:
        return tx.scalars(select(PositionRow).where(PositionRow.symbol == symbol)).one_or_none()


def test_a_refused_entry_leaves_no_stop_behind_even_when_a_cancel_fails(start_service):
    svc = start_service(*STOP_FIRST)
    sol = SYM["SOL"]
    svc.venue_faults.add(FaultRule("invalid", op="place_order", leg="entry", symbols=[sol], times=1))
    failed_cancel = svc.venue_faults.add(FaultRule("unavailable", op="cancel_order", symbols=[sol], times=1))
    svc.submit(wave("w1", (sol, "long", 0.9), (SYM["BTC"], "short", 0.8)), "test")
    wait_for(lambda: len(svc.stats.waves) == 1, what="the wave")
    with svc.db.tx("db_read") as tx:
        outcomes = {s.symbol: s.outcome for s in tx.scalars(select(SignalRow))}
    assert outcomes == {sol: "failed", SYM["BTC"]: "protected"}
    wait_for(lambda: (p := _position(svc, sol)) is not None and p.phase == "failed", what="SOL withdrawn")
    p = _position(svc, sol)
    assert p.active_symbol is None and p.stop_cid is None
    assert svc.gateway.engine.open_orders(sol) == [] and svc.gateway.engine.positions() != []
    assert failed_cancel.fired == 1  # the first cancel failed; the withdrawal tried again
    assert max(svc.gateway.engine.protection_gaps()) == 0.0  # BTC: protected from its fill
