"""The generic supervisor on its own, with plain pykka actors for children: one-for-one
restarts under a raised epoch, the restart intensity within its period, escalation to the
owner, deadlines, a failing start, abandoned threads, finished children, halt and stop_all."""
from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pykka
import pytest

from core.config import SupervisorCfg
from supervisor import ChildHandle, ChildSpec, Supervisor
from tests.support.helpers import wait_for

FAST = SupervisorCfg(max_restarts=2, restart_window_s=60, backoff_base_s=0.0, backoff_max_s=0.0,
                     watchdog_interval_s=0.01)


class Worker(pykka.ThreadingActor):
    use_daemon_thread = True

    def __init__(self, handle: ChildHandle) -> None:
        super().__init__()
        self.handle = handle

    def on_failure(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self.handle.crashed(exc or RuntimeError("failed"))

    def on_receive(self, msg: Any) -> Any:
        if msg == "crash":
            raise RuntimeError("boom")
        if isinstance(msg, tuple) and msg[0] == "block":  # an operation that overruns its deadline
            with self.handle.op("block", msg[1]):
                msg[2].wait(10)
        return self.handle.epoch


def start_worker(h: ChildHandle) -> Any:
    return Worker.start(h)


class Counted(ChildSpec):
    """A child restarted on a fresh handle one epoch up; escalation is recorded."""

    def __init__(self, fail_restarts: int = 0) -> None:
        self.started: list[int] = []
        self.retired_keys: list[str] = []
        self.escalated: list[tuple[str, str]] = []
        self.fail_restarts = fail_restarts

    def retired(self, h: ChildHandle) -> None:
        self.retired_keys.append(h.key)

    def restart(self, sup: Supervisor, h: ChildHandle, t0: float) -> None:
        if self.fail_restarts:
            self.fail_restarts -= 1
            raise OSError("not yet")
        new = sup.register(ChildHandle(sup, h.key, h.epoch + 1))
        self.started.append(new.epoch)
        sup.start_child(new, start_worker)

    def escalate(self, sup: Supervisor, h: ChildHandle, msg: str) -> str:
        self.escalated.append((h.key, msg))
        return msg + "; settled"


@pytest.fixture
def made() -> Iterator[list[Supervisor]]:
    sups: list[Supervisor] = []
    yield sups
    for s in sups:
        s.stop_all(2)


def _sup(made: list[Supervisor], spec: ChildSpec | None = None, cfg: SupervisorCfg = FAST) -> tuple[Supervisor, list]:
    told: list[tuple[str, str]] = []
    sup = Supervisor(cfg, on_escalate=lambda k, m: told.append((k, m)), default_spec=spec)
    made.append(sup)
    return sup, told


def _child(sup: Supervisor, key: str = "w") -> ChildHandle:
    h = sup.register(ChildHandle(sup, key, 1))
    sup.start_child(h, start_worker)
    return h


def test_a_crashed_child_is_replaced_under_a_higher_epoch(made):
    spec = Counted()
    sup, told = _sup(made, spec)
    h = _child(sup)
    h.ref.tell("crash")
    wait_for(lambda: sup.children["w"] is not h and sup.children["w"].ref is not None, what="the replacement")
    new = sup.children["w"]
    assert h.retired and new.epoch == 2 and new.ref.ask("epoch?", timeout=2) == 2
    assert spec.retired_keys == ["w"] and sup.stats.restarts == 1 and not told


def test_past_the_intensity_the_owner_hears_and_nothing_restarts(made):
    spec = Counted()
    sup, told = _sup(made, spec)
    _child(sup)
    for n in range(1, FAST.max_restarts + 2):
        wait_for(lambda: (c := sup.children.get("w")) is not None and c.ref is not None and not c.retired,
                 what=f"incarnation {n}")
        sup.children["w"].ref.tell("crash")
        wait_for(lambda n=n: sup.stats.restarts + sup.stats.escalations == n, what=f"failure {n} handled")
    assert spec.started == [2, 3] and sup.stats.escalations == 1
    assert "w" not in sup.children and "restart intensity exceeded (2 in 60s)" in sup.escalated["w"]
    assert told == [("w", sup.escalated["w"] + "; settled")] and spec.escalated == [("w", sup.escalated["w"])]


def test_an_overrun_deadline_is_a_failure_and_its_thread_is_abandoned(made):
    sup, _ = _sup(made, Counted())
    h = _child(sup)
    release = threading.Event()
    h.ref.tell(("block", 0.05, release))
    wait_for(lambda: sup.stats.restarts == 1, what="the overrun restarted")
    assert [(k, e) for k, e, _t in sup.abandoned] == [("w", 1)] and sup.abandoned_alive() == 1
    release.set()
    wait_for(lambda: not sup.abandoned_alive(), what="the abandoned thread to finish")


def test_a_restart_that_fails_is_counted_and_retried_on_a_stand_in(made):
    spec = Counted(fail_restarts=1)
    sup, told = _sup(made, spec)
    _child(sup).ref.tell("crash")
    wait_for(lambda: spec.started == [2], what="the second restart")
    assert sup.stats.restarts == 2 and not told


def test_a_child_that_cannot_start_is_restarted_like_a_crash(made):
    sup, told = _sup(made)
    attempts: list[int] = []

    def start(h: ChildHandle) -> Any:
        attempts.append(h.epoch)
        if len(attempts) == 1:
            raise RuntimeError("no thread")
        return Worker.start(h)
    h = sup.start_singleton("svc", start)
    wait_for(lambda: len(attempts) == 2, what="the second start")
    assert h.retired and attempts == [0, 1] and sup.children["svc"].epoch == 1 and not told


def test_a_singleton_past_its_intensity_escalates_to_the_owner(made):
    retired: list[str] = []
    sup, told = _sup(made, cfg=FAST.model_copy(update={"max_restarts": 0}))
    h = sup.start_singleton("svc", start_worker, on_retired=lambda: retired.append("svc"))
    h.ref.tell("crash")
    wait_for(lambda: told, what="the escalation")
    assert retired == ["svc"] and told == [("svc", sup.escalated["svc"])] and "svc" not in sup.children


def test_a_finished_child_is_neither_watched_nor_restarted(made):
    sup, _ = _sup(made, Counted())
    h = _child(sup)
    sup.finished("w", epoch=2)  # not the current incarnation: ignored
    assert sup.children["w"] is h
    sup.finished("w", epoch=1)
    assert h.done and h.retired and "w" not in sup.children
    h.crashed(RuntimeError("late"))
    assert sup.stats.restarts == 0


def test_halted_nothing_is_restarted_and_stop_all_reports_the_stuck(made):
    sup, _ = _sup(made, Counted())
    h = _child(sup)
    release = threading.Event()
    h.ref.tell(("block", 30, release))
    wait_for(lambda: h.op_name == "block", what="the child busy")
    sup.halt()
    h.crashed(RuntimeError("after the halt"))
    assert sup.halted and not h.retired and sup.stats.restarts == 0
    assert sup.stop_all(0.2) == ["w"]
    release.set()


def test_fenced_writes_reported_on_handles_are_counted(made):
    sup, _ = _sup(made, Counted())
    handles = [_child(sup, f"w{i}") for i in range(4)]
    threads = [threading.Thread(target=lambda h=h: [h.fenced() for _ in range(250)]) for h in handles]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sup.stats.fenced_writes == 1000
