"""Cold start: a fresh Service over the database and venue of a previous run restores every
open position in one batch, under a raised epoch, and re-sends nothing that still rests."""
from __future__ import annotations

from sqlalchemy import select

from benchmarks.fleet import venue_carried_over
from core.position_types import PositionState
from core.types import Side
from persistence.models import PositionRow
from service.app import Service, position_params
from service.invariants import check_invariants, settle
from tests.helpers import SYM, make_config, wait_for, wave


def _rows(svc):
    with svc.db.tx("db_read") as tx:
        return {r.symbol: r for r in tx.scalars(select(PositionRow))}


def test_cold_start_restores_every_position_under_a_new_epoch_without_resending(tmp_path):
    cfg = make_config(tmp_path)
    first = Service(cfg)
    first.start(with_source=False)
    names = ["BTC", "ETH", "SOL", "XRP"]
    first.submit(wave("w", *[(SYM[n], "long" if i % 2 else "short", 1 - i / 10) for i, n in enumerate(names)]), "t")
    wait_for(lambda: first.stats.waves, what="wave")
    engine = first.gateway.engine
    first.shutdown()
    orders = len(engine.account.orders)
    with venue_carried_over(engine):
        svc = Service(cfg)
    try:
        svc.start(with_source=False)
        assert svc.gateway.engine is engine
        wait_for(lambda: sum(h.phase == "trailing" for k, h in svc.supervisor.children.items()
                             if k != "coordinator") == 4, what="every position reconciled")
        assert settle(svc) and not check_invariants(svc)
        rows = _rows(svc)
        assert {r.epoch for r in rows.values()} == {2} and {r.phase for r in rows.values()} == {"trailing"}
        assert len(engine.account.orders) == orders, "a resting stop was sent again"
    finally:
        svc.shutdown()


def test_batch_take_over_skips_a_position_whose_epoch_moved_and_adopts_it_alone(tmp_path):
    svc = Service(make_config(tmp_path))
    try:
        params = position_params(svc.cfg)
        for pid, sym in (("a1", SYM["BTC"]), ("b2", SYM["ETH"])):
            svc.positions.create(PositionState(id=pid, signal_id=f"s-{pid}", wave_id="w", symbol=sym,
                                               side=Side.LONG, params=params))
        svc.positions.bump_epoch("b2", 1)  # someone else took b2 over meanwhile
        taken = svc.positions.take_over([("a1", 1), ("b2", 1)], params)
        assert [(s.id, s.epoch) for s in taken] == [("a1", 2)]
        assert {r.id: r.epoch for r in _rows(svc).values()} == {"a1": 2, "b2": 2}

        svc.supervisor.adopt_all([("a1", 2), ("b2", 1)])  # b2's epoch is stale: adopted on its own
        assert {k: h.epoch for k, h in svc.supervisor.children.items()} == {"a1": 3, "b2": 3}
        assert {r.id: r.epoch for r in _rows(svc).values()} == {"a1": 3, "b2": 3}
    finally:
        svc.shutdown()
