"""Value types shared by every layer: sides, market specs and Decimal rounding."""
from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal
from enum import StrEnum

ZERO = Decimal(0)
HUNDRED = Decimal(100)


class Leg(StrEnum):
    """Which of a position's orders: its letter is part of the order's client id."""

    ENTRY = "e"
    STOP = "s"
    TRAILING = "t"
    EXIT = "x"


class Side(StrEnum):
    LONG = "long"
    SHORT = "short"

    @property
    def sign(self) -> int:
        return 1 if self is Side.LONG else -1

    @property
    def entry_order_side(self) -> str:
        return "buy" if self is Side.LONG else "sell"

    @property
    def exit_order_side(self) -> str:
        return "sell" if self is Side.LONG else "buy"

    @classmethod
    def parse(cls, raw: object) -> "Side":
        """Accept long/short and buy/sell in any case; raise ValueError otherwise."""
        text = str(raw).strip().lower()
        aliases = {"long": cls.LONG, "buy": cls.LONG, "short": cls.SHORT, "sell": cls.SHORT}
        if text not in aliases:
            raise ValueError(f"side must be long/short (or buy/sell), got {raw!r}")
        return aliases[text]


@dataclass(frozen=True, slots=True)
class MarketSpec:
    """What the venue allows for one symbol; every price and amount is rounded with it."""

    symbol: str
    tick_size: Decimal
    lot_size: Decimal
    min_qty: Decimal
    min_notional: Decimal

    def floor_price(self, price: Decimal) -> Decimal:
        return (price / self.tick_size).to_integral_value(ROUND_FLOOR) * self.tick_size

    def ceil_price(self, price: Decimal) -> Decimal:
        return (price / self.tick_size).to_integral_value(ROUND_CEILING) * self.tick_size

    def nearest_price(self, price: Decimal) -> Decimal:
        return (price / self.tick_size).to_integral_value(ROUND_HALF_EVEN) * self.tick_size

    def round_qty(self, qty: Decimal) -> Decimal:
        """Quantities are always rounded down: never trade more than was sized."""
        return (qty / self.lot_size).to_integral_value(ROUND_DOWN) * self.lot_size

    def stop_away_from_price(self, stop: Decimal, side: Side) -> Decimal:
        """Round a protective stop away from the market: down for a long, up for a short."""
        return self.floor_price(stop) if side is Side.LONG else self.ceil_price(stop)


def pct(value: Decimal) -> Decimal:
    """A percentage as a fraction: pct(Decimal('1.5')) == Decimal('0.015')."""
    return value / HUNDRED
