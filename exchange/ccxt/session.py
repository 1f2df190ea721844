"""One venue's ccxt session: the asyncio client on its loop thread and the guarded call.

The gateway's requests and its feed's polls share one client, one rate-limit cool-down, the
venue's per-second budgets and one clock offset, so both go through `guarded` here: neither
reaches into the other. A call is bounded by its timeout, waits out a cool-down after the
venue said "too many" (or is not sent when the wait would outlast it), and resends once a
request refused unread for its timestamp after measuring the clock offset again.
"""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import ccxt.async_support as ccxt
from loguru import logger

from core.types import MarketSpec
from exchange.ccxt.errors import classify
from exchange.ccxt.loop import VenueLoop
from exchange.ccxt.venues import Venue, dec
from exchange.gateway import Fenced, NotSent, current_fence

# How long to hold every request back after the venue answered 429/418 without a Retry-After.
DEFAULT_COOLDOWN_S = 1.0


def market_specs(markets: dict[str, dict]) -> dict[str, MarketSpec]:
    """ccxt markets → MarketSpec with exact Decimal tick, lot, minimum size and notional."""
    out = {}
    for sym, m in markets.items():
        if not (m.get("swap") and m.get("linear")) or m.get("active") is False:
            continue
        tick, lot = dec(m["precision"]["price"]), dec(m["precision"]["amount"])
        if not tick or not lot:
            continue
        limits = m.get("limits") or {}
        min_qty = dec((limits.get("amount") or {}).get("min")) or lot
        min_notional = dec((limits.get("cost") or {}).get("min")) or Decimal(0)
        out[sym] = MarketSpec(sym, tick, lot, min_qty, min_notional)
    return out


class VenueSession:
    """Built on the loop thread (ccxt binds its HTTP session to the loop it was made on)."""

    def __init__(self, venue: Venue, make_exchange: Callable[[], ccxt.Exchange], *,
                 call_timeout_s: float) -> None:
        self.venue = venue
        self.name = venue.ccxt_id
        self.call_timeout_s = call_timeout_s
        self.loop = VenueLoop(self.name)
        self.cooldown_until = 0.0  # loop time before which nothing is sent (after a 429)
        self.calls = 0
        self.specs: dict[str, MarketSpec] = {}
        try:
            self.ex: ccxt.Exchange = self.loop.call(self._make(make_exchange), call_timeout_s)
            self.specs = self.call(self._load_markets, call_timeout_s, write=False)
        except BaseException:
            self.close()
            raise

    async def _make(self, factory: Callable[[], ccxt.Exchange]) -> ccxt.Exchange:
        return factory()

    async def _load_markets(self) -> dict[str, MarketSpec]:
        await self.ex.load_markets()
        return market_specs(self.ex.markets)

    # ---- calls -------------------------------------------------------------------------

    def call(self, fn: Callable[[], Awaitable[Any]], timeout: float, *, write: bool,
             pace: str | None = None) -> Any:
        """From a position thread: run `fn` on the loop within `timeout`, every failure
        classified (retry / unknown outcome / rejected); a write carries its thread's fence."""
        fence = current_fence() if write else None
        try:
            return self.loop.call(self.guarded(fn, timeout, fence, pace), timeout)
        except Fenced:
            raise
        except Exception as e:
            raise classify(e, write=write) from e

    async def bounded(self, fn: Callable[[], Awaitable[Any]]) -> Any:
        """On the loop (the feed): one guarded read within the session's call timeout."""
        return await asyncio.wait_for(self.guarded(fn, self.call_timeout_s), self.call_timeout_s)

    async def guarded(self, fn: Callable[[], Awaitable[Any]], timeout: float,
                      fence: Callable[[], None] | None = None, pace: str | None = None) -> Any:
        """Honour a rate-limit cool-down and the venue's per-second budget for `pace` (a kind
        of order write) before sending; start a cool-down when the venue says "too many".
        A write checks its actor's epoch after any wait, right before it leaves."""
        loop = self.loop.loop
        deadline = loop.time() + timeout
        wait = self.cooldown_until - loop.time()
        if wait > 0:
            if wait >= timeout:
                raise NotSent(f"{self.name}: rate limited for {wait:.1f}s more; request not sent")
            await asyncio.sleep(wait)
        budget = self.venue.pacer(pace) if pace else None
        if budget is not None:
            await budget.acquire(deadline)
        if fence is not None:
            fence()
        self.calls += 1
        try:
            try:
                return await fn()
            except ccxt.InvalidNonce as e:
                # Refused unread for its timestamp: measure the clock offset again and send it
                # once more (safe even for a write: the venue did nothing with it).
                await self.sync_clock(e)
                if fence is not None:
                    fence()
                self.calls += 1
                return await fn()
        except (ccxt.DDoSProtection, ccxt.RateLimitExceeded) as e:  # siblings in ccxt 4.5
            retry_after = self.venue.cooldown_s(e, self._headers()) or self._retry_after()
            self.cooldown_until = max(self.cooldown_until, loop.time() + retry_after)
            logger.warning("{}: rate limited by the venue; holding requests for {:.1f}s", self.name, retry_after)
            raise

    # ---- clock and rate-limit state ----------------------------------------------------

    async def sync_clock(self, why: BaseException | None = None) -> None:
        before = self.clock_offset_ms
        await self.ex.load_time_difference()
        logger.warning("{}: clock offset to the venue {} ms (was {}){}", self.name, self.clock_offset_ms, before,
                       f" after: {why}" if why else "")

    @property
    def clock_offset_ms(self) -> int | None:
        """Local clock minus the venue's, as ccxt measured it (signed requests are stamped with
        local time minus this); None until measured."""
        ex = getattr(self, "ex", None)
        value = ex.options.get("timeDifference") if ex is not None else None
        return int(value) if isinstance(value, (int, float)) else None

    def _headers(self) -> dict[str, str]:
        return getattr(self.ex, "last_response_headers", None) or {}

    def _retry_after(self) -> float:
        headers = self._headers()
        raw = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
        try:
            return max(float(raw), 0.1) if raw is not None else DEFAULT_COOLDOWN_S
        except ValueError:
            return DEFAULT_COOLDOWN_S

    # ---- end ---------------------------------------------------------------------------

    def close(self) -> None:
        self.loop.close(self._close_exchange() if hasattr(self, "ex") else None)

    async def _close_exchange(self) -> None:
        await self.ex.close()
