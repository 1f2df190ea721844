"""A generic supervisor for pykka actors: deadlines, one-for-one restarts, intensity, escalation.

Modelled on an Erlang/OTP supervisor. Each child runs on a `ChildHandle` and is described by
a `ChildSpec`: how a replacement is started, and what becomes of the child's work when the
supervisor gives up on it. The strategy is one-for-one: a failed child is replaced alone.

pykka has no supervision, cannot cancel a timed-out ask and cannot stop a blocked actor. So
every child reports the operation it is in and that operation's deadline on its handle, and
a watchdog thread fails a child that overran it, that its handle reports overdue in some
other way (`ChildHandle.overdue`), or that crashed. A failed child is restarted after an
exponential, jittered backoff under a new epoch: the replacement fences the old incarnation,
whose thread cannot be killed and is abandoned as a daemon (counted in `abandoned`).

More than `max_restarts` restarts of one child within `restart_window_s` (the intensity
within a period) and the supervisor stops restarting it: the child's spec `escalate`s, and
the owner hears of it through `on_escalate(key, message)`; nothing is retried after that.

What a child is and what its work means stays out of this module: position actors are
supervised through `service/position_supervision.py`, which plugs in its own spec and handle.
"""
from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from loguru import logger

from core.config import SupervisorCfg

__all__ = ["ChildHandle", "ChildSpec", "Singleton", "Supervisor", "SupervisorStats"]

class ChildHandle:
    """A child's report card, written only by the child's own thread, read by the watchdog.

    `epoch` is the incarnation: a replacement always carries a higher one than the child it
    replaces. `symbol` labels the child in logs and views ("" if it works on none)."""

    def __init__(self, sup: Supervisor | None, key: str, epoch: int, symbol: str = "") -> None:
        self.sup, self.key, self.epoch, self.symbol = sup, key, epoch, symbol
        self.ref: Any = None
        self.thread: threading.Thread | None = None
        self.op_name: str | None = None
        self.op_deadline: float | None = None
        self.done = False
        self.retired = False  # replaced, escalated or finished: the watchdog ignores it

    @contextmanager
    def op(self, name: str, seconds: float) -> Iterator[None]:
        """Run the block as operation `name`, which must end within `seconds` (nested: the
        innermost deadline counts until it ends)."""
        self.thread = threading.current_thread()
        outer = (self.op_name, self.op_deadline)
        self.op_name, self.op_deadline = name, time.monotonic() + seconds
        try:
            yield
        finally:
            self.op_name, self.op_deadline = outer

    def overdue(self, now: float) -> str | None:
        """Why the child must be replaced at monotonic time `now`, or None while it is fine.
        A subclass may add conditions of its own after the operation deadline."""
        if self.op_deadline is not None and now > self.op_deadline:
            return f"operation '{self.op_name}' overran its deadline"
        return None

    def crashed(self, exc: BaseException) -> None:
        if self.sup is not None:
            self.sup.child_failed(self, f"crashed: {exc!r}")

    def fenced(self) -> None:
        """A write of this child's was refused by a fence (its epoch is stale, or supervision
        halted): counted in the supervisor's `stats.fenced_writes`."""
        if self.sup is not None:
            self.sup.count_fenced()


class ChildSpec:
    """How one kind of child is restarted and given up on: the child specification.

    The supervisor calls these from its restart thread; none may block for long."""

    def retired(self, h: ChildHandle) -> None:
        """The moment the supervisor gives up on `h` (before any replacement exists)."""

    def restart(self, sup: Supervisor, h: ChildHandle, t0: float) -> None:
        """Start the replacement of `h` (failed at monotonic time `t0`) and `sup.register`
        its handle. Raise if it cannot be started: the failure counts as a restart and the
        supervisor tries again on the handle `stand_in` gives."""
        raise NotImplementedError

    def stand_in(self, sup: Supervisor, h: ChildHandle) -> ChildHandle:
        """The handle that carries a replacement that could not be started."""
        return ChildHandle(sup, h.key, h.epoch, h.symbol)

    def escalate(self, sup: Supervisor, h: ChildHandle, msg: str) -> str:
        """Past the restart intensity: settle what the child leaves behind; returns what the
        owner is told (by default `msg` itself)."""
        return msg


