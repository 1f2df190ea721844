"""One asyncio event-loop thread per venue, and a bounded sync bridge into it.

ccxt's sync clients are not thread-safe (shared session, rate limiter, last-response fields),
so every position thread hands its coroutine to this one loop instead: requests of fifty
positions are in flight together, and only ccxt's throttler (the venue's rate limit) spaces
them. A caller never waits longer than its own timeout, and a timed-out call is cancelled.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from typing import Any, Awaitable, Coroutine, TypeVar

T = TypeVar("T")

# The loop may be busy for a moment (JSON parsing of another reply): allow this much slack
# past the in-loop timeout before the caller gives up on the loop itself.
_GRACE_S = 0.5


class VenueLoop:
    def __init__(self, name: str) -> None:
        self.name = name
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=f"venue-{name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and not self.loop.is_closed()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        """Run `coro` on the venue loop; raise TimeoutError (after cancelling it) past `timeout`."""
        fut = asyncio.run_coroutine_threadsafe(asyncio.wait_for(coro, timeout), self.loop)
        try:
            return fut.result(timeout + _GRACE_S)
        except concurrent.futures.TimeoutError:
            fut.cancel()
            raise TimeoutError(f"no answer within {timeout:.1f}s") from None

    def spawn(self, coro: Awaitable[Any]) -> concurrent.futures.Future:
        """Start a background task (a feed) on the loop."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)  # type: ignore[arg-type]

    def close(self, coro: Coroutine[Any, Any, Any] | None = None, timeout: float = 3.0) -> None:
        """Run a last clean-up coroutine (closing sessions), then stop the loop thread."""
        if not self.alive:
            return
        if coro is not None:
            try:
                self.call(coro, timeout)
            except Exception:  # closing is best effort: the process is going away
                pass
        pending = asyncio.run_coroutine_threadsafe(self._cancel_tasks(), self.loop)
        try:
            pending.result(timeout)
        except Exception:
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self.loop.close()

    @staticmethod
    async def _cancel_tasks() -> None:
        me = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t is not me]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
