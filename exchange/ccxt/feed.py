"""Live prices and order updates of one venue, on the venue's event loop.

Prices come from ccxt.pro `watch_tickers` while the socket is up and from REST polling while
it is down (reconnecting with exponential backoff). Fills of our resting stops are found by
polling the stops we know of on every venue — Binance's stops live in its algo service, whose
updates ccxt.pro does not stream — and `watch_orders` adds faster notice where it can. Either
way a fill reaches the owning position as `OrderState(status="filled", avg_price=…)`.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Awaitable, Callable

import ccxt.async_support as ccxt
from loguru import logger

from exchange.ccxt.venues import dec
from exchange.gateway import OrderHandler, OrderState, TickHandler

if TYPE_CHECKING:
    from exchange.ccxt.adapter import CcxtGateway

MAX_BACKOFF_S = 30.0


@dataclass
class FeedStats:
    polls: int = 0
    poll_errors: int = 0
    ws_connects: int = 0
    ws_errors: int = 0
    fills: int = 0
    ticks: int = 0


class Feed:
    def __init__(self, gw: CcxtGateway, *, poll_interval_s: float, websocket: bool) -> None:
        self.gw = gw
        self.interval = poll_interval_s
        self.websocket = websocket
        self.stats = FeedStats()
        self.ws_prices_up = False
        self._watched: dict[str, str] = {}  # cid -> symbol of our resting stops (GIL-atomic ops)
        self._held: dict[str, Decimal] = {}  # position sizes seen by the last poll
        self._ws_last: dict[str, Decimal] = {}  # last websocket price delivered per symbol
        self._sweep = 0
        self._on_tick: TickHandler | None = None
        self._on_order: OrderHandler | None = None
        self._future: concurrent.futures.Future | None = None

    # ---- called from position threads --------------------------------------------------

    def watch(self, symbol: str, cid: str) -> None:
        self._watched[cid] = symbol

    def unwatch(self, cid: str) -> None:
        self._watched.pop(cid, None)

    def watched(self) -> dict[str, str]:
        return dict(self._watched)

    def start(self, on_tick: TickHandler, on_order: OrderHandler) -> None:
        self._on_tick, self._on_order = on_tick, on_order
        if self._future is None:
            self._future = self.gw.loop.spawn(self._run())

    def stop(self) -> None:
        if self._future is not None:
            self._future.cancel()

    # ---- on the venue loop -------------------------------------------------------------

    async def _run(self) -> None:
        jobs = [self._poll_loop()]
        if self.websocket:
            jobs += [self._ws_loop("prices", self._ws_prices_once),
                     self._ws_loop("orders", self._ws_orders_once)]
        await asyncio.gather(*jobs)

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
                               self.gw.name, type(e).__name__, e, delay)

    async def _poll_once(self) -> None:
        """One REST round, cheap whatever the number of positions: all prices in one call
        (while the price socket is down), all positions in one call, and order lookups only
        for symbols whose position shrank or vanished — plus one symbol per round in turn,
        which catches stops cancelled or expired behind our back."""
        self.stats.polls += 1
        venue, ex = self.gw.venue, self.gw.ex
        if not self.ws_prices_up:
            prices = await self._bounded(lambda: venue.last_prices(ex, None))
            for sym, price in prices.items():
                if price is not None and sym in self.gw.specs:
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
        """Our stops that left the open-order list have filled (or were cancelled): say so."""
        venue, ex = self.gw.venue, self.gw.ex
        open_now = {o.get("clientOrderId") for o in await self._bounded(lambda: venue.open_orders(ex, symbol))}
        for cid in cids:
            if cid in open_now or cid not in self._watched:
                continue
            try:
                state = venue.state(await self._bounded(lambda c=cid: venue.fetch(ex, symbol, c)), cid)
            except ccxt.OrderNotFound:
                logger.warning("{} feed: watched order {} is unknown to the venue; no longer watched",
                               self.gw.name, cid)
                self.unwatch(cid)
                continue
            if state.status != "open":
                self._deliver(state)

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
                               "reconnecting in {:.0f}s", self.gw.name, what, type(e).__name__, e, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)

    async def _ws_prices_once(self) -> None:
        symbols = sorted(self.gw.specs) if self.gw.venue.ccxt_id != "binanceusdm" else None
        tickers = await self.gw.ex.watch_tickers(symbols)
        if not self.ws_prices_up:
            self.ws_prices_up = True
            self.stats.ws_connects += 1
        # One topic per symbol (Bybit): ccxt.pro hands back only the update that woke us; the
        # ones that arrived meanwhile are in its ticker cache, delivered here if they moved.
        cached = {s: t for s, t in (getattr(self.gw.ex, "tickers", None) or {}).items()
                  if s not in tickers and dec(t.get("last")) != self._ws_last.get(s)}
        for sym, t in {**cached, **tickers}.items():
            price = dec(t.get("last"))
            if price is not None and sym in self.gw.specs:
                self._ws_last[sym] = price
                self._tick(sym, price)

    async def _ws_orders_once(self) -> None:
        for o in await self.gw.ex.watch_orders():
            state = self.gw.venue.state(o)
            if state.cid in self._watched and state.status != "open":
                self._deliver(state)

    # ---- helpers -----------------------------------------------------------------------

    async def _bounded(self, fn: Callable[[], Awaitable[Any]]) -> Any:
        return await asyncio.wait_for(self.gw._guarded(fn, self.gw.call_timeout_s), self.gw.call_timeout_s)

    def _tick(self, symbol: str, price) -> None:
        self.stats.ticks += 1
        try:
            self._on_tick(symbol, price)
        except Exception:  # the feed must outlive any one bad handler
            logger.exception("{} feed: tick handler failed", self.gw.name)

    def _deliver(self, state: OrderState) -> None:
        self.unwatch(state.cid)
        if state.status == "filled":
            self.stats.fills += 1
        logger.info("{} feed: {} {} {} at {}", self.gw.name, state.symbol, state.cid, state.status,
                    state.avg_price)
        try:
            self._on_order(state)
        except Exception:
            logger.exception("{} feed: order handler failed for {}", self.gw.name, state.cid)
