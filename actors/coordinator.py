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
"""
from __future__ import annotations

import re
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Callable

import pykka
from loguru import logger

from actors.inbox import QueuedWave, WaveInbox
from actors.messages import (
    Claim, CoordinatorStatus, PositionClosed, PositionOutcome, Resume, SetDefaults, SetPaused, SubmitWave,
    WaveDeadline,
)
from actors.scheduler import Scheduler
from core.config import Config
from core.faults import FaultPlan, InjectedCrash
from core.phases import outcome_of
from core.position_types import Outcome, Params, PositionState
from core.sizing import Sizing, notional
from core.wave_plan import Room, plan
from core.types import Side
from exchange.gateway import Fenced
from persistence import coordinator_epoch
from persistence.positions import PositionStore, SymbolBusy
from persistence.waves import WaveStore
from signals.wave import SignalIn, Wave


OPENED = {o.value for o in Outcome if o.opened}
_SYMBOL_OR_RANK = re.compile(r"\S+/\S+:\S+ |; rank \d+|\d+s left of ")


def skip_kind(reason: str) -> str:
    """A skip reason without its symbol and rank, so a wave's skips can be counted by kind."""
    return _SYMBOL_OR_RANK.sub("", reason).strip()


@dataclass
class WaveProgress:
    id: str
    started: float
    deadline: float
    target: int  # how many positions this wave may open
    reserves: deque[SignalIn] = field(default_factory=deque)
    launched: dict[str, str] = field(default_factory=dict)  # position id -> signal id
    opened: int = 0
    pending: set[str] = field(default_factory=set)  # signal ids without an outcome
    overdue: bool = False
    note: str | None = None  # why the whole wave was skipped, if it was
    skips: Counter = field(default_factory=Counter)  # skip reasons by kind, for the summary line


@dataclass(frozen=True)
class WaveSummary:
    wave_id: str
    outcomes: dict[str, int]
    seconds: float
    late: bool


def settled_outcome(s: PositionState) -> Outcome:
    """The outcome of a position that reported (or ended) before its outcome was stored, read
    from its stored phase: an actor in a final phase never reports again."""
    return outcome_of(s.phase, s.reported)


