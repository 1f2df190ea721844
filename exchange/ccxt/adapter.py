"""A real venue behind the Gateway interface: one ccxt asyncio client on its own loop thread.

Position threads call the sync methods; each call becomes a coroutine on the venue loop, so
the requests of a whole wave are in flight together and only ccxt's throttler (the venue's
rate limit) spaces them. Every call is bounded by the caller's timeout and every failure is
classified (retry / unknown outcome / rejected) before it leaves this module.
"""
from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from dataclasses import replace
from decimal import Decimal
from typing import Any, Awaitable, Callable

import ccxt.async_support as ccxt
from loguru import logger

from core.client_ids import is_ours
from core.position_types import Leg, attached_cid
from core.types import MarketSpec
from exchange.ccxt.account import AccountRefused, AccountSetup
from exchange.ccxt.errors import classify
from exchange.ccxt.feed import DEFAULT_TRIGGER_STUCK_S, Feed
from exchange.ccxt.loop import VenueLoop
from exchange.ccxt.venues import Venue, dec
from exchange.paper.window import PROTECTION_GAPS_PATH
from exchange.gateway import (
    Acknowledged, Balance, Fenced, NotSent, OrderHandler, OrderNotFound, OrderRequest, OrderState, Rejected,
    Retryable, TickHandler, VenueError, VenuePosition, current_fence,
)

