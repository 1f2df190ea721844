"""The coordinator's bounded inbox: waves that arrived while another was still opening.

Policy (README, "Backpressure"): waves wait in arrival order; one wave opens at a time, the
next when the current one has an outcome for every signal or has passed its deadline. When a
wave arrives and the inbox already holds `signals.inbox_size` waves, the *oldest* waiting wave
is dropped: the freshest signals are the ones still worth trading, and a wave that waited
behind a slow one is the least likely to be. A dropped wave's signals are recorded as skipped
with the reason, so every signal still has exactly one outcome.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from signals.wave import SignalIn


@dataclass(frozen=True, slots=True)
class QueuedWave:
    wave_id: str
    ts: float  # the wave's own timestamp: how stale it is when its turn comes
    signals: tuple[SignalIn, ...]  # the valid, new signals, ranked best first


class WaveInbox:
    def __init__(self, size: int) -> None:
        self.size = size
        self._waves: deque[QueuedWave] = deque()

    def offer(self, wave: QueuedWave) -> list[QueuedWave]:
        """Queue a wave; returns the waves pushed out to keep the bound, oldest first (with a
        size of 0 that is the offered wave itself)."""
        self._waves.append(wave)
        dropped = []
        while len(self._waves) > self.size:
            dropped.append(self._waves.popleft())
        return dropped

    def pop(self) -> QueuedWave | None:
        return self._waves.popleft() if self._waves else None

    def __contains__(self, wave_id: object) -> bool:
        return any(w.wave_id == wave_id for w in self._waves)

    def __len__(self) -> int:
        return len(self._waves)

    def ids(self) -> list[str]:
        return [w.wave_id for w in self._waves]
