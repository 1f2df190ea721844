"""The wave coordinator under faults: hung or slow calls, a restart that itself fails, escalation.

Real actors, the real paper venue and real SQLite; the cases an operator met on a live trader
also run as real `bin/trader run` processes (tests/e2e/test_coordinator_cli.py).
"""
from __future__ import annotations

import sqlite3
import threading

from sqlalchemy import select

from core.faults import FaultRule
from persistence.models import PositionRow, SignalRow, WaveRow
from service.invariants import check_invariants, settle
from tests.support.helpers import SYM, wait_for, wave

FAST = ("deadlines.venue_call_s=2", "deadlines.db_call_s=2", "deadlines.operation_s=4",
        "deadlines.protect_s=10")
RANKED = ["BTC", "ETH", "SOL", "XRP", "DOGE", "ADA"]  # best first; SOL is the 3rd signal


def _ranked_wave(wave_id: str) -> str:
    return wave(wave_id, *[(SYM[n], "long", 1 - i / 10) for i, n in enumerate(RANKED)])


def _signals(svc, wave_id: str) -> dict[str, SignalRow]:
    with svc.db.tx("db_read") as tx:
        return {s.symbol: s for s in tx.scalars(select(SignalRow).where(SignalRow.wave_id == wave_id))}


def _positions(svc) -> list[PositionRow]:
    with svc.db.tx("db_read") as tx:
        return list(tx.scalars(select(PositionRow)))


def _venue_symbols(svc) -> set[str]:
    return {p.symbol for p in svc.gateway.engine.positions() if p.qty}


def _assert_books_match_the_venue(svc, wave_id: str, opened: set[str]) -> None:
    """Every signal one outcome; what the outcomes call opened is exactly what the venue holds,
    each opened signal pointing at its own position; no row left without an actor."""
    sigs = _signals(svc, wave_id)
    assert all(s.outcome for s in sigs.values()), {k: s.outcome for k, s in sigs.items()}
    protected = {sym for sym, s in sigs.items() if s.outcome == "protected"}
    assert protected == opened == _venue_symbols(svc)
    rows = {p.id: p for p in _positions(svc)}
    assert len(rows) == len(opened), "one position row per opened signal, no strays"
    for sym in protected:
        assert sigs[sym].position_id in rows and rows[sigs[sym].position_id].symbol == sym
    assert not [p for p in rows.values() if p.phase == "new"], "a row without an actor"


def test_a_hung_position_create_is_replaced_and_the_stale_coordinator_is_fenced(start_service):
    """The 3rd signal's position_create never returns: the coordinator overruns, is replaced;
    its successor takes over the two rows it had created and finishes the wave. When the
    stuck call finally returns (a slow call, not a dead one) its writes are refused."""
    _hung_create_then_released(start_service(*FAST, "risk.max_positions_per_wave=4"))


def test_the_coordinator_epoch_fences_on_postgresql_too(start_service, pg_cluster):
    _hung_create_then_released(start_service(*FAST, "risk.max_positions_per_wave=4",
                                             db_url=pg_cluster.create_database()))


def _hung_create_then_released(svc) -> None:
    svc.db_faults.add(FaultRule("hang", op="position_create", symbols=[SYM["SOL"]], times=1))
    res = svc.submit(_ranked_wave("w"), "t")
    assert res.status == "opening", res  # handed to the successor, not "not taken"
    wait_for(lambda: svc.stats.waves, timeout=30, what="the wave to complete despite a hung position_create")
    assert svc.stats.waves[0].outcomes == {"protected": 4, "skipped": 2}
    best4 = {SYM[n] for n in RANKED[:4]}
    _assert_books_match_the_venue(svc, "w", best4)

    stale = [t for k, _e, t in svc.supervisor.abandoned if k == "coordinator"]
    assert stale, "the stuck coordinator thread was abandoned"
    svc.db_faults.release()  # the stuck call returns now: a 'slow' create
    wait_for(lambda: not any(t.is_alive() for t in stale), timeout=10, what="the stale coordinator to finish")
    assert settle(svc)
    _assert_books_match_the_venue(svc, "w", best4)
    assert len(svc.stats.waves) == 1, "the stale coordinator completed nothing"
    assert svc.supervisor.stats.fenced_writes >= 1, "its late create was refused"
    assert not check_invariants(svc)


