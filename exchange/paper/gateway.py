"""The paper venue behind the gateway interface, with a network's latency and jitter.

Injected faults are not its business: `exchange.faulty.FaultyGateway` wraps it like any venue."""
from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from typing import TypeVar

from loguru import logger

from core.types import MarketSpec
from exchange.gateway import (
    Balance, OrderHandler, OrderRequest, OrderState, Retryable, TickHandler, UnknownOutcome, VenuePosition,
    check_fence,
)
from exchange.paper.candles import Series
from exchange.paper.engine import PaperEngine
from exchange.paper.prices import PriceSource, RandomWalk

T = TypeVar("T")


class PaperGateway:
    """Calls sleep for the simulated latency in the caller's own thread, so fifty positions'
    calls are in flight together exactly as they would be against a real venue."""

    name = "paper"
    supports_native_trailing = True
    entry_modes: tuple[str, ...] = ("stop_first", "attached", "after_fill")

    def __init__(self, engine: PaperEngine, *, latency_ms: float = 0.0, jitter_ms: float = 0.0,
                 tick_interval_s: float = 0.25, seed: int = 1,
                 prices: PriceSource | None = None):
        self.engine = engine
        self.latency_s = latency_ms / 1000
        self.jitter_s = jitter_ms / 1000
        self.tick_interval_s = tick_interval_s
        self._rng = random.Random(seed)
        self._stop = threading.Event()
        self._feed: threading.Thread | None = None
        self.prices = prices if prices is not None else RandomWalk()
        # a recorded path's candles, when a rehearsal plays them
        self.recorded: dict[str, Series] | None = None

    # ---- gateway interface -------------------------------------------------------------

    def markets(self) -> dict[str, MarketSpec]:
        return dict(self.engine.markets)

    def price(self, symbol: str, timeout: float) -> Decimal:
        self._read("price", symbol, timeout)
        return self.engine.price(symbol)

    def place_order(self, req: OrderRequest, timeout: float) -> OrderState:
        return self._io("place_order", req.symbol, timeout, write=True,
                        action=lambda: self.engine.place(req))

    def cancel_order(self, symbol: str, cid: str, timeout: float) -> OrderState:
        return self._io("cancel_order", symbol, timeout, write=True,
                        action=lambda: self.engine.cancel(cid))

    def fetch_order(self, symbol: str, cid: str, timeout: float) -> OrderState:
        self._read("fetch_order", symbol, timeout)
        return self.engine.fetch(cid)

    def open_orders(self, symbol: str | None, timeout: float) -> list[OrderState]:
        self._read("open_orders", symbol, timeout)
        return self.engine.open_orders(symbol)

    def positions(self, timeout: float) -> list[VenuePosition]:
        self._read("positions", None, timeout)
        return self.engine.positions()

    def balance(self, timeout: float) -> Balance:
        self._read("balance", None, timeout)
        return self.engine.balance()

    def protection_gaps(self) -> list[float]:
        """The venue's own record: per position, entry fill → first stop resting (seconds)."""
        return self.engine.protection_gaps()

    def subscribe(self, on_tick: TickHandler, on_order: OrderHandler) -> None:
        """Start the venue's price stream; our order updates arrive through `on_order`."""
        self.engine.add_listener(on_order)
        if self._feed is None and self.tick_interval_s > 0:
            self._feed = threading.Thread(target=self._run_feed, args=(on_tick,),
                                          name="paper-feed", daemon=True)
            self._feed.start()

    def stop_feed(self) -> None:
        """Freeze the market (no more ticks): for checks that compare two snapshots."""
        self._stop.set()
        if self._feed is not None:
            self._feed.join(timeout=2)

    def close(self) -> None:
        self.stop_feed()
        if hasattr(self.prices, "close"):  # a live price stream has a connection to end
            self.prices.close()
        self.engine.close()

    # ---- internals ---------------------------------------------------------------------

    def _run_feed(self, on_tick: TickHandler) -> None:
        while not self._stop.wait(self.tick_interval_s):
            try:
                for sym, price in self.prices.advance(self.engine, self.tick_interval_s).items():
                    on_tick(sym, price)
            except Exception:  # the feed must outlive any one bad handler
                logger.exception("paper price feed: handler failed; continuing")

    def round_trip(self, timeout: float) -> None:
        """One simulated round trip that acts on nothing (a refused or lost request)."""
        self._wait(min(self._latency(), timeout))

    def _latency(self) -> float:
        return self.latency_s + (self._rng.uniform(0, self.jitter_s) if self.jitter_s else 0.0)

    def _read(self, op: str, symbol: str | None, timeout: float) -> None:
        self._io(op, symbol, timeout, write=False, action=lambda: None)

    def _io(self, op: str, symbol: str | None, timeout: float, *, write: bool,
            action: Callable[[], T]) -> T:
        """Simulate one round trip: latency, then the venue's action; past the timeout a
        write still reaches the venue and only its answer is lost."""
        latency = self._latency()
        if write:
            check_fence()  # the request leaves now: a replaced actor's write stops here
        if latency > timeout:
            self._wait(timeout)
            if write:
                action()  # the venue got it; only the answer was lost
            raise (UnknownOutcome if write else Retryable)(
                f"RequestTimeout after {timeout:.1f}s on {op} {symbol or ''}".strip())
        self._wait(latency)
        return action()

    @staticmethod
    def _wait(seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)