class Singleton(ChildSpec):
    """A service actor restarted by calling its start function again on a fresh handle."""

    def __init__(self, start: Callable[[ChildHandle], object],
                 on_retired: Callable[[], None] = lambda: None) -> None:
        self.start, self.on_retired = start, on_retired

    def retired(self, h: ChildHandle) -> None:
        self.on_retired()

    def restart(self, sup: Supervisor, h: ChildHandle, t0: float) -> None:
        sup.start_child(sup.register(ChildHandle(sup, h.key, h.epoch + 1)), self.start)


@dataclass
class SupervisorStats:
    restarts: int = 0
    escalations: int = 0
    fenced_writes: int = 0
    reprotect_s: list[float] = field(default_factory=list)  # restart → the replacement recovered


class Supervisor:
    """Children by key, each with its spec (`default_spec` for keys registered without one).

    `halt()` stops all supervision for good; `stop_all()` is the shutdown."""

    def __init__(self, cfg: SupervisorCfg, on_escalate: Callable[[str, str], None] | None = None,
                 default_spec: ChildSpec | None = None) -> None:
        self.cfg = cfg
        self.children: dict[str, ChildHandle] = {}
        self.abandoned: list[tuple[str, int, threading.Thread]] = []
        self.escalated: dict[str, str] = {}
        self.stats = SupervisorStats()
        self.halted = False
        self._specs: dict[str, ChildSpec] = {}
        self._default_spec = default_spec
        self._history: dict[str, deque[float]] = {}
        self._rng = random.Random()
        self._on_escalate = on_escalate
        self._unstarted: deque[tuple[ChildHandle, str]] = deque()  # restarts no thread could run
        self._stop = threading.Event()
        self._stats_lock = threading.Lock()  # children on many threads report fenced writes
        self._watchdog = threading.Thread(target=self._watch, name="supervisor-watchdog", daemon=True)
        self._watchdog.start()

    # ---- starting children -------------------------------------------------------------

    def register(self, h: ChildHandle, spec: ChildSpec | None = None) -> ChildHandle:
        """Make `h` the current incarnation of its key (with `spec`, if given, from now on)."""
        if spec is not None:
            self._specs[h.key] = spec
        self.children[h.key] = h
        return h

    def spec_of(self, key: str) -> ChildSpec:
        spec = self._specs.get(key, self._default_spec)
        if spec is None:
            raise KeyError(f"no child spec for {key!r}")
        return spec

    def start_child(self, h: ChildHandle, start: Callable[[ChildHandle], object]) -> None:
        """Run `start(h)` for its actor ref; a failure to start is a fault like a crash."""
        try:
            h.ref = start(h)
        except Exception as e:  # no thread, a fault: counted and retried like a crash
            logger.error("supervisor: could not start {}: {!r}", h.key, e)
            self.child_failed(h, f"start failed: {e!r}")

    def start_singleton(self, key: str, start: Callable[[ChildHandle], object],
                        on_retired: Callable[[], None] = lambda: None) -> ChildHandle:
        """Supervise a service actor (the coordinator): restarted by calling `start` again,
        with the same intensity limits as any child; escalated straight to the owner.
        `on_retired` runs the moment it is given up on, before any replacement exists."""
        handle = self.register(ChildHandle(self, key, 0), Singleton(start, on_retired))
        self.start_child(handle, start)
        return handle

    def finished(self, key: str, epoch: int) -> None:
        """The child `key` of `epoch` is done with its work: not watched, never restarted."""
        h = self.children.get(key)
        if h is not None and h.epoch == epoch:
            h.retired = h.done = True
            self.children.pop(key, None)

    def halt(self) -> None:
        """Stop supervising for good: no restart and no escalation happen any more; the
        children keep running on their own."""
        self._stop.set()
        self.halted = True

    # ---- watching ----------------------------------------------------------------------

    def _watch(self) -> None:
        while not self._stop.wait(self.cfg.watchdog_interval_s):
            for _ in range(len(self._unstarted)):
                self._start_restart(*self._unstarted.popleft())
            now = time.monotonic()
            for h in list(self.children.values()):
                if not h.retired and (reason := h.overdue(now)) is not None:
                    self.child_failed(h, reason)

    def child_failed(self, h: ChildHandle, reason: str) -> None:
        """Give up on `h` (once) and restart its key on a thread of its own."""
        if h.retired or self._stop.is_set():
            return
        h.retired = True
        self.spec_of(h.key).retired(h)
        self._start_restart(h, reason)

    def _start_restart(self, h: ChildHandle, reason: str) -> None:
        try:
            threading.Thread(target=self._restart, args=(h, reason), name=f"restart-{h.key}",
                             daemon=True).start()
        except RuntimeError as e:  # can't start new thread: the watchdog tries again
            logger.error("supervisor: cannot start the restart of {} yet: {}", h.key, e)
            self._unstarted.append((h, reason))

    # ---- restarting --------------------------------------------------------------------

    def _restart(self, h: ChildHandle, reason: str) -> None:
        t0 = time.monotonic()
        history = self._history.setdefault(h.key, deque())
        while history and t0 - history[0] > self.cfg.restart_window_s:
            history.popleft()
        logger.warning("supervisor: {} {} (epoch {}) {} — restart {} of {} in {:g}s",
                       h.key, h.symbol, h.epoch, reason, len(history) + 1, self.cfg.max_restarts,
                       self.cfg.restart_window_s)
        if h.ref is not None:
            h.ref.stop(block=False)  # a poison pill: runs only if the actor ever gets free
        if h.thread is not None and h.thread.is_alive() and h.op_name is not None:
            self.abandoned.append((h.key, h.epoch, h.thread))
        if len(history) >= self.cfg.max_restarts:
            self._escalate(h, reason)
            return
        history.append(t0)
        self.stats.restarts += 1
        backoff = min(self.cfg.backoff_max_s, self.cfg.backoff_base_s * 2 ** (len(history) - 1))
        time.sleep(backoff * self._rng.uniform(0.5, 1.5))
        spec = self.spec_of(h.key)
        try:
            spec.restart(self, h, t0)
        except Exception as e:  # what it needs is still failing: count it and try again
            logger.error("supervisor: could not restart {}: {!r}", h.key, e)
            self.child_failed(self.register(spec.stand_in(self, h)), f"restart failed: {e!r}")

    def _escalate(self, h: ChildHandle, reason: str) -> None:
        """Past the restart intensity: no more restarts; the spec settles, the owner hears.
        Counted once the owner has heard: whoever sees the count sees what the owner made of it."""
        msg = f"restart intensity exceeded ({self.cfg.max_restarts} in {self.cfg.restart_window_s:g}s): {reason}"
        logger.critical("supervisor: ESCALATING {} {}: {}", h.key, h.symbol, msg)
        self.escalated[h.key] = msg
        self.children.pop(h.key, None)
        try:
            note = self.spec_of(h.key).escalate(self, h, msg)
            if self._on_escalate:
                self._on_escalate(h.key, note)
        finally:
            self.stats.escalations += 1

    # ---- introspection and shutdown ----------------------------------------------------

    def count_fenced(self) -> None:
        with self._stats_lock:
            self.stats.fenced_writes += 1

    def abandoned_alive(self) -> int:
        return sum(1 for _, _, t in self.abandoned if t.is_alive())

    def stop_all(self, deadline_s: float) -> list[str]:
        """Stop every child with one overall deadline; returns the keys still running."""
        self._stop.set()
        end = time.monotonic() + deadline_s
        futures = []
        for h in list(self.children.values()):
            h.retired = True
            if h.ref is not None and h.ref.is_alive():
                futures.append((h, h.ref.stop(block=False)))
        stuck = []
        for h, fut in futures:
            try:
                fut.get(timeout=max(0.0, end - time.monotonic()))
            except Exception:
                stuck.append(h.key)
        return stuck
