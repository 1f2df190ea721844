"""When a resting order of the paper venue fires at a price: a stop when the price crosses it,
the venue's trailing stop once armed at its activation price and the price has come back its
callback from the best price since."""
from __future__ import annotations

from decimal import Decimal

from exchange.paper.account import PaperOrder


def crossed(side: str, stop: Decimal, price: Decimal) -> bool:
    """A sell stop (closing a long) fires at or below its price, a buy stop at or above."""
    return price <= stop if side == "sell" else price >= stop


def trail(order: PaperOrder, price: Decimal) -> bool:
    """Follow `price` with the trailing order (arming it, moving its best price); True if it
    fires at this price."""
    closes_long = order.side == "sell"
    if not order.activated:
        if order.activation is not None and (price >= order.activation if closes_long
                                             else price <= order.activation):
            order.activated, order.best = True, price
        return False
    assert order.best is not None and order.callback_pct is not None  # set when it armed / rested
    order.best = max(order.best, price) if closes_long else min(order.best, price)
    cb = order.callback_pct / 100
    return price <= order.best * (1 - cb) if closes_long else price >= order.best * (1 + cb)
