"""Live prices and order updates of one venue, on the venue's event loop.

Prices come from ccxt.pro `watch_tickers` while the socket is up and from REST polling while
it is down (reconnecting with exponential backoff). Updates of our resting stops come from
`watch_orders` (on Binance that stream carries ALGO_UPDATE, the algo service's stop events)
and, whatever the socket does, from polling: positions every round, and the stops of any
position that shrank, of any stop seen triggered, in turn one symbol per round.

What reaches the owning position, from either source: a fill only with its price and
quantity (a "triggered" or price-less event is never read as one, and never ends the watch);
a stop that ended without filling (cancelled, expired, or triggered with a market order that
filled nothing); "stuck" for a stop triggered but unfilled past `trigger_stuck_s` (it no longer
counts as protecting); "not_found" for a watched stop the venue says it does not know. Each
of the last three makes the position reconcile with the venue and re-protect itself.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Awaitable, Callable, cast

import ccxt.async_support as ccxt
from loguru import logger

from core.position_types import Leg, leg_of
from exchange.ccxt.session import VenueSession
from exchange.ccxt.venues import dec
from exchange.gateway import OrderHandler, OrderState, TickHandler

MAX_BACKOFF_S = 30.0
DEFAULT_TRIGGER_STUCK_S = 10.0


@dataclass
class FeedStats:
    polls: int = 0
    poll_errors: int = 0
    ws_connects: int = 0
    ws_errors: int = 0
    fills: int = 0
    ticks: int = 0
    stuck: int = 0
    handed_over: int = 0  # stops given to their position to reconcile (stuck, not found, unfilled)


def _not_started(*_args: object) -> None:
    """The handlers before `start` (the loops run only after it)."""


class Feed:
    def __init__(self, session: VenueSession, *, poll_interval_s: float, websocket: bool,
                 trigger_stuck_s: float = DEFAULT_TRIGGER_STUCK_S) -> None:
        self.session = session
        self.interval = poll_interval_s
        self.websocket = websocket
        self.stuck_after_s = trigger_stuck_s
        self.stats = FeedStats()
        self.ws_prices_up = False
        self._watched: dict[str, str] = {}  # cid -> symbol of our resting stops (GIL-atomic ops)
        self._triggered: dict[str, float] = {}  # cid -> when first seen triggered (monotonic)
        self._stuck: set[str] = set()  # triggered past the bound: alarmed, not protecting
        self._recheck: set[str] = set()  # a stream said "filled" without a price: read it by REST
        self._held: dict[str, Decimal] = {}  # position sizes seen by the last poll
        self._ws_last: dict[str, Decimal] = {}  # last websocket price delivered per symbol
        self._sweep = 0
        self._on_tick: TickHandler = _not_started
        self._on_order: OrderHandler = _not_started
        self._future: concurrent.futures.Future | None = None

    # ---- called from position threads --------------------------------------------------

    def watch(self, symbol: str, cid: str) -> None:
        self._watched[cid] = symbol

    def unwatch(self, cid: str) -> None:
        self._watched.pop(cid, None)
        self._triggered.pop(cid, None)
        self._stuck.discard(cid)
        self._recheck.discard(cid)

    def is_stuck(self, cid: str) -> bool:
        """Triggered and unfilled past the bound: listed open by the venue, not protecting."""
        return cid in self._stuck

    def watched(self) -> dict[str, str]:
        return dict(self._watched)

    def start(self, on_tick: TickHandler, on_order: OrderHandler) -> None:
        self._on_tick, self._on_order = on_tick, on_order
        if self._future is None:
            self._future = self.session.loop.spawn(self._run())

    def stop(self) -> None:
        if self._future is not None:
            self._future.cancel()

    # ---- on the venue loop -------------------------------------------------------------

    async def _run(self) -> None:
        jobs = [self._poll_loop(), self._stuck_loop()]
        if self.websocket:
            jobs += [self._ws_loop("prices", self._ws_prices_once),
                     self._ws_loop("orders", self._ws_orders_once)]
        await asyncio.gather(*jobs)

    async def _stuck_loop(self) -> None:
        """A triggered stop's bound runs on its own clock, not on the next event or poll."""
        while True:
            await asyncio.sleep(min(self.stuck_after_s / 3, 1.0))
            self._check_stuck()

    async def _poll_loop(self) -> None:
        delay = self.interval
        while True:
            await asyncio.sleep(delay)
            try:
                await self._poll_once()
                delay = self.interval
            except asyncio.CancelledError:
                raise
            except Exception as e:
                self.stats.poll_errors += 1
                delay = min(max(delay * 2, self.interval), MAX_BACKOFF_S)
                logger.warning("{} feed: poll failed ({}: {}); next try in {:.1f}s",
                               self.session.name, type(e).__name__, e, delay)

    async def _poll_once(self) -> None:
        """One REST round, cheap whatever the number of positions: all prices in one call
        (while the price socket is down), all positions in one call, and order lookups only
        for symbols whose position shrank or vanished — plus one symbol per round in turn,
        which catches stops cancelled or expired behind our back."""
        self.stats.polls += 1
        venue, ex = self.session.venue, self.session.ex
        if not self.ws_prices_up:
            prices = await self._bounded(lambda: venue.last_prices(ex, None))
            for sym, price in prices.items():
                if price is not None and sym in self.session.specs:
                    self._tick(sym, price)
        watched = self.watched()
        if not watched:
            return
        held = {p.symbol: abs(p.qty) for p in await self._bounded(lambda: venue.positions(ex))}
        symbols = sorted(set(watched.values()))
        suspects = {s for s in symbols if held.get(s, 0) == 0 or held[s] < self._held.get(s, held[s])}
        self._held = held
        self._sweep = (self._sweep + 1) % len(symbols)
        suspects.add(symbols[self._sweep])
        suspects |= {watched[c] for c in (*self._recheck, *self._triggered) if c in watched}
        by_symbol: dict[str, list[str]] = {}
        for cid, sym in watched.items():
            if sym in suspects:
                by_symbol.setdefault(sym, []).append(cid)
        results = await asyncio.gather(*(self._check(sym, cids) for sym, cids in by_symbol.items()),
                                       return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]

    async def _check(self, symbol: str, cids: list[str]) -> None:
        """Our stops that left the open-order list have ended (or fired): find out how."""
        venue, ex = self.session.venue, self.session.ex
        listed = {venue.state(o).cid: o for o in await self._bounded(lambda: venue.open_orders(ex, symbol))}
        for cid in cids:
            if cid not in self._watched:
                continue
            if cid in listed:
                if venue.triggered(listed[cid]):
                    self._note_triggered(cid)
                continue
            self._recheck.discard(cid)
            try:
                o = await self._bounded(functools.partial(venue.fetch, ex, symbol, cid))
            except ccxt.OrderNotFound:
                # Binance's algo service has answered -2013 for live orders: the stop may still
                # rest, or have filled. Only its position can find out (it reconciles).
                logger.warning("{} feed: watched stop {} of {} is unknown to the venue; its position "
                               "reconciles", self.session.name, cid, symbol)
                self._hand_over(cid, symbol, "not_found")
                continue
            if venue.triggered(o):
                self._note_triggered(cid)
            else:
                self._offer(venue.state(o, cid))

    async def _ws_loop(self, what: str, once: Callable[[], Awaitable[None]]) -> None:
        """Keep one websocket subscription alive: reconnect with exponential backoff."""
        backoff = 1.0
        while True:
            try:
                await once()
                backoff = 1.0
            except asyncio.CancelledError:
                raise
            except Exception as e:
                if what == "prices":
                    self.ws_prices_up = False
                self.stats.ws_errors += 1
                logger.warning("{} feed: websocket {} down ({}: {}); REST polling covers it; "
                               "reconnecting in {:.0f}s", self.session.name, what, type(e).__name__, e, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)

    async def _ws_prices_once(self) -> None:
        symbols = sorted(self.session.specs) if self.session.venue.ccxt_id != "binanceusdm" else None
        tickers = await self.session.ex.watch_tickers(symbols)
        if not self.ws_prices_up:
            self.ws_prices_up = True
            self.stats.ws_connects += 1
        # One topic per symbol (Bybit): ccxt.pro hands back only the update that woke us; the
        # ones that arrived meanwhile are in its ticker cache, delivered here if they moved.
        cached = {s: t for s, t in (getattr(self.session.ex, "tickers", None) or {}).items()
                  if s not in tickers and dec(t.get("last")) != self._ws_last.get(s)}
        for sym, t in {**cached, **tickers}.items():
            price = dec((t.get("info") or {}).get("c")) or dec(t.get("last"))  # Binance's raw close
            if price is not None and sym in self.session.specs:
                self._ws_last[sym] = price
                self._tick(sym, price)

    async def _ws_orders_once(self) -> None:
        venue = self.session.venue
        for o in await self.session.ex.watch_orders():
            state = venue.state(o)
            if state.cid not in self._watched:
                continue
            if venue.triggered(o):
                self._note_triggered(state.cid)
            else:
                self._offer(state)

    # ---- helpers -----------------------------------------------------------------------

    async def _bounded(self, fn: Callable[[], Awaitable[Any]]) -> Any:
        return await self.session.bounded(fn)

    def _tick(self, symbol: str, price) -> None:
        self.stats.ticks += 1
        try:
            self._on_tick(symbol, price)
        except Exception:  # the feed must outlive any one bad handler
            logger.exception("{} feed: tick handler failed", self.session.name)

    def _offer(self, state: OrderState) -> None:
        """One venue answer about a watched stop, from the stream or a lookup."""
        if state.status == "open" or state.cid not in self._watched:  # (the other source was first)
            return
        if state.status == "filled" and (state.avg_price is None or state.filled_qty <= 0):
            self._recheck.add(state.cid)  # never a fill without its price: the next poll reads it
            return
        if state.status == "expired" and state.cid in self._triggered:
            logger.error("{} feed: stop {} of {} fired but its market order filled nothing: the position "
                         "is still held and that stop is gone; its position reconciles and re-protects",
                         self.session.name, state.cid, state.symbol)
        self._deliver(state)

    def _note_triggered(self, cid: str) -> None:
        self._triggered.setdefault(cid, time.monotonic())

    def _check_stuck(self) -> None:
        now = time.monotonic()
        for cid, since in list(self._triggered.items()):
            if cid in self._stuck or now - since < self.stuck_after_s or cid not in self._watched:
                continue
            self._stuck.add(cid)
            self.stats.stuck += 1
            symbol = self._watched[cid]
            logger.error("{} feed: stop {} of {} triggered {:.1f}s ago and its market order has not filled "
                         "(bound exchange.trigger_stuck_s={}s): no longer counted as protecting; its position "
                         "reconciles and re-protects", self.session.name, cid, symbol, now - since, self.stuck_after_s)
            self._tell(OrderState(cid, symbol, cast(Leg, leg_of(cid)), "stuck"))

    def _hand_over(self, cid: str, symbol: str, status: str) -> None:
        self.unwatch(cid)
        self._tell(OrderState(cid, symbol, cast(Leg, leg_of(cid)), status))

    def _tell(self, state: OrderState) -> None:
        if state.status in ("stuck", "not_found", "expired", "cancelled", "rejected"):
            self.stats.handed_over += 1
        try:
            self._on_order(state)
        except Exception:
            logger.exception("{} feed: order handler failed for {}", self.session.name, state.cid)

    def _deliver(self, state: OrderState) -> None:
        self.unwatch(state.cid)
        if state.status == "filled":
            self.stats.fills += 1
        logger.info("{} feed: {} {} {} at {}", self.session.name, state.symbol, state.cid, state.status,
                    state.avg_price)
        self._tell(state)