class WaveCoordinator(pykka.ThreadingActor):
    use_daemon_thread = True

    def __init__(self, cfg: Config, waves: WaveStore, positions: PositionStore, supervisor,
                 scheduler: Scheduler, defaults: Params, handle,
                 on_wave_done: Callable[[WaveSummary], None] = lambda _w: None, guard=None,
                 faults: FaultPlan | None = None) -> None:
        super().__init__()
        self.cfg, self.waves, self.positions = cfg, waves, positions
        self.faults = faults or FaultPlan()
        self.epoch: int | None = None  # the coordinator epoch, once claimed
        self.supervisor, self.scheduler, self.defaults = supervisor, scheduler, defaults
        self.handle = handle
        self.on_wave_done = on_wave_done
        self.guard = guard  # loss limits (service/limits.py); None: none
        self.paused = False
        self.shutting_down = False  # set once by the shutdown pause: no position starts after it
        self.open_symbols: dict[str, str] = {}  # symbol -> position id (open or opening)
        self.exposure: dict[str, Decimal] = {}  # position id -> its entry notional, while it is held
        self.active: dict[str, WaveProgress] = {}
        self.by_signal: dict[str, str] = {}  # signal id -> wave id
        self.inbox = WaveInbox(cfg.signals.inbox_size)
        self._admitting = False
        self._resumed = False

    def on_failure(self, exc_type, exc, tb) -> None:
        if isinstance(exc, Fenced):
            self.handle.fenced()
            logger.warning("coordinator epoch {}: fenced ({}); its successor owns the waves", self.epoch, exc)
        self.handle.crashed(exc)

    def on_receive(self, msg):
        match msg:
            case Claim():
                self._db(self._claim)
            case Resume(reply=reply):
                try:
                    ids = self._db(self._resume)
                except BaseException as e:
                    if reply is not None:
                        reply.set_exception(e)
                    raise
                if reply is not None:
                    reply.set_result(ids)
            case SubmitWave(wave=w, reply=reply, resent=resent):
                try:
                    status = self._db(self._on_wave, w, resent)
                except BaseException as e:
                    if reply is not None:
                        reply.set_exception(e)
                    raise  # a tell: the coordinator crashes and is restarted from the database
                if reply is not None:
                    reply.set_result(status)
            case PositionOutcome():
                self._db(self._on_outcome, msg)
            case PositionClosed(symbol=sym, position_id=pid, reason=why):
                if self.open_symbols.get(sym) == pid:
                    del self.open_symbols[sym]
                self.exposure.pop(pid, None)
                if self.guard is not None:
                    self.guard.note_closed(sym, why)
            case WaveDeadline(wave_id=wid):
                self._on_deadline(wid)
            case SetPaused(paused=p, why=why):
                self.paused = p
                self.shutting_down = self.shutting_down or why == "shutdown"
                logger.log("INFO" if why == "shutdown" or not p else "WARNING", "coordinator: {} taking new waves ({})",
                           "STOPPED" if p else "resumed", why)
                self._admit_next()  # queued waves wait out a pause, then take their turn
            case SetDefaults(params=params):
                self.defaults = params
            case CoordinatorStatus():
                return {"paused": self.paused, "open_symbols": dict(self.open_symbols),
                        "waves_in_progress": {w.id: len(w.pending) for w in self.active.values()},
                        "opening": self._opening_total(), "inbox": self.inbox.ids()}
        return None

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

    def _progress(self, wave_id: str, deadline_s: float) -> WaveProgress:
        now = time.monotonic()
        target = min(self.cfg.risk.max_positions_per_wave,
                     max(0, self.cfg.risk.max_open_positions - len(self.open_symbols)))
        wp = WaveProgress(wave_id, now, now + deadline_s, target)
        self.active[wave_id] = wp
        ref = self.actor_ref

        def due() -> None:
            try:
                ref.tell(WaveDeadline(wave_id))
            except pykka.ActorDeadError:
                pass  # this coordinator was replaced: its successor keeps the wave's deadline
        self.scheduler.call_later(deadline_s, due)
        return wp

    def _on_wave(self, wave: Wave, resent: bool = False) -> str:
        """Persist a wave, then open it now or queue it; returns the intake status. A wave
        sent again after a replacement may already be stored and resumed: it is being opened."""
        waiting = self._opening_now()
        dups = set(self.waves.insert(wave, self.cfg.deadlines.wave_s, queued=waiting))
        if resent and dups and (wave.id in self.active or wave.id in self.inbox):
            logger.info("coordinator: wave {} was stored before the coordinator was replaced; resumed", wave.id)
            return "queued" if wave.id in self.inbox else "opening"
        if wave.id in self.active or wave.id in self.inbox or (dups and dups >= {s.id for s in wave.signals}):
            logger.warning("coordinator: wave {} already received; duplicate ignored", wave.id)
            return "duplicate"
        valid = [s for s in wave.valid if s.id not in dups]
        rejected = [s for s in wave.signals if s.reason and s.id not in dups]
        logger.info("wave {} received: {} signals ({} valid, {} rejected{})", wave.id,
                    len(wave.signals), len(valid), len(rejected),
                    f", {len(dups)} duplicates ignored" if dups else "")
        for s in rejected:
            logger.warning("wave {}: signal {} rejected: {}", wave.id, s.id, s.reason)
        queued = QueuedWave(wave.id, wave.ts, tuple(valid))
        if not waiting or not valid or self.paused:
            self._open(queued)
            return "complete" if wave.id not in self.active else "opening"
        dropped = self._queue(queued)
        logger.info("wave {} queued behind the wave still opening (inbox {}/{})", wave.id,
                    len(self.inbox), self.inbox.size)
        return "complete" if queued in dropped else "queued"

    def _opening_now(self) -> bool:
        """A wave is still opening until every signal has an outcome or its deadline passed."""
        return any(not w.overdue for w in self.active.values())

    def _queue(self, wave: QueuedWave) -> list[QueuedWave]:
        dropped = self.inbox.offer(wave)
        for old in dropped:
            reason = (f"not opened: a wave was still opening and signals.inbox_size={self.inbox.size}"
                      if old is wave else f"dropped from the full inbox (signals.inbox_size="
                      f"{self.inbox.size}) for the newer wave {wave.wave_id}")
            logger.warning("wave {}: {}", old.wave_id, reason)
            self._open(old, skip_reason=reason)
        return dropped

    def _admit_next(self) -> None:
        """Open the next queued wave once nothing is opening any more."""
        if self._admitting:
            return  # the loop below is already running further up this call stack
        self._admitting = True
        try:
            while not self.paused and not self._opening_now() and (q := self.inbox.pop()) is not None:
                self.waves.admit(q.wave_id)
                age = time.time() - q.ts
                stale = age > self.cfg.signals.max_age_s
                self._open(q, skip_reason=f"expired in the inbox: wave is {age:.0f}s old, older than "
                           f"signals.max_age_s={self.cfg.signals.max_age_s:g}" if stale else None)
        finally:
            self._admitting = False

    def _open(self, q: QueuedWave, skip_reason: str | None = None) -> None:
        """Start a wave's progress; with a skip reason (or while paused) every signal is
        skipped with it instead, and the wave completes at once."""
        wp = self._progress(q.wave_id, self.cfg.deadlines.wave_s)
        for s in q.signals:
            self.by_signal[s.id] = q.wave_id
            wp.pending.add(s.id)
        if self.paused and skip_reason is None:
            skip_reason = "service paused: not taking new waves"
        if skip_reason is None and q.signals and self.guard is not None:
            skip_reason = self.guard.halt_reason()
        if skip_reason is not None:
            for s in q.signals:
                self._decide(wp, s.id, Outcome.SKIPPED, skip_reason)
            wp.note = skip_reason
        else:
            wp.reserves.extend(q.signals)
            self._fill(wp)
        self._check_done(wp)

    def _fill(self, wp: WaveProgress) -> None:
        """Carry out the wave plan (core/wave_plan.py): launch what it says, skip what it
        gives up; a launch the database refuses (symbol taken meanwhile) frees its slot, so
        the plan is asked again."""
        risk = self.cfg.risk
        created: list[PositionState] = []
        try:
            while not self.shutting_down:  # no new position while stopping; the rest resume at the next start
                p = plan(wp.reserves, Room(
                    target=wp.target, opened=wp.opened, opening=self._opening(wp),
                    opening_total=self._opening_total(), held=frozenset(self.open_symbols),
                    max_open=risk.max_open_positions, max_concurrent=risk.max_concurrent_opens))
                wp.reserves = deque(p.waiting)
                for sig, reason in p.skip:
                    self._decide(wp, sig.id, Outcome.SKIPPED, reason)
                if all([self._launch(wp, sig, created) for sig in p.launch]):
                    return
        finally:
            # Every row first, then every actor: started one by one, the actors' own commits
            # queued against each later insert (a wave of 200 took 2.6 s just to launch).
            self.supervisor.launch(created, by=self.handle)

    def _opening(self, wp: WaveProgress) -> int:
        return sum(1 for sid in wp.launched.values() if sid in wp.pending)

    def _opening_total(self) -> int:
        return sum(self._opening(w) for w in self.active.values())

    def _launch(self, wp: WaveProgress, sig: SignalIn, created: list[PositionState]) -> bool:
        """Size the position and create its row (the caller starts its actor); False if it is
        not launched after all — its symbol taken meanwhile, cooling down after a stop-out, or
        no size — so the signal is skipped with the reason and its slot freed for the plan."""
        if self.guard is not None and (left := self.guard.cooldown_left(sig.symbol)) > 0:
            self._decide(wp, sig.id, Outcome.SKIPPED, f"{sig.symbol} cooling down after a stop-out "
                         f"({left:.0f}s left of risk.cooldown_after_stop_s)")
            return False
        size = self._size()
        if isinstance(size, str):
            self._decide(wp, sig.id, Outcome.SKIPPED, f"not opened: {size}")
            return False
        pid = uuid.uuid4().hex[:12]
        state = PositionState(id=pid, signal_id=sig.id, wave_id=wp.id, symbol=sig.symbol,
                              side=sig.side, params=replace(self.defaults, notional=size))
        try:
            self.positions.create(state, coordinator_epoch=self.epoch)
        except SymbolBusy:
            self._decide(wp, sig.id, Outcome.SKIPPED, f"{sig.symbol} already has an open position")
            return False
        wp.launched[pid] = sig.id
        self.open_symbols[sig.symbol] = pid
        self.exposure[pid] = size
        created.append(state)
        return True

    def _size(self) -> Decimal | str:
        """The next position's notional (risk.sizing, capped per trade), or why it has none:
        the equity is unknown, or it would take the account past risk.max_exposure_usdt."""
        risk = self.cfg.risk
        rules = Sizing(risk.sizing, risk.position_notional_usdt, risk.equity_pct, risk.risk_pct,
                       risk.max_position_usdt, Decimal(self.cfg.exchange.leverage))
        equity = self.guard.equity() if self.guard is not None else None
        size = notional(rules, equity, self.defaults.stop_loss_pct)
        if isinstance(size, str):
            return size
        if not risk.max_exposure_usdt:
            return size
        held = sum(self.exposure.values(), Decimal(0))
        if held + size > risk.max_exposure_usdt:
            return (f"exposure cap: {held} USDT open + {size} would pass "
                    f"risk.max_exposure_usdt={risk.max_exposure_usdt}")
        return size

    # ---- outcomes -------------------------------------------------------------------------

    def _on_outcome(self, o: PositionOutcome) -> None:
        wid = self.by_signal.get(o.signal_id)
        wp = self.active.get(wid) if wid else None
        recorded = self.waves.set_outcome(o.signal_id, o.outcome, o.reason, o.position_id)
        if not recorded or wp is None:
            if recorded:  # a late outcome for a wave we no longer track: still counted
                logger.info("late outcome for {}: {}", o.signal_id, o.outcome.value)
            return
        wp.pending.discard(o.signal_id)
        if o.outcome.opened:
            wp.opened += 1
        if o.outcome is Outcome.FAILED and self.open_symbols.get(o.symbol) == o.position_id:
            del self.open_symbols[o.symbol]
        if o.outcome is Outcome.FAILED:
            self.exposure.pop(o.position_id, None)
        for w in [wp, *(w for w in self.active.values() if w is not wp)]:
            self._fill(w)
            self._check_done(w)

    def _decide(self, wp: WaveProgress, signal_id: str, outcome: Outcome, reason: str) -> None:
        if self.waves.set_outcome(signal_id, outcome, reason):
            # one line per wave says what was skipped and why (see _check_done)
            logger.debug("wave {}: signal {} {}: {}", wp.id, signal_id, outcome.value, reason)
            if outcome is Outcome.SKIPPED:
                wp.skips[skip_kind(reason)] += 1
        wp.pending.discard(signal_id)

    def _check_done(self, wp: WaveProgress) -> None:
        if wp.pending or wp.id not in self.active:
            return
        del self.active[wp.id]
        self.waves.complete(wp.id, wp.note)
        outcomes = dict(self.waves.outcomes(wp.id))
        secs = time.monotonic() - wp.started
        skipped = "".join(f"; skipped {n}: {why}" for why, n in wp.skips.most_common())
        logger.info("wave {} complete in {:.2f}s: {}{}", wp.id, secs,
                    ", ".join(f"{v} {k}" for k, v in sorted(outcomes.items())), skipped)
        self.on_wave_done(WaveSummary(wp.id, outcomes, secs, wp.overdue))
        self._admit_next()

    def _on_deadline(self, wave_id: str) -> None:
        wp = self.active.get(wave_id)
        if wp is not None and wp.pending:
            wp.overdue = True
            logger.warning("wave {} passed its deadline with {} signals pending; late outcomes "
                           "will still be recorded", wave_id, len(wp.pending))
            self._admit_next()
