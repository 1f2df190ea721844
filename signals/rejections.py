"""Refused messages, counted and sampled: a flood of garbage must cost neither a database row
nor a log line per message, yet the operator must still see how many and why.

The first `burst` refusals of each `window_s` are recorded in full (a `waves` row and an
ERROR line); past that each one is only counted, by reason, and a few recent reasons are
kept; when the window ends one WARNING line says how many went unrecorded and the commonest
reasons. Memory is bounded: at most `kinds` distinct reasons, the rest counted as "other".
"""
from __future__ import annotations

import threading
import time
from collections import Counter, deque
from typing import Callable


def reason_kind(reason: str) -> str:
    """What a reason is about, without the echoed input: `score must be a number` etc."""
    return reason.split(", got ", 1)[0].split(": ", 1)[0][:60]


class Rejections:
    def __init__(self, burst: int = 20, window_s: float = 60.0, kinds: int = 32, samples: int = 10,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.burst, self.window_s, self.kinds = burst, window_s, kinds
        self.clock = clock
        self.total = 0
        self.unrecorded = 0
        self.by_reason: Counter[str] = Counter()
        self.recent: deque[str] = deque(maxlen=samples)
        self._window_start = clock()
        self._in_window = 0
        self._window_unrecorded: Counter[str] = Counter()
        self._lock = threading.Lock()

    def admit(self, reason: str) -> tuple[bool, str | None]:
        """Count one refusal → (record it in full?, a summary line of the window just ended)."""
        with self._lock:
            now = self.clock()
            summary = None
            if now - self._window_start >= self.window_s:
                summary = self._summary()
                self._window_start, self._in_window = now, 0
                self._window_unrecorded.clear()
            self.total += 1
            kind = reason_kind(reason)
            if kind not in self.by_reason and len(self.by_reason) >= self.kinds:
                kind = "other"
            self.by_reason[kind] += 1
            self.recent.append(reason[:200])
            self._in_window += 1
            if self._in_window <= self.burst:
                return True, summary
            self.unrecorded += 1
            self._window_unrecorded[kind] += 1
            return False, summary

    def _summary(self) -> str | None:
        n = sum(self._window_unrecorded.values())
        if not n:
            return None
        top = ", ".join(f"{k} ×{c}" for k, c in self._window_unrecorded.most_common(3))
        return (f"{n} more rejected messages in the last {self.window_s:g}s were counted, not recorded "
                f"one by one (beyond {self.burst} per window); commonest: {top}")

    def as_dict(self) -> dict:
        with self._lock:
            return {"total": self.total, "unrecorded": self.unrecorded,
                    "by_reason": dict(self.by_reason.most_common(10)), "recent": list(self.recent)}
