"""Price fan-out to positions, coalesced: the latest price wins, one pending tick per actor.

A message per tick per actor is what the GIL makes expensive; here a tick only overwrites
the actor's slot, and a message is sent only if the actor has none waiting. Mailboxes stay
bounded whatever the tick rate.
"""
from __future__ import annotations

import threading
import time
from decimal import Decimal

from actors.messages import TICK


class TickSlot:
    """Written by the feed thread, read by one actor. The actor clears `pending` *before*
    reading `price`, so a price written meanwhile is followed by a fresh message."""

    __slots__ = ("symbol", "price", "ts", "pending", "ref")

    def __init__(self, symbol: str, ref) -> None:
        self.symbol = symbol
        self.price: Decimal | None = None
        self.ts = 0.0
        self.pending = False
        self.ref = ref

    def take(self) -> tuple[Decimal | None, float]:
        self.pending = False
        return self.price, self.ts


class MarketData:
    def __init__(self) -> None:
        self._by_symbol: dict[str, tuple[TickSlot, ...]] = {}
        self._write = threading.Lock()  # subscription changes only; ticks never take it
        self.last_price: dict[str, Decimal] = {}
        self._last_at: dict[str, float] = {}
        self.ticks_in = 0
        self.messages_out = 0
        self.last_tick_at = 0.0

    def subscribe(self, symbol: str, ref) -> TickSlot:
        slot = TickSlot(symbol, ref)
        with self._write:
            self._by_symbol[symbol] = (*self._by_symbol.get(symbol, ()), slot)
        return slot

    def unsubscribe(self, slot: TickSlot) -> None:
        with self._write:
            rest = tuple(s for s in self._by_symbol.get(slot.symbol, ()) if s is not slot)
            if rest:
                self._by_symbol[slot.symbol] = rest
            else:
                self._by_symbol.pop(slot.symbol, None)

    def on_tick(self, symbol: str, price: Decimal) -> None:
        now = time.perf_counter()
        self.ticks_in += 1
        self.last_tick_at = now
        self.last_price[symbol] = price
        self._last_at[symbol] = now
        for slot in self._by_symbol.get(symbol, ()):
            slot.price, slot.ts = price, now
            if not slot.pending:
                slot.pending = True
                self.messages_out += 1
                slot.ref.tell(TICK)

    def fresh_price(self, symbol: str, max_age_s: float) -> Decimal | None:
        """The feed's latest price if it is recent enough to size an order with."""
        at = self._last_at.get(symbol)
        if at is None or time.perf_counter() - at > max_age_s:
            return None
        return self.last_price.get(symbol)
