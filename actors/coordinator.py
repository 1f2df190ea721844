"""WaveCoordinator: turns a wave into positions without ever waiting on one.

It ranks a wave's valid signals, skips symbols already held, reserves up to
`max_positions_per_wave` slots, and asks the supervisor to start one PositionActor per
chosen signal — all at once. Outcomes come back as messages; an entry that fails is
replaced by the next-ranked reserve. Every signal ends with exactly one outcome (the
database refuses a second), and a wave's statistics are the sum of those outcomes.

The coordinator is supervised like a position: every message runs under an operation
deadline, and a coordinator that overran it or crashed is replaced. The successor first
raises the coordinator epoch (`Claim`), which fences every later write of its predecessor,
then resumes (`Resume`): waves left without an outcome per signal are finished, and a
position row its predecessor created but never started an actor for is taken over.

One wave opens at a time: a wave that arrives while another is still opening is persisted
and waits in a bounded inbox (`actors/inbox.py` states the policy), so a burst of waves can
neither pile up without limit nor race each other for the same slots.

The parts: `coordinator_intake.py` (waves in, the inbox, launching), `coordinator_outcomes.py`
(outcomes, closes, deadlines), `coordinator_base.py` (the state they share); the ranking and
slot policy is pure, in `core/wave_plan.py`.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from loguru import logger

from actors.coordinator_base import OPENED, WaveSummary, settled_outcome, skip_kind
from actors.coordinator_intake import WaveIntake
from actors.coordinator_outcomes import WaveOutcomes
from actors.inbox import QueuedWave, WaveInbox
from actors.messages import (
    Claim, CoordinatorStatus, PositionClosed, PositionOutcome, Resume, SetDefaults, SetPaused, SubmitWave,
    WaveDeadline,
)
from actors.ports import LossLimits, PositionLauncher, SupervisedHandle
from actors.scheduler import Scheduler
from core.config import Config
from core.faults import FaultPlan, InjectedCrash
from core.position_types import Params, PositionState
from core.types import Side
from exchange.gateway import Fenced
from persistence import coordinator_epoch
from persistence.positions import PositionStore
from persistence.waves import WaveStore
from signals.wave import SignalIn

__all__ = ["WaveCoordinator", "WaveSummary", "settled_outcome", "skip_kind"]


def _answer(reply: Future[Any] | None, work: Callable[[], Any]) -> None:
    """Run `work` and set its result (or its error) on `reply`; an error is raised on as well:
    the coordinator crashes and is restarted from the database."""
    try:
        result = work()
    except BaseException as e:
        if reply is not None:
            reply.set_exception(e)
        raise
    if reply is not None:
        reply.set_result(result)


class WaveCoordinator(WaveIntake, WaveOutcomes):
    def __init__(self, cfg: Config, waves: WaveStore, positions: PositionStore, supervisor: PositionLauncher,
                 scheduler: Scheduler, defaults: Params, handle: SupervisedHandle,
                 on_wave_done: Callable[[WaveSummary], None] = lambda _w: None, guard: LossLimits | None = None,
                 faults: FaultPlan | None = None) -> None:
        super().__init__()
        self.cfg, self.waves, self.positions = cfg, waves, positions
        self.faults = faults or FaultPlan()
        self.epoch = None
        self.supervisor, self.scheduler, self.defaults = supervisor, scheduler, defaults
        self.handle = handle
        self.on_wave_done = on_wave_done
        self.guard = guard
        self.paused = False
        self.shutting_down = False
        self.open_symbols = {}
        self.exposure = {}
        self.active = {}
        self.by_signal = {}
        self.inbox = WaveInbox(cfg.signals.inbox_size)
        self._admitting = False
        self._resumed = False

    def on_failure(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if isinstance(exc, Fenced):
            self.handle.fenced()
            logger.warning("coordinator epoch {}: fenced ({}); its successor owns the waves", self.epoch, exc)
        self.handle.crashed(exc)

    # ---- the mailbox: what each message does ------------------------------------------

    def on_receive(self, msg: Any) -> Any:
        handler = _HANDLERS.get(type(msg))
        return handler(self, msg) if handler is not None else None

    def _got_claim(self, _msg: Claim) -> None:
        self._db(self._claim)

    def _got_resume(self, msg: Resume) -> None:
        _answer(msg.reply, lambda: self._db(self._resume))

    def _got_wave(self, msg: SubmitWave) -> None:
        _answer(msg.reply, lambda: self._db(self._on_wave, msg.wave, msg.resent))

    def _got_outcome(self, msg: PositionOutcome) -> None:
        self._db(self._on_outcome, msg)

    def _got_deadline(self, msg: WaveDeadline) -> None:
        self._on_deadline(msg.wave_id)

    def _got_paused(self, msg: SetPaused) -> None:
        p, why = msg.paused, msg.why
        self.paused = p
        self.shutting_down = self.shutting_down or why == "shutdown"
        logger.log("INFO" if why == "shutdown" or not p else "WARNING", "coordinator: {} taking new waves ({})",
                   "STOPPED" if p else "resumed", why)
        self._admit_next()  # queued waves wait out a pause, then take their turn

    def _got_defaults(self, msg: SetDefaults) -> None:
        self.defaults = msg.params

    def _got_status(self, _msg: CoordinatorStatus) -> dict[str, Any]:
        return {"paused": self.paused, "open_symbols": dict(self.open_symbols),
                "waves_in_progress": {w.id: len(w.pending) for w in self.active.values()},
                "opening": self._opening_total(), "inbox": self.inbox.ids()}

    def _db(self, fn, *args):
        with self.handle.op(fn.__name__.strip("_"), self.cfg.deadlines.operation_s):
            return fn(*args)

    # ---- waves ---------------------------------------------------------------------------

    def _claim(self) -> None:
        """Take the coordinator epoch: from here on only this coordinator's writes count."""
        if (rule := self.faults.pick("coordinator_claim")) is not None:
            if rule.kind == "hang":
                self.faults.hang()
            elif rule.kind == "crash":
                raise InjectedCrash("injected crash while the coordinator claims its epoch")
        self.epoch = coordinator_epoch.take(self.waves.db)
        self.handle.epoch = self.epoch  # what the supervisor reports for the coordinator
        self.waves = self.waves.fenced(self.epoch)
        logger.info("coordinator: epoch {}", self.epoch)

    def _resume(self) -> list[str]:
        """Know what is held, and finish every wave left incomplete (after a restart of the
        service or of the coordinator). Returns the ids of the waves it is finishing."""
        if self._resumed:  # asked twice (start-up racing a restart): once is the whole job
            return list(self.active) + self.inbox.ids()
        self._resumed = True
        self.open_symbols = self.positions.open_symbols()
        self.exposure = self.positions.open_notional()
        orphans: list[PositionState] = []
        pending = self.waves.pending_signals()
        by_wave: dict[str, list] = {w.id: [] for w in self.waves.open_waves()}  # incl. all decided
        for row in pending:
            by_wave.setdefault(row.wave_id, []).append(row)
        statuses = self.waves.statuses(list(by_wave))
        for wave_id, rows in by_wave.items():
            status, received = statuses.get(wave_id, ("open", time.time()))
            if status == "queued":  # it was waiting in the inbox: it waits there again
                sigs = tuple(SignalIn(r.id, r.symbol, Side(r.side), r.score, r.rank) for r in rows)
                self._queue(QueuedWave(wave_id, received, sigs))
                continue
            wp = self._progress(wave_id, self.cfg.deadlines.wave_s)
            done = self.waves.outcomes(wave_id)  # what it opened before the restart still counts
            wp.opened = sum(n for k, n in done.items() if k in OPENED)
            for row in rows:
                position = self._unsettled(row.id, row.position_id) if row.position_id else None
                if row.position_id and position is None:
                    continue
                wp.pending.add(row.id)
                self.by_signal[row.id] = wave_id
                if position is not None:
                    wp.launched[position.id] = row.id
                    orphans.append(position)
                else:
                    wp.reserves.append(SignalIn(row.id, row.symbol, Side(row.side), row.score, row.rank))
            logger.info("coordinator: resuming wave {} ({} signals without outcome)", wave_id, len(rows))
        for position in orphans:  # before any launch: a row without an actor holds its symbol
            if self.supervisor.adopt_orphan(position, by=self.handle):
                logger.warning("coordinator: position {} {} had no actor (its creator was replaced); "
                               "taken over", position.id, position.symbol)
        for wp in list(self.active.values()):
            self._fill(wp)
            self._check_done(wp)
        self._admit_next()
        return list(by_wave)

    def _unsettled(self, signal_id: str, position_id: str) -> PositionState | None:
        """The signal's position, unless it reported before the crash without its outcome
        being stored: then the outcome is stored now, and None returned."""
        s = self.positions.load(position_id, self.defaults)
        if not (s.reported or s.phase.final):
            return s
        self.waves.set_outcome(signal_id, settled_outcome(s), f"settled on restart from position phase "
                               f"{s.phase.value}", position_id)
        return None


_HANDLERS: dict[type, Callable[[WaveCoordinator, Any], Any]] = {
    Claim: WaveCoordinator._got_claim,
    Resume: WaveCoordinator._got_resume,
    SubmitWave: WaveCoordinator._got_wave,
    PositionOutcome: WaveCoordinator._got_outcome,
    PositionClosed: WaveCoordinator._on_closed,
    WaveDeadline: WaveCoordinator._got_deadline,
    SetPaused: WaveCoordinator._got_paused,
    SetDefaults: WaveCoordinator._got_defaults,
    CoordinatorStatus: WaveCoordinator._got_status,
}
