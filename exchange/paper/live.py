"""`paper.prices = "live:binanceusdm" | "live:bybit"`: the paper venue on a real market.

A keyless ccxt.pro client on its own event-loop thread keeps the latest public price of every
paper symbol the venue lists: `watch_tickers` over the public websocket while it is up, REST
polling (`exchange.poll_interval_ms`) while it is down or off, reconnecting with backoff. The
paper gateway's feed thread applies the latest prices to the matching engine on each tick
interval, so entries, stop-losses and trailing stops meet real market moves, while every
order stays on paper. `exchange.api_url` / `ws_url` point the client at another host (the
local fake venue in tests); no key is ever read or sent.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
from decimal import Decimal
from typing import Any

from loguru import logger

from exchange.ccxt.loop import VenueLoop
from exchange.ccxt.venues import VENUES, dec
from exchange.paper.engine import PaperEngine

MAX_BACKOFF_S = 30.0


class LivePrices:
    def __init__(self, venue: str, symbols: list[str], *, api_url: str | None = None,
                 ws_url: str | None = None, poll_interval_s: float = 1.0, timeout_s: float = 10.0) -> None:
        import ccxt.pro as ccxtpro

        self.venue = VENUES[venue]()
        self.ex = getattr(ccxtpro, self.venue.ccxt_id)({"enableRateLimit": True, "timeout": int(timeout_s * 1000)})
        self.venue.configure(self.ex, api_url=api_url, ws_url=ws_url, demo=False, sandbox=False)
        self.wanted = set(symbols)
        self.websocket = api_url is None or ws_url is not None
        self.interval, self.timeout_s = poll_interval_s, timeout_s
        self.loop = VenueLoop(f"{venue}-public")
        self.latest: dict[str, Decimal] = {}
        self.ws_up = False
        self.errors = 0
        self._task: concurrent.futures.Future[Any] | None = None

    def start(self) -> "LivePrices":
        """Load the venue's markets and a first set of prices (bounded), then keep them fresh."""
        try:
            self.loop.call(self._first(), self.timeout_s * 2)
        except Exception as e:  # trading on paper goes on; prices catch up when the venue answers
            self.errors += 1
            logger.warning("paper on live prices: first prices from {} failed ({}: {}); retrying in the "
                           "background", self.venue.ccxt_id, type(e).__name__, e)
        self._task = self.loop.spawn(self._run())
        return self

    def advance(self, engine: PaperEngine, dt: float) -> dict[str, Decimal]:
        """Apply the prices that changed since the last call; the feed thread calls this."""
        moved = {}
        for sym, price in list(self.latest.items()):
            if sym in engine.markets and engine.price(sym) != price:
                engine.set_price(sym, price)
                moved[sym] = price
        return moved

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self.loop.close(self.ex.close())

    # ---- on the loop ---------------------------------------------------------------------

    async def _first(self) -> None:
        await self.ex.load_markets()
        self.wanted &= set(self.ex.markets)
        await self._poll()

    async def _poll(self) -> None:
        prices = await self.venue.last_prices(self.ex, None)
        self._take({s: p for s, p in prices.items() if p is not None})

    def _take(self, prices: dict[str, Decimal | None]) -> None:
        for sym, price in prices.items():
            if sym in self.wanted and price is not None and price > 0:
                self.latest[sym] = price

    async def _run(self) -> None:
        jobs = [self._poll_loop()] + ([self._ws_loop()] if self.websocket else [])
        await asyncio.gather(*jobs)

    async def _poll_loop(self) -> None:
        delay = self.interval
        while True:
            await asyncio.sleep(delay)
            if self.ws_up:
                continue
            try:
                if not self.ex.markets:
                    await self._first()
                else:
                    await asyncio.wait_for(self._poll(), self.timeout_s)
                delay = self.interval
            except asyncio.CancelledError:
                raise
            except Exception as e:
                self.errors += 1
                delay = min(max(delay * 2, self.interval), MAX_BACKOFF_S)
                logger.warning("paper on live prices: poll of {} failed ({}: {}); next in {:.1f}s",
                               self.venue.ccxt_id, type(e).__name__, e, delay)

    async def _ws_loop(self) -> None:
        backoff = 1.0
        symbols = None if self.venue.ccxt_id == "binanceusdm" else sorted(self.wanted)
        while True:
            try:
                tickers = await self.ex.watch_tickers(symbols)
                self.ws_up, backoff = True, 1.0
                self._take({s: dec(t.get("last")) for s, t in tickers.items()})
            except asyncio.CancelledError:
                raise
            except Exception as e:
                self.ws_up = False
                self.errors += 1
                logger.warning("paper on live prices: {} websocket down ({}: {}); REST polling covers it",
                               self.venue.ccxt_id, type(e).__name__, e)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
