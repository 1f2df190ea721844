"""A lost database lease halts trading protect-only: no entry and no new position leaves the
process, but every position it holds keeps, or still gets, its stop on the venue. Protection is
judged from the paper venue's resting orders, not from our rows."""
from __future__ import annotations

import threading

from core.faults import FaultRule
from persistence.lease import UNSURE_TRIES, Lease, Unsure
from tests.support.helpers import SYM, wait_for, wave

BTC = SYM["BTC"]


def _resting_stops(svc) -> list:
    return [o for o in svc.gateway.engine.open_orders(BTC) if o.leg.value == "s"]


def _child(svc):
    return next(h for k, h in svc.supervisor.children.items() if k != "coordinator" and h.symbol == BTC)


def _lose_lease(svc, tmp_path) -> None:
    (tmp_path / "test.db.owner").unlink()
    wait_for(lambda: svc.halted, timeout=10, what="trading halted after the lock file was removed")


def _held_back(start_service, leg: str):
    """A service whose first BTC order of `leg` is held before it leaves the process."""
    svc = start_service("database.lease_check_s=0.05")
    svc.venue_faults.add(FaultRule("hang", op="place_order", leg=leg, symbols=[BTC], times=1))
    svc.submit(wave("w1", (BTC, "long", 0.9)), "t")
    wait_for(lambda: any(h.op_name == f"place {leg}" for h in svc.supervisor.children.values()),
             what=f"the {leg} order held before it leaves")
    return svc


def test_a_stop_on_the_wire_when_the_lease_is_lost_stays_on_the_venue(start_service, tmp_path):
    svc = start_service("database.lease_check_s=0.05")
    svc.venue_faults.add(FaultRule("slow_reply", op="place_order", leg="stop", symbols=[BTC], times=1,
                                   latency_ms=3000))
    svc.submit(wave("w1", (BTC, "long", 0.9)), "t")
    wait_for(lambda: _resting_stops(svc), what="the stop resting while its answer is slow")
    _lose_lease(svc, tmp_path)
    h = _child(svc)
    wait_for(lambda: h.op_name is None and h.phase != "open", what="the stop's answer to arrive")
    assert _resting_stops(svc), "the stop just placed was withdrawn: the position is naked"
    assert [p.symbol for p in svc.gateway.engine.positions()] == [BTC]


def test_a_position_filled_but_not_yet_stopped_when_the_lease_is_lost_gets_its_stop(start_service, tmp_path):
    svc = _held_back(start_service, "stop")
    assert [p.symbol for p in svc.gateway.engine.positions()] == [BTC] and not _resting_stops(svc)
    _lose_lease(svc, tmp_path)
    svc.venue_faults.release()
    wait_for(lambda: _resting_stops(svc), timeout=10, what="the held position's stop on the venue")
    svc.submit(wave("w2", (SYM["ETH"], "long", 0.9)), "t")  # halted: nothing new opens
    assert [p.symbol for p in svc.gateway.engine.positions()] == [BTC]


def test_an_entry_held_back_when_the_lease_is_lost_never_reaches_the_venue(start_service, tmp_path):
    svc = _held_back(start_service, "entry")
    h = _child(svc)
    _lose_lease(svc, tmp_path)
    svc.venue_faults.release()
    wait_for(lambda: not h.ref.is_alive(), what="the halted entry's actor to stand down")
    assert svc.gateway.engine.positions() == [] and svc.gateway.engine.open_orders() == []


def test_a_bounded_run_ends_when_trading_halts(start_service, tmp_path):
    svc = start_service("database.lease_check_s=0.05")
    result: list[bool] = []
    waiter = threading.Thread(target=lambda: result.append(svc.wait_for_waves(5)), daemon=True)
    waiter.start()
    _lose_lease(svc, tmp_path)
    waiter.join(timeout=10)
    assert result == [False], "wait_for_waves kept waiting for waves that can never come"


class _Probe(Lease):
    """A lease whose checks answer from a script, counting them."""

    def __init__(self, answers: list[str | None]) -> None:
        super().__init__("scripted")
        self.answers, self.calls = answers, 0
        self.exhausted = threading.Event()

    def check(self, timeout_s: float) -> str | None:
        self.calls += 1
        if self.calls >= len(self.answers):
            self.exhausted.set()
        return self.answers[min(self.calls, len(self.answers)) - 1]


def _watch(answers: list[str | None]) -> tuple[_Probe, list[str]]:
    lease, lost = _Probe(answers), []
    lease.watch(lost.append, interval_s=0.001, timeout_s=1)
    return lease, lost


def test_a_slow_lease_probe_is_tried_again_before_it_counts_as_lost():
    slow = Unsure("the lease connection did not answer within 1s")
    lease, lost = _watch([slow] * (UNSURE_TRIES - 1) + [None] * 5)
    assert lease.exhausted.wait(10)
    lease.release()
    assert lost == [] and lease.lost is None


def test_a_lease_probe_that_never_answers_is_lost_after_its_tries():
    slow = Unsure("the lease connection did not answer within 1s")
    lease, lost = _watch([slow] * UNSURE_TRIES)
    wait_for(lambda: lost, what="the lease counted as lost")
    assert lost == [f"{slow} ({UNSURE_TRIES} times in a row)"]


def test_a_lock_no_longer_held_is_lost_at_once():
    lease, lost = _watch(["the advisory lock is no longer held by our session", None])
    wait_for(lambda: lost, what="the lease counted as lost")
    assert lost == ["the advisory lock is no longer held by our session"] and lease.calls == 1
