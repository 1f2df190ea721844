"""Trailing-stop and stop-loss arithmetic: pure functions the state machine and tests share."""
from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal

from core.types import MarketSpec, Side, pct


def initial_stop(entry: Decimal, side: Side, stop_loss_pct: Decimal, spec: MarketSpec) -> Decimal:
    """The stop-loss level at entry × (1 ∓ sl%), rounded away from the price."""
    raw = entry * (1 - side.sign * pct(stop_loss_pct))
    return spec.stop_away_from_price(raw, side)


def activation_price(entry: Decimal, side: Side, activation_pct: Decimal, spec: MarketSpec) -> Decimal:
    """Where the trailing stop arms: entry × (1 ± act%), rounded further into profit."""
    raw = entry * (1 + side.sign * pct(activation_pct))
    return spec.ceil_price(raw) if side is Side.LONG else spec.floor_price(raw)


def trail_level(best: Decimal, side: Side, callback_pct: Decimal, spec: MarketSpec) -> Decimal:
    """best × (1 ∓ callback%), rounded to the tick away from the price."""
    raw = best * (1 - side.sign * pct(callback_pct))
    return spec.stop_away_from_price(raw, side)


def tighter(a: Decimal | None, b: Decimal | None, side: Side) -> Decimal | None:
    """The more protective of two stops (higher for a long, lower for a short)."""
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b) if side is Side.LONG else min(a, b)


def is_tighter(candidate: Decimal, current: Decimal | None, side: Side) -> bool:
    if current is None:
        return True
    return candidate > current if side is Side.LONG else candidate < current


def is_protective(stop: Decimal, price: Decimal, side: Side) -> bool:
    """A resting stop must sit on the loss side of the current price."""
    return stop < price if side is Side.LONG else stop > price


def better_price(a: Decimal, b: Decimal, side: Side) -> Decimal:
    return max(a, b) if side is Side.LONG else min(a, b)


@dataclass(frozen=True, slots=True)
class Trailing:
    """Trailing-stop state: armed at `activation`, then follows `best` by the callback."""

    activation: Decimal
    callback_pct: Decimal
    activated: bool = False
    best: Decimal | None = None
    level: Decimal | None = None

    def reached(self, price: Decimal, side: Side) -> bool:
        return price >= self.activation if side is Side.LONG else price <= self.activation

    def on_price(self, price: Decimal, side: Side, spec: MarketSpec) -> "Trailing":
        """Advance with one price; the level only ever tightens (the ratchet)."""
        reached = self.reached(price, side)
        if not self.activated and not reached:
            return self
        best = price if self.best is None else better_price(self.best, price, side)
        level = tighter(self.level, trail_level(best, side, self.callback_pct, spec), side)
        if self.activated and best == self.best and level == self.level:
            return self
        return replace(self, activated=True, best=best, level=level)


def liquidation_estimate(entry: Decimal, side: Side, leverage: Decimal, maint_margin_pct: Decimal) -> Decimal:
    """Where an isolated position opened at `entry` with `leverage` is liquidated: once the loss
    has eaten the initial margin (1/leverage) down to the maintenance margin. Cross margin is
    backed by the account's free balance and liquidates later, so this errs on the safe side."""
    distance = 1 / leverage - pct(maint_margin_pct)
    return entry * (1 - side.sign * distance)


def beyond_liquidation(stop: Decimal, liquidation: Decimal, side: Side) -> bool:
    """A stop the venue would only reach after liquidating the position."""
    return stop <= liquidation if side is Side.LONG else stop >= liquidation
