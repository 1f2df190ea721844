"""Each venue position's protection, judged from the venue's own positions and resting orders.

Pure: the guardian and the invariant checker hand it what the venue answered and get back,
per symbol, the stop that really protects the position (if any) and its trailing stop. Our
books are not consulted: a stop we think rests but the venue does not hold protects nothing.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Iterable

from core.position_types import Leg
from exchange.gateway import OrderState, VenuePosition


@dataclass(frozen=True, slots=True)
class Cover:
    """One venue position and what rests to protect it."""

    symbol: str
    qty: Decimal  # signed: > 0 long
    entry: Decimal | None
    stop: OrderState | None  # the tightest resting reduce-only stop on the protective side
    trailing: OrderState | None  # a resting native trailing stop (not counted as the stop)

    @property
    def protected(self) -> bool:
        return self.stop is not None

    @property
    def exit_side(self) -> str:
        return "sell" if self.qty > 0 else "buy"


def _guards(o: OrderState, exit_side: str, qty: Decimal) -> bool:
    """Would this order close (all of) the position when it fires?"""
    if o.status != "open" or (o.side is not None and o.side != exit_side):
        return False
    if o.close_position:  # a close-all stop: whatever the symbol holds on that side, no quantity
        return True
    return o.reduce_only is not False and (o.qty is None or o.qty >= qty)


def assess(positions: Iterable[VenuePosition], orders: Iterable[OrderState]) -> dict[str, Cover]:
    """symbol → Cover for every position the venue holds."""
    by_symbol: dict[str, list[OrderState]] = {}
    for o in orders:
        by_symbol.setdefault(o.symbol, []).append(o)
    out: dict[str, Cover] = {}
    for p in positions:
        if p.qty == 0:
            continue
        exit_side, qty = ("sell" if p.qty > 0 else "buy"), abs(p.qty)
        stop: OrderState | None = None
        trailing: OrderState | None = None
        for o in by_symbol.get(p.symbol, ()):
            if not _guards(o, exit_side, qty):
                continue
            if o.leg is Leg.STOP and o.stop_price is not None:
                held = stop.stop_price if stop is not None else None  # a kept stop has its price
                tighter = held is None or (o.stop_price > held if p.qty > 0 else o.stop_price < held)
                stop = o if tighter else stop
            elif o.leg is Leg.TRAILING:
                trailing = trailing or o
        out[p.symbol] = Cover(p.symbol, p.qty, p.entry_price, stop, trailing)
    return out
