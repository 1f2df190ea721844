"""The paper venue behind the gateway interface, with latency and faults like a real network."""
from __future__ import annotations

import random
import threading
import time
from decimal import Decimal

from loguru import logger

from core.faults import FaultPlan, InjectedCrash
from core.position_types import Leg
from core.types import MarketSpec
from exchange.gateway import (
    Balance, OrderHandler, OrderRequest, OrderState, Rejected, Retryable, TickHandler, UnknownOutcome,
    VenuePosition, check_fence,
)
from exchange.paper.engine import PaperEngine
from exchange.paper.prices import PriceSource, RandomWalk

_LEG_NAMES = {Leg.ENTRY: "entry", Leg.STOP: "stop", Leg.TRAILING: "trailing", Leg.EXIT: "exit"}


class PaperGateway:
    """Calls sleep for the simulated latency in the caller's own thread, so fifty positions'
    calls are in flight together exactly as they would be against a real venue."""

    name = "paper"
    supports_native_trailing = True
    entry_modes = ("stop_first", "attached", "after_fill")

    def __init__(self, engine: PaperEngine, *, latency_ms: float = 0.0, jitter_ms: float = 0.0,
                 tick_interval_s: float = 0.25, faults: FaultPlan | None = None, seed: int = 1,
                 prices: PriceSource | None = None):
        self.engine = engine
        self.latency_s = latency_ms / 1000
        self.jitter_s = jitter_ms / 1000
        self.tick_interval_s = tick_interval_s
        self.faults = faults if faults is not None else FaultPlan()
        self._rng = random.Random(seed)
        self._stop = threading.Event()
        self._feed: threading.Thread | None = None
        self.prices = prices if prices is not None else RandomWalk()
        self.recorded = None  # a recorded path's candles, when a rehearsal plays them

    # ---- gateway interface -------------------------------------------------------------

    def markets(self) -> dict[str, MarketSpec]:
        return dict(self.engine.markets)

    def price(self, symbol: str, timeout: float) -> Decimal:
        self._io("price", symbol, None, timeout, write=False)
        return self.engine.price(symbol)

    def place_order(self, req: OrderRequest, timeout: float) -> OrderState:
        return self._io("place_order", req.symbol, req.leg, timeout, write=True,
                        action=lambda: self.engine.place(req))

    def cancel_order(self, symbol: str, cid: str, timeout: float) -> OrderState:
        return self._io("cancel_order", symbol, None, timeout, write=True,
                        action=lambda: self.engine.cancel(cid))

    def fetch_order(self, symbol: str, cid: str, timeout: float) -> OrderState:
        self._io("fetch_order", symbol, None, timeout, write=False)
        return self.engine.fetch(cid)

    def open_orders(self, symbol: str | None, timeout: float) -> list[OrderState]:
        self._io("open_orders", symbol, None, timeout, write=False)
        return self.engine.open_orders(symbol)

    def positions(self, timeout: float) -> list[VenuePosition]:
        self._io("positions", None, None, timeout, write=False)
        return self.engine.positions()

    def balance(self, timeout: float) -> Balance:
        self._io("balance", None, None, timeout, write=False)
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

    def _io(self, op: str, symbol: str | None, leg: Leg | None, timeout: float, *, write: bool,
            action=None):
        """Simulate one round trip: latency, injected faults, and the venue's action."""
        rule = self.faults.pick(op, symbol, _LEG_NAMES.get(leg) if leg else None)
        latency = self.latency_s + (self._rng.uniform(0, self.jitter_s) if self.jitter_s else 0.0)
        kind = rule.kind if rule else None
        if kind == "latency":
            latency += rule.latency_ms / 1000
        elif kind == "hang":
            self.faults.hang()  # a request stuck before it left (pool, DNS, a dead socket)
        elif kind == "crash":
            raise InjectedCrash(f"injected crash in {op} {symbol or ''}")
        elif kind == "unavailable":
            self._wait(min(latency, timeout))
            raise (UnknownOutcome if write else Retryable)(f"502 Bad Gateway (injected) on {op}")
        elif kind == "invalid":
            self._wait(min(latency, timeout))
            raise Rejected(f"-1111 invalid order (injected) on {op}")
        if write:
            check_fence()  # the request leaves now: a replaced actor's write stops here
        if kind == "slow_reply" and latency < timeout:
            return self._slow_reply(op, symbol, latency, rule.latency_ms / 1000, timeout, write, action)
        if latency > timeout or kind in ("timeout_accepted", "timeout_lost"):
            self._wait(min(latency, timeout))
            if write and kind != "timeout_lost":
                action()  # the venue got it; only the answer was lost
            raise (UnknownOutcome if write else Retryable)(
                f"RequestTimeout after {timeout:.1f}s on {op} {symbol or ''}".strip())
        self._wait(latency)
        return action() if action else None

    def _slow_reply(self, op, symbol, latency, reply_s, timeout, write, action):
        """The request arrives and the venue acts; the answer is slow, maybe past the timeout
        (the case a crash or a timeout must resolve by looking the order up by client id)."""
        self._wait(latency)
        result = action() if action else None
        if latency + reply_s > timeout:
            self._wait(timeout - latency)
            raise (UnknownOutcome if write else Retryable)(
                f"RequestTimeout after {timeout:.1f}s on {op} {symbol or ''} (reply lost)".strip())
        self._wait(reply_s)
        return result

    @staticmethod
    def _wait(seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)
