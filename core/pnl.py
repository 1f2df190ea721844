"""Profit and loss of a position, exact in Decimal: what a closed trade made, net of fees,
and what an open one is worth at the latest price. Pure arithmetic, no I/O."""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from core.types import HUNDRED, ZERO, Side

PCT_QUANTUM = Decimal("0.0001")


@dataclass(frozen=True, slots=True)
class Realized:
    gross: Decimal  # (exit - entry) × qty, signed by side
    fees: Decimal  # every commission the position's fills paid
    net: Decimal  # gross - fees
    pct: Decimal  # net ÷ entry notional × 100
    # False when a fill's venue reply carried no commission: `fees` then counts only the known
    # ones, and net and pct are before the unknown fees
    fees_known: bool = True


def gross(side: Side, qty: Decimal, entry: Decimal, price: Decimal) -> Decimal:
    return (price - entry) * qty * side.sign


def realized(side: Side, qty: Decimal, entry: Decimal, exit_: Decimal, fees: Decimal,
             fees_known: bool = True) -> Realized:
    g = gross(side, qty, entry, exit_)
    net = g - fees
    notional = entry * qty
    pct = (net / notional * HUNDRED).quantize(PCT_QUANTUM) if notional else ZERO
    return Realized(g, fees, net, pct, fees_known)
