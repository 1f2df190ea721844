"""Position actors under the generic supervisor: fenced restarts through the database epoch.

A restart of a position raises its epoch in the database first (fencing every write and
venue call of the old actor, which may still be blocked and is abandoned), then starts a
replacement that reloads the position and reconciles it with the venue before it acts. A
position the supervisor gives up on is settled by `actors/escalation.py`.

`PositionHandle` is the position's report card: besides the operation deadline the generic
supervisor watches, it carries the actor's account of its protection (phase, since when it
holds a position without a stop, whether a withdrawal is stuck), read by the watchdog, the
guardian, health and the control plane.

This wiring lives in service/, not beside the actors: the supervisor sits above the actors it
supervises, and nothing below service imports it (the actors see their handle only as the
object they report to).
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable

from actors.escalation import EscalationPolicy
from actors.messages import OpenPosition, RecoverPosition
from actors.position import PositionActor, PositionContext
from core.config import DeadlinesCfg, SupervisorCfg
from core.entry_protocol import WITHDRAW_ALARM_AFTER
from core.phases import STOP_RESTING, exposed
from core.position_types import Params, Phase, PositionState, TrailingMode
from exchange.gateway import Fenced
from persistence.positions import PositionStore
from supervisor import ChildHandle, ChildSpec, Supervisor

__all__ = ["PositionHandle", "PositionSupervisor"]


class PositionHandle(ChildHandle):
    """A position actor's handle: the generic report card plus its protection."""

    def __init__(self, sup: PositionSupervisor | None, key: str, epoch: int, symbol: str = "",
                 phase: Phase | None = None) -> None:
        super().__init__(sup, key, epoch, symbol)
        self.protect_s = sup.deadlines.protect_s if sup is not None else float("inf")
        self.phase = phase  # None until the actor reports (a stand-in for a failed restart)
        self.trailing_mode: TrailingMode | None = None  # None until the actor reports
        self.unprotected_since: float | None = None
        self.withdraw_stuck = False  # a close-position stop of ours will not cancel: health counts it

    def note_protection(self, s: PositionState) -> None:
        """The actor's account of its protection, given as soon as it knows (an entry fill is
        exposure from that moment, before the write that records it)."""
        self.phase = s.phase
        self.withdraw_stuck = s.withdraw_failures >= WITHDRAW_ALARM_AFTER
        self.trailing_mode = s.params.trailing_mode
        if not exposed(s.phase, s.stop_cid):
            self.unprotected_since = None
        elif self.unprotected_since is None:
            self.unprotected_since = time.monotonic()

    def overdue(self, now: float) -> str | None:
        """Past its operation deadline, or holding a position without a stop for longer than
        `deadlines.protect_s`."""
        late = super().overdue(now)
        if late is None and self.unprotected_since is not None and now - self.unprotected_since > self.protect_s:
            return f"unprotected for more than {self.protect_s:g}s"
        return late

    @property
    def recovered(self) -> bool:
        """Protected again after a restart (or finished)."""
        return self.done or (self.phase in STOP_RESTING and self.unprotected_since is None)


class _PositionChild(ChildSpec):
    """Every position key: restarted by a fenced adoption, escalated to the policy."""

    def __init__(self, sup: PositionSupervisor) -> None:
        self.sup = sup

    def restart(self, sup: Supervisor, h: ChildHandle, t0: float) -> None:
        self.sup.watch_reprotection(self.sup.adopt(h.key, h.epoch), t0)

    def stand_in(self, sup: Supervisor, h: ChildHandle) -> ChildHandle:
        return PositionHandle(self.sup, h.key, self.sup.epochs.get(h.key, h.epoch), h.symbol)

    def escalate(self, sup: Supervisor, h: ChildHandle, msg: str) -> str:
        return self.sup.escalation.settle(h.key, h.epoch, msg)


class PositionSupervisor(Supervisor):
    """The service's supervisor: the coordinator as a singleton, and one child per position.

    `epochs` (shared with the positions' context) is the in-memory fence: an actor whose
    epoch is not the current one for its position reaches neither the venue nor the store.
    The context's `on_final` must reach `finished` (bound where both are built)."""

    def __init__(self, cfg: SupervisorCfg, deadlines: DeadlinesCfg, ctx: PositionContext,
                 defaults: Params, on_escalate: Callable[[str, str], None] | None = None) -> None:
        self.deadlines, self.ctx, self.defaults = deadlines, ctx, defaults
        self.store: PositionStore = ctx.store
        self.epochs: dict[str, int] = ctx.epochs
        self.escalation = EscalationPolicy(ctx, lambda pid: self.store.load(pid, self.defaults), self._bump)
        # Makes "is the coordinator asking still current?" and "start this position's actor"
        # one step, so a replaced coordinator and its successor never both start one.
        self._launch_lock = threading.Lock()
        super().__init__(cfg, on_escalate, default_spec=_PositionChild(self))

    def halt(self) -> None:
        """Stop supervising and go protect-only (the database lease was lost): no restart, no
        escalation, no new position and no entry reaches the venue again. The positions we
        hold keep their actors and epochs, so a stop on the wire stays placed and a position
        between its entry fill and its stop still gets the stop: nobody else in this process
        would protect it."""
        super().halt()
        self.ctx.halted.set()

    # ---- starting positions ------------------------------------------------------------

    def start_position(self, state: PositionState, recover: bool = False) -> PositionHandle:
        handle = self._spawn(state)
        handle.ref.tell(RecoverPosition() if recover else OpenPosition())
        return handle

    def _spawn(self, state: PositionState) -> PositionHandle:
        if self.halted:
            raise Fenced("trading is halted: this process no longer owns the database")
        # a child that has not acted yet still counts as in flight
        handle = PositionHandle(self, state.id, state.epoch, state.symbol, state.phase)
        self.epochs[state.id] = state.epoch
        self.register(handle)
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
            ghost = self.register(PositionHandle(self, state.id, state.epoch, state.symbol))
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

    def adopt(self, position_id: str, epoch: int) -> PositionHandle:
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

    def watch_reprotection(self, h: PositionHandle, t0: float) -> None:
        """Record restart → protected-again times (a benchmark and chaos-report figure)."""
        def check() -> None:
            if h.retired and not h.done:
                return
            if h.recovered:
                self.stats.reprotect_s.append(time.monotonic() - t0)
            else:
                self.ctx.scheduler.call_later(0.05, check)
        self.ctx.scheduler.call_later(0.05, check)
