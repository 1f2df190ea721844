"""The coordinator's intake: a wave comes in, waits its turn in the inbox, and is launched.

A wave is persisted before anything else; it opens at once if no other wave is opening,
else it is queued (`actors/inbox.py` states the bound and what is dropped). Opening a wave
carries out the wave plan (`core/wave_plan.py`: ranking, slots, replacements): each chosen
signal is sized and its position row created, then all their actors are started at once.
"""
from __future__ import annotations

import time
import uuid
from collections import deque
from dataclasses import replace
from decimal import Decimal

import pykka
from loguru import logger

from actors.coordinator_base import CoordinatorBase, WaveProgress
from actors.inbox import QueuedWave
from actors.messages import WaveDeadline
from core.position_types import Outcome, PositionState
from core.sizing import Sizing, notional
from core.wave_plan import Room, plan
from persistence.positions import SymbolBusy
from signals.wave import SignalIn, Wave


class WaveIntake(CoordinatorBase):
    """Waves in, through the inbox, to launched positions."""

    _admitting: bool  # _admit_next is running further up the call stack

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
        assert sig.side is not None, "only valid signals are planned, and a valid signal has its side"
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
