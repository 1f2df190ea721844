"""What became of a message handed to the service: the answer a source acts on and counts."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Status = Literal["opening", "queued", "complete", "duplicate", "rejected", "not_taken"]
# opening   admitted: its positions are being opened now
# queued    persisted; waits in the bounded inbox behind a wave that is still opening
# complete  persisted and already final (nothing to open: every signal rejected or skipped)
# duplicate every signal id was already received (a redelivery); nothing new recorded
# rejected  not a usable wave; recorded with its reason
# not_taken not recorded: the service is shutting down or the coordinator did not answer
ACCEPTED: frozenset[str] = frozenset({"opening", "queued", "complete"})


@dataclass(frozen=True, slots=True)
class IntakeResult:
    status: Status
    wave_id: str | None = None
    reason: str | None = None

    def __bool__(self) -> bool:
        """True when the wave was taken: it will get (or has) a final outcome per signal."""
        return self.status in ACCEPTED
