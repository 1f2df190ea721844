"""What becomes of waves in flight when the coordinator is escalated (down for good).

Nothing would record outcomes any more: positions still opening would report to a port that
only holds their messages, unlaunched signals would stay pending, and their waves open
forever. So at escalation the service takes the coordinator's place for the waves already
taken, and only for those: it raises the coordinator epoch (every stale coordinator fenced),
skips every signal never launched with the reason, has the supervisor take over any position
row left without an actor, and from then on records each position's outcome as it arrives and
completes a wave once every signal has one. New waves are refused (see `Service.submit`).
"""
from __future__ import annotations

from typing import Any

from loguru import logger

from actors.coordinator import settled_outcome
from actors.messages import PositionOutcome
from core.position_types import Outcome
from persistence import coordinator_epoch
from persistence.waves import WaveStore


class WavesWithoutCoordinator:
    def __init__(self, waves: WaveStore, supervisor, reason: str) -> None:
        self.supervisor, self.reason = supervisor, reason
        self.waves = waves.fenced(coordinator_epoch.take(waves.db))

    def settle(self) -> None:
        """Give every signal not launched its outcome; leave launched ones to their actor."""
        for row in self.waves.pending_signals():
            if row.position_id is None:
                self.waves.set_outcome(row.id, Outcome.SKIPPED, f"not opened: coordinator down: {self.reason}")
            elif row.position_id not in self.supervisor.children:
                s = self.supervisor.store.load(row.position_id, self.supervisor.defaults)
                if s.reported or s.phase.final:  # it reported, its outcome was lost: never again
                    self.waves.set_outcome(row.id, settled_outcome(s), f"settled from position phase "
                                           f"{s.phase.value}: coordinator down: {self.reason}", row.position_id)
                if not s.phase.final:
                    self.supervisor.adopt(row.position_id, s.epoch)  # reconciled, then protected
        self._complete_settled()

    def tell(self, msg: Any) -> None:
        """The port's sink while the coordinator is down; never raises into a position."""
        if not isinstance(msg, PositionOutcome):
            return
        try:
            self.waves.set_outcome(msg.signal_id, msg.outcome, msg.reason, msg.position_id)
            self._complete_settled()
        except Exception as e:
            logger.critical("coordinator down: could not record {} for signal {}: {!r}",
                            msg.outcome.value, msg.signal_id, e)

    def _complete_settled(self) -> None:
        for w in self.waves.open_waves(queued=True):
            if "pending" not in self.waves.outcomes(w.id):
                self.waves.complete(w.id, f"finished without a coordinator: {self.reason}")