def test_a_hung_wave_insert_is_retried_by_the_successor(start_service):
    """The first write of the process (the wave insert) never returns: the wave goes to the
    replacement coordinator, is recorded once and opened."""
    svc = start_service(*FAST)
    svc.db_faults.add(FaultRule("hang", op="db_write", times=1))
    res = svc.submit(wave("w", (SYM["BTC"], "long", .9), (SYM["ETH"], "long", .8)), "t")
    assert res.status == "opening", res
    wait_for(lambda: svc.stats.waves, timeout=30, what="the wave to complete")
    assert svc.stats.waves[0].outcomes == {"protected": 2}
    svc.db_faults.release()
    stale = [t for k, _e, t in svc.supervisor.abandoned if k == "coordinator"]
    wait_for(lambda: not any(t.is_alive() for t in stale), timeout=10, what="the stale coordinator to finish")
    with svc.db.tx("db_read") as tx:
        assert [w.status for w in tx.scalars(select(WaveRow))] == ["complete"]
    _assert_books_match_the_venue(svc, "w", {SYM["BTC"], SYM["ETH"]})


def test_a_restart_that_fails_on_a_locked_database_is_retried(start_service, tmp_path):
    """Another connection holds the SQLite write lock while the coordinator is being replaced:
    each start-up fails at the busy timeout and is restarted again (not left dead), and once
    the lock is gone the coordinator finishes the wave and takes new ones."""
    svc = start_service(*FAST, "supervisor.max_restarts=20", "risk.max_positions_per_wave=4")
    svc.db_faults.add(FaultRule("hang", op="position_create", symbols=[SYM["SOL"]], times=1))
    submitted = threading.Thread(target=svc.submit, args=(_ranked_wave("w"), "t"), daemon=True)
    submitted.start()
    wait_for(lambda: len(_positions(svc)) == 2, what="the two best-ranked rows before the hang")
    lock = sqlite3.connect(tmp_path / "test.db", timeout=5, isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")  # what another process holding the database does
    try:
        wait_for(lambda: svc.supervisor.stats.restarts >= 3, timeout=30,
                 what="the coordinator's failing restarts to be restarted again")
        assert svc.waves_state().startswith("coordinator restarting"), svc.waves_state()
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    wait_for(lambda: svc.stats.waves, timeout=30, what="the wave to complete once the lock is gone")
    assert svc.stats.waves[0].outcomes == {"protected": 4, "skipped": 2}
    assert svc.waves_state() == "taking waves"
    assert svc.submit(wave("w2", (SYM["LINK"], "long", .9)), "t")
    wait_for(lambda: len(svc.stats.waves) == 2, what="a later wave")
    svc.db_faults.release()


def test_a_coordinator_that_cannot_start_is_escalated_and_says_so(start_service, monkeypatch):
    """Its restarts are bounded like a position's: past the intensity, health is critical,
    status names the reason, and every later wave is refused with it — each signal recorded."""
    svc = start_service(*FAST, "supervisor.max_restarts=2")
    from actors.coordinator import WaveCoordinator

    def no_thread(*_a, **_k):
        raise RuntimeError("can't start new thread")
    monkeypatch.setattr(WaveCoordinator, "start", no_thread)  # thread exhaustion
    svc.supervisor.children["coordinator"].crashed(RuntimeError("injected by the test"))
    wait_for(lambda: svc.supervisor.stats.escalations, timeout=20, what="the coordinator escalated")
    assert svc.waves_state().startswith("coordinator down: restart intensity exceeded"), svc.waves_state()
    assert "can't start new thread" in svc.waves_state()
    from service.health import HealthMonitor
    from service.metrics import Metrics
    h = HealthMonitor(svc, svc.cfg.health, Metrics(), svc.cfg.supervisor.restart_window_s).report()
    assert h.status == "critical" and any("coordinator" in r for r in h.reasons), h.reasons

    res = svc.submit(wave("w", (SYM["BTC"], "long", .9), (SYM["ETH"], "long", .8)), "t")
    assert res.status == "not_taken" and res.reason.startswith("coordinator down: "), res
    sigs = _signals(svc, "w")
    assert {s.outcome for s in sigs.values()} == {"skipped"}
    assert all(s.reason.startswith("not taken: coordinator down: ") for s in sigs.values())
    assert not _venue_symbols(svc)
    assert not svc.wait_for_waves(1, timeout_s=5), "a bounded run ends: no wave can complete"


def test_a_restart_that_finds_no_thread_is_retried_by_the_watchdog(start_service, monkeypatch):
    """Thread exhaustion at the moment of a crash: the restart cannot even begin. It is not
    dropped: the watchdog starts it once a thread can be had."""
    svc = start_service(*FAST)
    import supervisor as sup_mod
    real = sup_mod.threading.Thread
    refused: list[str] = []

    class Scarce(real):
        def start(self):
            if self.name.startswith("restart-") and not refused:
                refused.append(self.name)
                raise RuntimeError("can't start new thread")
            super().start()
    monkeypatch.setattr(sup_mod.threading, "Thread", Scarce)
    old = svc._coordinator
    svc.supervisor.children["coordinator"].crashed(RuntimeError("injected by the test"))
    wait_for(lambda: svc._coordinator is not old and svc.waves_state() == "taking waves",
             what="the coordinator restarted once a thread was free")
    assert refused == ["restart-coordinator"]
    assert svc.submit(wave("w", (SYM["BTC"], "long", .9)), "t")
    wait_for(lambda: svc.stats.waves, what="a wave after the restart")


def test_restarts_that_crash_at_start_are_retried_within_the_intensity(start_service):
    """`[[faults.actor]] op = "coordinator_start"`: the first two starts of the replacement
    crash; the third is within `supervisor.max_restarts` and takes waves again."""
    svc = start_service(*FAST, "supervisor.max_restarts=3")
    svc.actor_faults.add(FaultRule("crash", op="coordinator_start", times=2))
    svc.supervisor.children["coordinator"].crashed(RuntimeError("injected by the test"))
    wait_for(lambda: svc.waves_state() == "taking waves" and svc.supervisor.stats.restarts == 3,
             what="the coordinator back after two failed starts")
    assert not svc.supervisor.stats.escalations
    assert svc.submit(wave("w", (SYM["BTC"], "long", .9)), "t")
    wait_for(lambda: svc.stats.waves, what="a wave after the restarts")


def test_a_wave_in_flight_when_the_coordinator_is_escalated_still_gets_every_outcome(start_service):
    """No restart allowed: the hung coordinator is escalated at once. The two rows it created
    are taken over and opened, the signals it never launched are skipped with the reason, the
    wave is completed; the stuck create, once it returns, is fenced."""
    svc = start_service(*FAST, "supervisor.max_restarts=0")
    svc.db_faults.add(FaultRule("hang", op="position_create", symbols=[SYM["SOL"]], times=1))
    res = svc.submit(_ranked_wave("w"), "t")
    assert res.status == "opening", res  # stored before the hang: it is finished, not refused
    assert svc.waves_state().startswith("coordinator down: ")
    def status() -> str:
        with svc.db.tx("db_read") as tx:
            return tx.get(WaveRow, "w").status
    wait_for(lambda: status() == "complete", timeout=20, what="the wave completed without a coordinator")
    sigs = _signals(svc, "w")
    assert {sym for sym, s in sigs.items() if s.outcome == "protected"} == {SYM["BTC"], SYM["ETH"]}
    skipped = {sym: s.reason for sym, s in sigs.items() if s.outcome == "skipped"}
    assert set(skipped) == {SYM[n] for n in RANKED[2:]}
    assert all(r.startswith("not opened: coordinator down: restart intensity exceeded") for r in skipped.values())
    svc.db_faults.release()
    stale = [t for k, _e, t in svc.supervisor.abandoned if k == "coordinator"]
    wait_for(lambda: not any(t.is_alive() for t in stale), timeout=10, what="the stale coordinator to finish")
    assert _venue_symbols(svc) == {SYM["BTC"], SYM["ETH"]} and len(_positions(svc)) == 2


def test_a_closed_position_whose_outcome_was_lost_is_settled_when_the_coordinator_is_down(start_service):
    """Its actor ended in a final phase and will never report again: the wave is completed from
    the stored phase, not left open behind a re-adopted actor that does nothing."""
    from sqlalchemy import update

    from service.waves_without_coordinator import WavesWithoutCoordinator
    svc = start_service(*FAST, "risk.max_positions_per_wave=1")
    svc.venue_faults.add(FaultRule("invalid", op="place_order", leg="entry", symbols=[SYM["BTC"]]))
    svc.submit(wave("w", (SYM["BTC"], "long", .9)), "t")
    wait_for(lambda: svc.stats.waves, what="the wave")
    (sig,) = _signals(svc, "w").values()
    assert sig.outcome == "failed" and sig.position_id
    wait_for(lambda: sig.position_id not in svc.supervisor.children, what="the finished actor gone")
    with svc.db.tx("db_write") as tx:  # the outcome was lost before it was stored
        tx.execute(update(SignalRow).where(SignalRow.id == sig.id).values(outcome=None, reason=None))
        tx.execute(update(WaveRow).where(WaveRow.id == "w").values(status="open", completed_ts=None))
    WavesWithoutCoordinator(svc.waves, svc.supervisor, "test").settle()
    (after,) = _signals(svc, "w").values()
    assert after.outcome == "failed" and "settled from position phase failed" in after.reason
    with svc.db.tx("db_read") as tx:
        assert tx.get(WaveRow, "w").status == "complete"