# How long to hold every request back after the venue answered 429/418 without a Retry-After.
DEFAULT_COOLDOWN_S = 1.0
# First pause between read-backs of an acknowledged market order (doubling, within the call's timeout).
READ_BACK_FIRST_S = 0.05


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
                 call_timeout_s: float, poll_interval_s: float = 1.0, websocket: bool = False,
                 trigger_stuck_s: float = DEFAULT_TRIGGER_STUCK_S, account: AccountSetup | None = None,
                 rehearsal_url: str | None = None) -> None:
        self.venue = venue
        self.rehearsal_url = rehearsal_url  # a local fake venue's base URL: it records the window
        self.account = account
        self.name = venue.ccxt_id
        self.supports_native_trailing = venue.supports_native_trailing
        self.entry_modes = venue.entry_modes
        self.loop = VenueLoop(self.name)
        self._cooldown_until = 0.0  # loop time before which nothing is sent (after a 429)
        self.calls = 0
        self.call_timeout_s = call_timeout_s
        try:
            self.ex = self.loop.call(self._make(make_exchange), call_timeout_s)
            self.specs = self._call(self._load_markets, call_timeout_s, write=False)
            if account is not None:  # refuses to start on an account we cannot trade safely
                self._call(lambda: account.at_start(self.ex), call_timeout_s, write=False)
        except BaseException:
            self.loop.close(self._close_exchange() if hasattr(self, "ex") else None)
            raise
        logger.info("{}: {} markets; clock offset to the venue {} ms (measured at load, signed requests "
                    "carry it)", self.name, len(self.specs), self.clock_offset_ms)
        self.feed = Feed(self, poll_interval_s=poll_interval_s, websocket=websocket,
                         trigger_stuck_s=trigger_stuck_s)

    async def _make(self, factory):
        return factory()  # built on the loop thread: ccxt binds its session to this loop

    async def _load_markets(self) -> dict[str, MarketSpec]:
        await self.ex.load_markets()
        return market_specs(self.ex.markets)

    # ---- the call bridge ---------------------------------------------------------------

    def _call(self, fn: Callable[[], Awaitable[Any]], timeout: float, *, write: bool,
              pace: str | None = None) -> Any:
        fence = current_fence() if write else None
        try:
            return self.loop.call(self._guarded(fn, timeout, fence, pace), timeout)
        except Fenced:
            raise
        except Exception as e:
            raise classify(e, write=write) from e

    async def _guarded(self, fn: Callable[[], Awaitable[Any]], timeout: float,
                       fence: Callable[[], None] | None = None, pace: str | None = None) -> Any:
        """Honour a rate-limit cool-down and the venue's per-second budget for `pace` (a kind
        of order write) before sending; start a cool-down when the venue says "too many".
        A write checks its actor's epoch after any wait, right before it leaves."""
        loop = self.loop.loop
        deadline = loop.time() + timeout
        wait = self._cooldown_until - loop.time()
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
                await self._sync_clock(e)
                if fence is not None:
                    fence()
                self.calls += 1
                return await fn()
        except (ccxt.DDoSProtection, ccxt.RateLimitExceeded) as e:  # siblings in ccxt 4.5
            retry_after = self.venue.cooldown_s(e, self._headers()) or self._retry_after()
            self._cooldown_until = max(self._cooldown_until, loop.time() + retry_after)
            logger.warning("{}: rate limited by the venue; holding requests for {:.1f}s", self.name, retry_after)
            raise

    async def _sync_clock(self, why: BaseException | None = None) -> None:
        before = self.clock_offset_ms
        await self.ex.load_time_difference()
        logger.warning("{}: clock offset to the venue {} ms (was {}){}", self.name, self.clock_offset_ms, before,
                       f" after: {why}" if why else "")

    @property
    def clock_offset_ms(self) -> int | None:
        """Local clock minus the venue's, as ccxt measured it (signed requests are stamped with
        local time minus this); None until measured."""
        value = (getattr(self, "ex", None) and self.ex.options.get("timeDifference"))
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
        deadline = time.monotonic() + timeout
        if req.leg is Leg.ENTRY and self.account is not None:
            self._set_up(req.symbol, timeout)
            timeout = max(deadline - time.monotonic(), 0.1)
        o = self._call(lambda: self.ex.create_order(req.symbol, order_type, req.side, str(req.qty),
                                                    None, params), timeout, write=True, pace="create")
        state = self.venue.state(o, req.cid, req.leg)
        if state.stop_price is None and req.stop_price is not None and state.status == "open":
            # An answer of ids alone (Bybit's order/create): the stop rests where it was sent.
            state = replace(state, stop_price=req.stop_price)
        if req.leg in (Leg.ENTRY, Leg.EXIT) and state.status != "filled":
            state = self._read_back(req, deadline)
        if state.leg in (Leg.STOP, Leg.TRAILING) and state.status == "open":
            self.feed.watch(req.symbol, req.cid)
        if req.attached_stop is not None and state.status == "filled":  # the venue made it at the fill
            self.feed.watch(req.symbol, attached_cid(req.cid))
        return state

    def _set_up(self, symbol: str, timeout: float) -> None:
        """Margin mode and leverage of `symbol` set and read back before its first entry.

        Only the venue's refusal refuses the entry; a set-up call that could not be made (clock
        outside the venue's window even after a resync, network, rate budget) leaves the entry
        unsent and keeps its class, so the caller tries again instead of failing the position."""
        try:
            self._call(lambda: self.account.ensure(self.ex, symbol), timeout, write=False)
        except AccountRefused:
            raise
        except Retryable as e:
            again = type(e)(f"{self.name}: account set-up of {symbol} not done, entry not sent: {e}")
            again.code = getattr(e, "code", None)  # type: ignore[attr-defined]
            raise again from e
        except VenueError as e:
            raise Rejected(f"{self.name}: account set-up of {symbol} failed, entry not sent: {e}") from e

    def _read_back(self, req: OrderRequest, deadline: float) -> OrderState:
        """Some venues only acknowledge a market order (Bybit: creation is asynchronous, its
        history may lag): read it back by client id, with backoff, until it is final or the
        call's time is up; then it is `Acknowledged` — placed, fill not yet known."""
        pause, why = READ_BACK_FIRST_S, "still working"
        while True:
            left = deadline - time.monotonic()
            if left <= 0.05:
                raise Acknowledged(f"{self.name}: order {req.cid} acknowledged, fill not read back: {why}")
            try:
                state = self.fetch_order(req.symbol, req.cid, left)
                if state.status != "open":
                    return state
                why = "still working"
            except (Retryable, OrderNotFound) as e:
                why = str(e)
            except VenueError as e:  # the order was accepted: a failed read never refuses it
                raise Acknowledged(f"{self.name}: order {req.cid} acknowledged, read-back failed: {e}") from e
            time.sleep(max(min(pause, deadline - time.monotonic() - 0.05), 0))
            pause *= 2

    def cancel_order(self, symbol: str, cid: str, timeout: float) -> OrderState:
        self._known(symbol)
        o = self._call(lambda: self.venue.cancel(self.ex, symbol, cid), timeout, write=True, pace="cancel")
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
            if s.leg in (Leg.STOP, Leg.TRAILING) and is_ours(s.cid):
                self.feed.watch(s.symbol, s.cid)
        # A stop stuck between trigger and fill is listed open but protects nothing.
        return [s for s in states if not self.feed.is_stuck(s.cid)]

    def positions(self, timeout: float) -> list[VenuePosition]:
        return self._call(lambda: self.venue.positions(self.ex), timeout, write=False)

    def balance(self, timeout: float) -> Balance:
        return self._call(lambda: self.venue.balance(self.ex), timeout, write=False)

    def protection_gaps(self) -> list[float] | None:
        """The protection window as the venue recorded it — only a local fake venue keeps such a
        record; a real one cannot say (None), and neither can a fake that does not answer."""
        if self.rehearsal_url is None:
            return None
        try:
            with urllib.request.urlopen(self.rehearsal_url.rstrip("/") + PROTECTION_GAPS_PATH,
                                        timeout=self.call_timeout_s) as r:
                return [float(g) for g in json.load(r)["gaps"]]
        except (OSError, ValueError, KeyError, TypeError) as e:
            logger.warning("{}: the local venue's protection window is unreadable: {}", self.name, e)
            return None

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
    return replace(s, status=status)

