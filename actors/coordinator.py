"""WaveCoordinator: turns a wave into positions without ever waiting on one.

It ranks a wave's valid signals, skips symbols already held, reserves up to
`max_positions_per_wave` slots, and asks the supervisor to start one PositionActor per
chosen signal — all at once. Outcomes come back as messages; an entry that fails is
replaced by the next-ranked reserve. Every signal ends with exactly one outcome (the
database refuses a second), and a wave's statistics are the sum of those outcomes.
"""
from __future__ import annotations

import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Callable

import pykka
from loguru import logger

from actors.messages import (
    CoordinatorStatus, PositionClosed, PositionOutcome, SetPaused, SubmitWave, WaveDeadline,
)
from actors.scheduler import Scheduler
from core.config import Config
from core.position_types import Outcome, Params, Phase, PositionState
from core.types import Side
from persistence.positions import PositionStore, SymbolBusy
from persistence.waves import WaveStore
from signals.wave import SignalIn, Wave


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


@dataclass(frozen=True)
class WaveSummary:
    wave_id: str
    outcomes: dict[str, int]
    seconds: float
    late: bool


class WaveCoordinator(pykka.ThreadingActor):
    use_daemon_thread = True

    def __init__(self, cfg: Config, waves: WaveStore, positions: PositionStore, supervisor,
                 scheduler: Scheduler, defaults: Params, handle,
                 on_wave_done: Callable[[WaveSummary], None] = lambda _w: None) -> None:
        super().__init__()
        self.cfg, self.waves, self.positions = cfg, waves, positions
        self.supervisor, self.scheduler, self.defaults = supervisor, scheduler, defaults
        self.handle = handle
        self.on_wave_done = on_wave_done
        self.paused = False
        self.open_symbols: dict[str, str] = {}  # symbol -> position id (open or opening)
        self.active: dict[str, WaveProgress] = {}
        self.by_signal: dict[str, str] = {}  # signal id -> wave id
        self.opening = 0
        self.queued: deque[tuple[str, SignalIn]] = deque()  # waiting for a concurrency slot

    def on_failure(self, exc_type, exc, tb) -> None:
        self.handle.crashed(exc)

    def on_receive(self, msg):
        match msg:
            case SubmitWave(wave=w):
                self._db(self._on_wave, w)
            case PositionOutcome():
                self._db(self._on_outcome, msg)
            case PositionClosed(symbol=sym, position_id=pid):
                if self.open_symbols.get(sym) == pid:
                    del self.open_symbols[sym]
            case WaveDeadline(wave_id=wid):
                self._on_deadline(wid)
            case SetPaused(paused=p):
                self.paused = p
                logger.warning("coordinator: {} taking new waves", "STOPPED" if p else "resumed")
            case CoordinatorStatus():
                return {"paused": self.paused, "open_symbols": dict(self.open_symbols),
                        "waves_in_progress": {w.id: len(w.pending) for w in self.active.values()},
                        "opening": self.opening}
        return None

    def _db(self, fn, *args) -> None:
        with self.handle.op(fn.__name__.strip("_"), self.cfg.deadlines.operation_s):
            fn(*args)

    # ---- waves ---------------------------------------------------------------------------

    def resume(self, open_symbols: dict[str, str]) -> list[str]:
        """After a restart: know what is held, and finish every wave left incomplete.
        Returns the ids of the waves it is finishing."""
        self.open_symbols = dict(open_symbols)
        pending = self.waves.pending_signals()
        by_wave: dict[str, list] = {w.id: [] for w in self.waves.open_waves()}  # incl. all decided
        for row in pending:
            by_wave.setdefault(row.wave_id, []).append(row)
        for wave_id, rows in by_wave.items():
            wp = self._progress(wave_id, self.cfg.deadlines.wave_s)
            done = self.waves.outcomes(wave_id)  # what it opened before the restart still counts
            wp.opened = done.get(Outcome.PROTECTED.value, 0) + done.get(Outcome.EMERGENCY_CLOSED.value, 0)
            for row in rows:
                if row.position_id and self._settled(row.id, row.position_id):
                    continue
                wp.pending.add(row.id)
                self.by_signal[row.id] = wave_id
                if row.position_id:
                    wp.launched[row.position_id] = row.id
                else:
                    wp.reserves.append(SignalIn(row.id, row.symbol, Side(row.side), row.score, row.rank))
            logger.info("coordinator: resuming wave {} ({} signals without outcome)", wave_id, len(rows))
            self._fill(wp)
            self._check_done(wp)
        return list(by_wave)

    def _settled(self, signal_id: str, position_id: str) -> bool:
        """A position that reported before the crash, but whose outcome was never stored."""
        s = self.positions.load(position_id, self.defaults)
        if not (s.reported or s.phase.final):
            return False
        outcome = {Phase.FAILED: Outcome.FAILED, Phase.EMERGENCY_CLOSED: Outcome.EMERGENCY_CLOSED}.get(
            s.phase, Outcome.PROTECTED if s.reported else Outcome.EMERGENCY_CLOSED)
        self.waves.set_outcome(signal_id, outcome, f"settled on restart from position phase {s.phase.value}",
                               position_id)
        return True

    def _progress(self, wave_id: str, deadline_s: float) -> WaveProgress:
        now = time.monotonic()
        target = min(self.cfg.risk.max_positions_per_wave,
                     max(0, self.cfg.risk.max_open_positions - len(self.open_symbols)))
        wp = WaveProgress(wave_id, now, now + deadline_s, target)
        self.active[wave_id] = wp
        self.scheduler.call_later(deadline_s, lambda: self.actor_ref.tell(WaveDeadline(wave_id)))
        return wp

    def _on_wave(self, wave: Wave) -> None:
        dups = set(self.waves.insert(wave, self.cfg.deadlines.wave_s))
        if wave.id in self.active or (dups and dups == {s.id for s in wave.signals}):
            logger.warning("coordinator: wave {} already received; duplicate ignored", wave.id)
            return
        valid = [s for s in wave.valid if s.id not in dups]
        rejected = [s for s in wave.signals if s.reason and s.id not in dups]
        logger.info("wave {} received: {} signals ({} valid, {} rejected{})", wave.id,
                    len(wave.signals), len(valid), len(rejected),
                    f", {len(dups)} duplicates ignored" if dups else "")
        for s in rejected:
            logger.warning("wave {}: signal {} rejected: {}", wave.id, s.id, s.reason)
        wp = self._progress(wave.id, self.cfg.deadlines.wave_s)
        for s in valid:
            self.by_signal[s.id] = wave.id
            wp.pending.add(s.id)
        if self.paused:
            for s in valid:
                self._decide(wp, s.id, Outcome.SKIPPED, "service paused: not taking new waves")
        else:
            wp.reserves.extend(valid)
            self._fill(wp)
        self._check_done(wp)

    def _fill(self, wp: WaveProgress) -> None:
        """Launch reserves, best first, while the wave, the account and the concurrency
        limit have room; give the rest up only once no launch can ever free a slot."""
        risk = self.cfg.risk
        while wp.reserves and wp.opened + self._opening(wp) < wp.target:
            if len(self.open_symbols) >= risk.max_open_positions:
                break
            if risk.max_concurrent_opens and self._opening_total() >= risk.max_concurrent_opens:
                return  # an outcome will call _fill again
            sig = wp.reserves.popleft()
            if sig.symbol in self.open_symbols:
                self._decide(wp, sig.id, Outcome.SKIPPED, f"{sig.symbol} already has an open position")
                continue
            self._launch(wp, sig)
        if wp.opened >= wp.target:
            reason = f"wave full ({wp.target} positions)"
        elif self._opening(wp) == 0 and len(self.open_symbols) >= risk.max_open_positions:
            reason = f"max_open_positions={risk.max_open_positions} reached"
        else:
            return
        while wp.reserves:
            sig = wp.reserves.popleft()
            self._decide(wp, sig.id, Outcome.SKIPPED, f"not opened: {reason}; rank {sig.rank}")

    def _opening(self, wp: WaveProgress) -> int:
        return sum(1 for sid in wp.launched.values() if sid in wp.pending)

    def _opening_total(self) -> int:
        return sum(self._opening(w) for w in self.active.values())

    def _launch(self, wp: WaveProgress, sig: SignalIn) -> None:
        pid = uuid.uuid4().hex[:12]
        state = PositionState(id=pid, signal_id=sig.id, wave_id=wp.id, symbol=sig.symbol,
                              side=sig.side, params=self.defaults)
        try:
            self.positions.create(state)
        except SymbolBusy:
            self._decide(wp, sig.id, Outcome.SKIPPED, f"{sig.symbol} already has an open position")
            return
        wp.launched[pid] = sig.id
        self.open_symbols[sig.symbol] = pid
        self.supervisor.start_position(state)

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
        if o.outcome is Outcome.PROTECTED or o.outcome is Outcome.EMERGENCY_CLOSED:
            wp.opened += 1
        if o.outcome is Outcome.FAILED and self.open_symbols.get(o.symbol) == o.position_id:
            del self.open_symbols[o.symbol]
        for w in [wp, *(w for w in self.active.values() if w is not wp)]:
            self._fill(w)
            self._check_done(w)

    def _decide(self, wp: WaveProgress, signal_id: str, outcome: Outcome, reason: str) -> None:
        if self.waves.set_outcome(signal_id, outcome, reason):
            logger.info("wave {}: signal {} {}: {}", wp.id, signal_id, outcome.value, reason)
        wp.pending.discard(signal_id)

    def _check_done(self, wp: WaveProgress) -> None:
        if wp.pending or wp.id not in self.active:
            return
        del self.active[wp.id]
        self.waves.complete(wp.id)
        outcomes = dict(self.waves.outcomes(wp.id))
        secs = time.monotonic() - wp.started
        logger.info("wave {} complete in {:.2f}s: {}", wp.id, secs,
                    ", ".join(f"{v} {k}" for k, v in sorted(outcomes.items())))
        self.on_wave_done(WaveSummary(wp.id, outcomes, secs, wp.overdue))

    def _on_deadline(self, wave_id: str) -> None:
        wp = self.active.get(wave_id)
        if wp is not None and wp.pending:
            wp.overdue = True
            logger.warning("wave {} passed its deadline with {} signals pending; late outcomes "
                           "will still be recorded", wave_id, len(wp.pending))
