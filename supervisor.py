"""The supervisor: deadlines, one-for-one fenced restarts, intensity limits and escalation.

pykka has no supervision, cannot cancel a timed-out ask and cannot stop a blocked actor. So
every child reports the operation it is in and that operation's deadline on its ChildHandle;
a watchdog thread restarts a child that overran it or crashed. A restart raises the
position's epoch in the database (fencing every write and venue call of the old actor, whose
thread cannot be killed and is abandoned as a daemon), then starts a replacement that reloads
the position and reconciles it with the venue before it acts.
"""
from __future__ import annotations

import random
import threading
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Callable, Iterator

from loguru import logger

from actors.messages import OpenPosition, PositionOutcome, RecoverPosition
from actors.position import PositionActor, PositionContext
from core.config import DeadlinesCfg, SupervisorCfg
from core.entry_protocol import WITHDRAW_ALARM_AFTER
from core.position_types import Leg, Outcome, Params, Phase, PositionState, position_id_of
from exchange.gateway import Fenced, OrderRequest
from persistence.positions import PositionStore


class ChildHandle:
    """A child's report card, written only by the child's own thread, read by the watchdog."""

    def __init__(self, sup: "Supervisor", key: str, epoch: int, symbol: str = "") -> None:
        self.sup, self.key, self.epoch, self.symbol = sup, key, epoch, symbol
        self.ref = None
        self.thread: threading.Thread | None = None
        self.op_name: str | None = None
        self.op_deadline: float | None = None
        self.unprotected_since: float | None = None
        self.withdraw_stuck = False  # a close-position stop of ours will not cancel: health counts it
        self.phase = ""
        self.trailing_mode = ""
        self.done = False
        self.retired = False  # replaced, escalated or finished: the watchdog ignores it

    @contextmanager
    def op(self, name: str, seconds: float) -> Iterator[None]:
        self.thread = threading.current_thread()
        outer = (self.op_name, self.op_deadline)
        self.op_name, self.op_deadline = name, time.monotonic() + seconds
        try:
            yield
        finally:
            self.op_name, self.op_deadline = outer

    def note_protection(self, s: PositionState) -> None:
        """The actor's account of its protection, given as soon as it knows (an entry fill is
        exposure from that moment, before the write that records it)."""
        self.phase = s.phase.value
        self.withdraw_stuck = s.withdraw_failures >= WITHDRAW_ALARM_AFTER
        self.trailing_mode = s.params.trailing_mode
        exposed = s.phase in (Phase.OPEN, Phase.PROTECTED, Phase.TRAILING, Phase.CLOSING) and s.stop_cid is None
        if not exposed:
            self.unprotected_since = None
        elif self.unprotected_since is None:
            self.unprotected_since = time.monotonic()

    def crashed(self, exc: BaseException) -> None:
        self.sup.child_failed(self, f"crashed: {exc!r}")


@dataclass
class SupervisorStats:
    restarts: int = 0
    escalations: int = 0
    fenced_writes: int = 0
    reprotect_s: list[float] = field(default_factory=list)  # restart → protected again


