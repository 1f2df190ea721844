"""The coordinator's outcome handling: every signal ends with exactly one outcome.

An outcome frees its slot (a failed entry also its symbol and exposure), and every wave gets
the chance to fill it from its reserves; a closed position frees its symbol and tells the loss
limits how it ended. A wave whose signals all have an outcome is complete: its summary is
logged and handed on, and the next queued wave may open. A wave past its deadline stops
holding up the inbox, while its late outcomes are still recorded.
"""
from __future__ import annotations

import time

from loguru import logger

from actors.coordinator_base import CoordinatorBase, WaveProgress, WaveSummary, skip_kind
from actors.messages import PositionClosed, PositionOutcome
from core.position_types import Outcome


class WaveOutcomes(CoordinatorBase):
    """Outcomes, closes and deadlines, and the end of a wave."""

    def _on_closed(self, msg: PositionClosed) -> None:
        if self.open_symbols.get(msg.symbol) == msg.position_id:
            del self.open_symbols[msg.symbol]
        self.exposure.pop(msg.position_id, None)
        if self.guard is not None:
            self.guard.note_closed(msg.symbol, msg.reason)

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
