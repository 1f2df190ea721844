"""A real venue behind the Gateway interface: one ccxt asyncio client on its own loop thread.

Position threads call the sync methods; each call becomes a coroutine on the venue loop, so
the requests of a whole wave are in flight together and only ccxt's throttler (the venue's
rate limit) spaces them. Every call is bounded by the caller's timeout and every failure is
classified (retry / unknown outcome / rejected) before it leaves this module.
"""
from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from typing import Any, Awaitable, Callable

import ccxt.async_support as ccxt
from loguru import logger

from core.position_types import Leg
from core.types import MarketSpec
from exchange.ccxt.errors import classify
from exchange.ccxt.feed import Feed
from exchange.ccxt.loop import VenueLoop
from exchange.ccxt.venues import Venue, dec
from exchange.gateway import (
    Balance, Fenced, OrderHandler, OrderNotFound, OrderRequest, OrderState, Rejected, Retryable,
    TickHandler, UnknownOutcome, VenuePosition, current_fence,
)

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


class CcxtGateway:
    def __init__(self, venue: Venue, make_exchange: Callable[[], ccxt.Exchange], *,
                 call_timeout_s: float, poll_interval_s: float = 1.0, websocket: bool = False) -> None:
        self.venue = venue
        self.name = venue.ccxt_id
        self.supports_native_trailing = venue.supports_native_trailing
        self.loop = VenueLoop(self.name)
        self._cooldown_until = 0.0  # loop time before which nothing is sent (after a 429)
        self.calls = 0
        self.call_timeout_s = call_timeout_s
        try:
            self.ex = self.loop.call(self._make(make_exchange), call_timeout_s)
            self.specs = self._call(self._load_markets, call_timeout_s, write=False)
        except BaseException:
            self.loop.close(self._close_exchange() if hasattr(self, "ex") else None)
            raise
        self.feed = Feed(self, poll_interval_s=poll_interval_s, websocket=websocket)

    async def _make(self, factory):
        return factory()  # built on the loop thread: ccxt binds its session to this loop

    async def _load_markets(self) -> dict[str, MarketSpec]:
        await self.ex.load_markets()
        return market_specs(self.ex.markets)

    # ---- the call bridge ---------------------------------------------------------------

    def _call(self, fn: Callable[[], Awaitable[Any]], timeout: float, *, write: bool) -> Any:
        fence = current_fence() if write else None
        try:
            return self.loop.call(self._guarded(fn, timeout, fence), timeout)
        except Fenced:
            raise
        except Exception as e:
            raise classify(e, write=write) from e

    async def _guarded(self, fn: Callable[[], Awaitable[Any]], timeout: float,
                       fence: Callable[[], None] | None = None) -> Any:
        """Honour a rate-limit cool-down before sending; start one when the venue says 429.
        A write checks its actor's epoch after any wait, right before it leaves."""
        loop = self.loop.loop
        wait = self._cooldown_until - loop.time()
        if wait > 0:
            if wait >= timeout:
                raise Retryable(f"{self.name}: rate limited for {wait:.1f}s more; request not sent")
            await asyncio.sleep(wait)
        if fence is not None:
            fence()
        self.calls += 1
        try:
            return await fn()
        except ccxt.DDoSProtection:
            retry_after = self._retry_after()
            self._cooldown_until = max(self._cooldown_until, loop.time() + retry_after)
            logger.warning("{}: rate limited by the venue; holding requests for {:.1f}s", self.name, retry_after)
            raise

    def _retry_after(self) -> float:
        headers = getattr(self.ex, "last_response_headers", None) or {}
        raw = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
        try:
            return max(float(raw), 0.1) if raw is not None else DEFAULT_COOLDOWN_S
        except ValueError:
            return DEFAULT_COOLDOWN_S

    # ---- gateway interface -------------------------------------------------------------

    def markets(self) -> dict[str, MarketSpec]:
        return dict(self.specs)

    def price(self, symbol: str, timeout: float) -> Decimal:
        self._known(symbol)
        prices = self._call(lambda: self.venue.last_prices(self.ex, [symbol]), timeout, write=False)
        if prices.get(symbol) is None:
            raise Retryable(f"{self.name}: no price for {symbol}")
        return prices[symbol]

    def place_order(self, req: OrderRequest, timeout: float) -> OrderState:
        self._known(req.symbol)
        order_type, params = self.venue.order_args(req)  # raises Rejected: nothing is sent
        t0 = time.monotonic()
        o = self._call(lambda: self.ex.create_order(req.symbol, order_type, req.side, str(req.qty),
                                                    None, params), timeout, write=True)
        state = self.venue.state(o, req.cid, req.leg)
        if req.leg in (Leg.ENTRY, Leg.EXIT) and state.status != "filled":
            # Some venues only acknowledge a market order; its fill is read back by client id.
            left = max(timeout - (time.monotonic() - t0), 0.1)
            try:
                state = self.fetch_order(req.symbol, req.cid, left)
            except (Retryable, OrderNotFound) as e:
                raise UnknownOutcome(f"{self.name}: order {req.cid} acknowledged, fill not read back: {e}") from e
        if state.leg in (Leg.STOP, Leg.TRAILING) and state.status == "open":
            self.feed.watch(req.symbol, req.cid)
        return state

    def cancel_order(self, symbol: str, cid: str, timeout: float) -> OrderState:
        self._known(symbol)
        o = self._call(lambda: self.venue.cancel(self.ex, symbol, cid), timeout, write=True)
        self.feed.unwatch(cid)
        state = self.venue.state(o, cid)
        return state if state.status != "open" else _with_status(state, "cancelled")

    def fetch_order(self, symbol: str, cid: str, timeout: float) -> OrderState:
        self._known(symbol)
        o = self._call(lambda: self.venue.fetch(self.ex, symbol, cid), timeout, write=False)
        state = self.venue.state(o, cid)
        if state.status == "open" and state.leg in (Leg.STOP, Leg.TRAILING):
            self.feed.watch(symbol, cid)
        elif state.status != "open":
            self.feed.unwatch(cid)
        return state

    def open_orders(self, symbol: str | None, timeout: float) -> list[OrderState]:
        if symbol is not None:
            self._known(symbol)
        rows = self._call(lambda: self.venue.open_orders(self.ex, symbol), timeout, write=False)
        states = [self.venue.state(o) for o in rows]
        for s in states:  # after a restart these are the stops the feed must keep an eye on
            if s.leg in (Leg.STOP, Leg.TRAILING) and s.cid.startswith("wt-"):
                self.feed.watch(s.symbol, s.cid)
        return states

    def positions(self, timeout: float) -> list[VenuePosition]:
        return self._call(lambda: self.venue.positions(self.ex), timeout, write=False)

    def balance(self, timeout: float) -> Balance:
        return self._call(lambda: self.venue.balance(self.ex), timeout, write=False)

    def subscribe(self, on_tick: TickHandler, on_order: OrderHandler) -> None:
        self.feed.start(on_tick, on_order)

    def close(self) -> None:
        self.feed.stop()
        self.loop.close(self._close_exchange())

    async def _close_exchange(self) -> None:
        await self.ex.close()

    # ---- helpers -----------------------------------------------------------------------

    def _known(self, symbol: str) -> None:
        if symbol not in self.specs:
            raise Rejected(f"{self.name}: unknown or untradable symbol {symbol}")


def _with_status(s: OrderState, status: str) -> OrderState:
    return OrderState(s.cid, s.symbol, s.leg, status, s.filled_qty, s.avg_price, s.stop_price, s.fee)

