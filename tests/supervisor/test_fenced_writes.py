"""The operator's `fenced writes` counts every write a fence refused, a position's as well as a
coordinator's: an actor that wakes after its replacement took over is stood down by the fence,
and that refusal is what the number reports."""
from __future__ import annotations

from sqlalchemy import select

from core.faults import FaultRule
from persistence.models import PositionRow
from service.invariants import check_invariants, settle
from tests.support.helpers import SYM, wait_for, wave

FAST = ("deadlines.venue_call_s=2", "deadlines.db_call_s=2", "deadlines.operation_s=4",
        "deadlines.protect_s=10")


def _epoch(svc, symbol: str) -> int:
    with svc.db.tx("db_read") as tx:
        return tx.scalars(select(PositionRow.epoch).where(PositionRow.symbol == symbol)).one()


def _wake_the_abandoned(svc) -> None:
    stale = list(svc.supervisor.abandoned)
    svc.venue_faults.release()
    svc.db_faults.release()
    wait_for(lambda: not svc.supervisor.abandoned_alive(), what="abandoned threads to wake and stand down")
    for _, _, thread in stale:
        thread.join(timeout=5)


def test_a_position_write_refused_by_the_database_fence_is_counted(start_service):
    """A position's write hangs past its deadline; its replacement raises the epoch. When the
    old write finally runs, the database refuses it (stale epoch): one fenced write."""
    svc = start_service(*FAST)
    svc.db_faults.add(FaultRule("hang", op="db_write", symbols=[SYM["ETH"]], times=1))
    svc.submit(wave("w", (SYM["BTC"], "long", .9), (SYM["ETH"], "short", .8)), "t")
    wait_for(lambda: svc.stats.waves, timeout=30, what="the wave despite a hung write")
    assert svc.stats.waves[0].outcomes == {"protected": 2}
    assert svc.supervisor.stats.restarts == 1 and _epoch(svc, SYM["ETH"]) == 2
    assert svc.supervisor.stats.fenced_writes == 0, "nothing refused while the old write still hangs"

    _wake_the_abandoned(svc)
    assert svc.supervisor.stats.fenced_writes == 1, "the old actor's late write was refused"
    assert _epoch(svc, SYM["ETH"]) == 2
    assert settle(svc) and not check_invariants(svc)


def test_a_venue_write_refused_by_the_fence_is_counted_too(start_service):
    """A stop placement hangs; the replacement protects the position. The old actor's placement
    returns under a stale epoch and is taken back: one fenced write, none for the others."""
    svc = start_service(*FAST)
    svc.venue_faults.add(FaultRule("hang", op="place_order", leg="stop", symbols=[SYM["BTC"]], times=1))
    svc.submit(wave("w", (SYM["BTC"], "long", .9), (SYM["ETH"], "short", .8)), "t")
    wait_for(lambda: svc.stats.waves, timeout=30, what="the wave despite a hung stop")
    assert svc.stats.waves[0].outcomes == {"protected": 2}
    assert svc.supervisor.stats.fenced_writes == 0

    _wake_the_abandoned(svc)
    assert svc.supervisor.stats.fenced_writes == 1
    assert _epoch(svc, SYM["BTC"]) == 2 and _epoch(svc, SYM["ETH"]) == 1
    assert settle(svc) and not check_invariants(svc)
