"""A per-second request budget for one kind of venue call, on the venue's event loop.

ccxt's own throttle accounts weight over a long rolling window, which allows bursts far above
a per-second limit such as Bybit's 10 order creations per second per account. This limiter
holds a request until it fits in the last `window_s`, and refuses (nothing is sent) when it
could not fit before the caller's deadline.
"""
from __future__ import annotations

import asyncio
from collections import deque

from exchange.gateway import NotSent


# Slack for the trip to the venue: requests sent 1.0 s apart can arrive closer together.
JITTER_S = 0.1


class PerSecond:
    """At most `limit` requests in any `window_s` (a sliding window). Single event loop only:
    the check and the booking happen between two awaits, so no lock is needed."""

    def __init__(self, limit: int, window_s: float = 1.0, *, name: str = "") -> None:
        self.limit, self.window_s, self.name = limit, window_s + JITTER_S, name
        self._sent: deque[float] = deque()
        self.waited = 0  # requests that had to wait for room

    async def acquire(self, deadline: float) -> None:
        """Book one request; wait for room (loop time) and raise NotSent if the room would
        only come after `deadline`."""
        loop = asyncio.get_running_loop()
        waited = False
        while True:
            now = loop.time()
            while self._sent and now - self._sent[0] >= self.window_s:
                self._sent.popleft()
            if len(self._sent) < self.limit:
                self._sent.append(now)
                self.waited += waited
                return
            ready = self._sent[0] + self.window_s
            if ready >= deadline:
                raise NotSent(f"{self.name}: {self.limit} per {self.window_s - JITTER_S:g}s budget full until "
                                f"after the call's deadline; request not sent")
            waited = True
            await asyncio.sleep(ready - now)