class Supervisor:
    def __init__(self, cfg: SupervisorCfg, deadlines: DeadlinesCfg, ctx: PositionContext,
                 defaults: Params, on_escalate: Callable[[str, str], None] | None = None) -> None:
        self.cfg, self.deadlines, self.ctx, self.defaults = cfg, deadlines, ctx, defaults
        self.store: PositionStore = ctx.store
        self.children: dict[str, ChildHandle] = {}
        self.epochs: dict[str, int] = ctx.epochs
        self.abandoned: list[tuple[str, int, threading.Thread]] = []
        self.escalated: dict[str, str] = {}
        self.stats = SupervisorStats()
        self._history: dict[str, deque[float]] = {}
        self._rng = random.Random()
        self._on_escalate = on_escalate
        self._singletons: dict[str, Callable[[ChildHandle], object]] = {}
        self._on_retired: dict[str, Callable[[], None]] = {}
        # Makes "is the coordinator asking still current?" and "start this position's actor"
        # one step, so a replaced coordinator and its successor never both start one.
        self._launch_lock = threading.Lock()
        self._unstarted: deque[tuple[ChildHandle, str]] = deque()  # restarts no thread could run
        self._stop = threading.Event()
        self.halted = False  # the context's on_final is bound to _on_final where both are built
        self._watchdog = threading.Thread(target=self._watch, name="supervisor-watchdog", daemon=True)
        self._watchdog.start()

    # ---- starting children -------------------------------------------------------------

    def start_position(self, state: PositionState, recover: bool = False) -> ChildHandle:
        handle = self._spawn(state)
        handle.ref.tell(RecoverPosition() if recover else OpenPosition())
        return handle

    def halt(self) -> None:
        """Stop supervising and go protect-only (the database lease was lost): no restart, no
        escalation, no new position and no entry reaches the venue again. The positions we
        hold keep their actors and epochs, so a stop on the wire stays placed and a position
        between its entry fill and its stop still gets the stop: nobody else in this process
        would protect it."""
        self._stop.set()
        self.halted = True
        self.ctx.halted.set()

    def _spawn(self, state: PositionState) -> ChildHandle:
        if self.halted:
            raise Fenced("trading is halted: this process no longer owns the database")
        handle = ChildHandle(self, state.id, state.epoch, state.symbol)
        handle.phase = state.phase.value  # a child that has not acted yet still counts as in flight
        self.epochs[state.id] = state.epoch
        self.children[state.id] = handle
        handle.ref = PositionActor.start(state, self.ctx, handle)
        return handle

    def launch(self, states: list[PositionState], by: ChildHandle) -> None:
        """Start the actors of positions a coordinator has just created; Fenced if that
        coordinator was replaced meanwhile (its successor takes the rows over instead)."""
        if not states:
            return
        with self._launch_lock:
            if by.retired:
                raise Fenced(f"{by.key} epoch {by.epoch} was replaced; not starting {len(states)} positions")
            for s in states:  # each told at once: the first entry need not wait for the last thread
                self._spawn(s).ref.tell(OpenPosition())

    def adopt_orphan(self, state: PositionState, by: ChildHandle) -> bool:
        """Take over a position whose row exists but which no actor owns (its creator was
        replaced before starting one): under a raised epoch, reconciled first. False if
        someone already owns it. A failure is retried like any restart."""
        with self._launch_lock:
            if by.retired:
                raise Fenced(f"{by.key} epoch {by.epoch} was replaced")
            if state.id in self.children or state.id in self.escalated:
                return False
            ghost = ChildHandle(self, state.id, state.epoch, state.symbol)
            self.children[state.id] = ghost
        try:
            with ghost.op("take over", self.deadlines.operation_s):
                self.epochs[state.id] = self.store.bump_epoch(state.id, state.epoch)
                new = self.store.load(state.id, self.defaults)
        except Exception as e:
            self.child_failed(ghost, f"could not take over: {e!r}")
            return True
        with self._launch_lock:
            if ghost.retired:  # the watchdog gave up on the take-over and restarts it itself
                return True
            handle = self._spawn(new)
        handle.ref.tell(RecoverPosition())
        return True

    def start_singleton(self, key: str, start: Callable[[ChildHandle], object],
                        on_retired: Callable[[], None] = lambda: None) -> ChildHandle:
        """Supervise a service actor (the coordinator): restarted by calling `start` again,
        with the same intensity limits and escalation as a position. `on_retired` runs the
        moment it is given up on, before any replacement exists."""
        self._singletons[key] = start
        self._on_retired[key] = on_retired
        handle = ChildHandle(self, key, 0)
        self.children[key] = handle
        self._start_singleton(handle)
        return handle

    def _start_singleton(self, handle: ChildHandle) -> None:
        try:
            handle.ref = self._singletons[handle.key](handle)
        except Exception as e:  # no thread, a fault: counted and retried like a crash
            logger.error("supervisor: could not start {}: {!r}", handle.key, e)
            self.child_failed(handle, f"start failed: {e!r}")

    def adopt(self, position_id: str, epoch: int) -> ChildHandle:
        """Restore a position from the database under a new epoch (cold start, restart)."""
        self._bump(position_id, epoch)
        state = self.store.load(position_id, self.defaults)
        return self.start_position(state, recover=True)

    def _bump(self, position_id: str, epoch: int) -> int:
        for _ in range(3):
            try:
                new = self.store.bump_epoch(position_id, epoch)
                self.epochs[position_id] = new
                return new
            except Fenced:
                epoch = self.store.load(position_id, self.defaults).epoch
        raise Fenced(f"could not take over position {position_id}")

    # ---- watching ----------------------------------------------------------------------

    def _watch(self) -> None:
        while not self._stop.wait(self.cfg.watchdog_interval_s):
            for _ in range(len(self._unstarted)):
                self._start_restart(*self._unstarted.popleft())
            now = time.monotonic()
            for h in list(self.children.values()):
                if h.retired:
                    continue
                if h.op_deadline is not None and now > h.op_deadline:
                    self.child_failed(h, f"operation '{h.op_name}' overran its deadline")
                elif h.unprotected_since is not None and now - h.unprotected_since > self.deadlines.protect_s:
                    self.child_failed(h, f"unprotected for more than {self.deadlines.protect_s:g}s")

    def child_failed(self, h: ChildHandle, reason: str) -> None:
        if h.retired or self._stop.is_set():
            return
        h.retired = True
        if h.key in self._on_retired:
            self._on_retired[h.key]()
        self._start_restart(h, reason)

    def _start_restart(self, h: ChildHandle, reason: str) -> None:
        try:
            threading.Thread(target=self._restart, args=(h, reason), name=f"restart-{h.key}",
                             daemon=True).start()
        except RuntimeError as e:  # can't start new thread: the watchdog tries again
            logger.error("supervisor: cannot start the restart of {} yet: {}", h.key, e)
            self._unstarted.append((h, reason))

    def _on_final(self, position_id: str, epoch: int) -> None:
        h = self.children.get(position_id)
        if h is not None and h.epoch == epoch:
            h.retired = h.done = True
            self.children.pop(position_id, None)

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
        if h.key in self._singletons:
            new = ChildHandle(self, h.key, h.epoch + 1)
            self.children[h.key] = new
            self._start_singleton(new)
            return
        try:
            new = self.adopt(h.key, h.epoch)
        except Exception as e:  # the DB or venue is still failing: count it and try again
            logger.error("supervisor: could not restart {}: {!r}", h.key, e)
            ghost = ChildHandle(self, h.key, self.epochs.get(h.key, h.epoch), h.symbol)
            self.children[h.key] = ghost
            self.child_failed(ghost, f"restart failed: {e!r}")
            return
        self._watch_reprotection(new, t0)

    def _watch_reprotection(self, h: ChildHandle, t0: float) -> None:
        """Record restart → protected-again times (a benchmark and chaos-report figure)."""
        def check() -> None:
            if h.retired and not h.done:
                return
            if h.phase in ("trailing", "protected") and h.unprotected_since is None or h.done:
                self.stats.reprotect_s.append(time.monotonic() - t0)
            else:
                self.ctx.scheduler.call_later(0.05, check)
        self.ctx.scheduler.call_later(0.05, check)

    def _escalate(self, h: ChildHandle, reason: str) -> None:
        """Past the restart intensity: fence the position, close it if we can, flag it."""
        self.stats.escalations += 1
        msg = f"restart intensity exceeded ({self.cfg.max_restarts} in {self.cfg.restart_window_s:g}s): {reason}"
        logger.critical("supervisor: ESCALATING {} {}: {}", h.key, h.symbol, msg)
        self.escalated[h.key] = msg
        self.children.pop(h.key, None)
        if h.key in self._singletons:
            if self._on_escalate:
                self._on_escalate(h.key, msg)
            return
        try:
            # The venue first: a failing (full, read-only) database must not keep the position
            # open. The old actor is fenced in memory at once; the database records it after.
            self.epochs[h.key] = max(self.epochs.get(h.key, h.epoch), h.epoch) + 1
            closed = self._emergency_close(h.key, msg)
        except Exception as e:
            logger.critical("supervisor: could not close escalated {}: {!r}; operator needed", h.key, e)
            self._record(h.key, "new epoch", lambda: self._bump(h.key, h.epoch))
            self._record(h.key, "flag", lambda: self.store.flag(h.key, msg))
            closed = False
            self._settle_signal(h.key, f"{msg}; close failed ({e}); flagged for the operator")
        if self._on_escalate:
            self._on_escalate(h.key, msg if closed else msg + "; close failed, position left open")

    def _settle_signal(self, position_id: str, reason: str) -> None:
        """Whatever became of the position, its signal gets its one outcome: a wave must not
        wait forever on a position that neither protection nor closing could resolve."""
        try:
            s = self.store.load(position_id, self.defaults)
        except Exception as e:
            logger.critical("supervisor: cannot read {} to settle its signal: {!r}", position_id, e)
            return
        if not s.reported:
            outcome = Outcome.UNPROTECTED if s.entry_price is not None or s.phase.holds_position else Outcome.FAILED
            self.ctx.coordinator().tell(PositionOutcome(s.id, s.signal_id, s.wave_id, s.symbol, outcome, reason))

    @staticmethod
    def _record(position_id: str, what: str, write):
        """One database write after a venue action: a failure is logged, never raised."""
        try:
            return write()
        except Exception as e:
            logger.critical("supervisor: {}: recording its {} failed: {!r}; recovery reconciles it with "
                            "the venue on the next start", position_id, what, e)
            return None

    def _emergency_close(self, position_id: str, msg: str) -> bool:
        """Close at market and take our resting orders off, straight through the gateway; then
        record it (epoch, flag, final step), each write on its own so one failing keeps none
        of the others from being tried."""
        s = self.store.load(position_id, self.defaults)  # a read: still works on a full disk
        gw, t = self.ctx.gateway, self.deadlines.venue_call_s
        epoch = self.epochs.get(position_id, s.epoch + 1)
        qty = next((abs(p.qty) for p in gw.positions(timeout=t) if p.symbol == s.symbol), None)
        if qty:
            cid = f"wt-{s.id}-{Leg.EXIT.value}{epoch}-{s.seq + 1}"
            gw.place_order(OrderRequest(cid, s.symbol, Leg.EXIT, s.side.exit_order_side, qty), timeout=t)
        for o in gw.open_orders(s.symbol, timeout=t):
            if position_id_of(o.cid) == s.id or o.cid in s.protective_cids:
                gw.cancel_order(s.symbol, o.cid, timeout=t)
        final = replace(s, phase=Phase.EMERGENCY_CLOSED if not s.reported else Phase.CLOSED,
                        close_reason="escalated by supervisor", stop_cid=None, trailing_cid=None,
                        reported=True, seq=s.seq + 1)
        new_epoch = self._record(position_id, "new epoch", lambda: self._bump(position_id, s.epoch))
        self._record(position_id, "flag", lambda: self.store.flag(position_id, msg))
        self._record(position_id, "close", lambda: self.store.commit_step(
            final if new_epoch is None else replace(final, epoch=new_epoch)))
        if not s.reported:
            outcome = Outcome.EMERGENCY_CLOSED if qty or s.entry_price else Outcome.FAILED
            self.ctx.coordinator().tell(PositionOutcome(s.id, s.signal_id, s.wave_id, s.symbol, outcome,
                                                        "escalated by supervisor after repeated failures"))
        self.epochs.pop(position_id, None)
        return True

    # ---- introspection and shutdown ----------------------------------------------------

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
