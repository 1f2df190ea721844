"""Where the paper venue's prices come from: a seeded random walk, a recorded path of
candles, or (exchange/paper/live.py) a real venue's public price stream.

A recorded trade is one price of the path. A recorded candle is walked in a fixed order, the
one most backtesters use: open → low → high → close for a rising candle (close ≥ open), open →
high → low → close for a falling one, at ¼-interval steps (open at the candle's start, close
at ¾). Between two points of one
candle the price moves continuously, so it passes every trigger level of a resting order on
the way (`walk_to`): a stop between two recorded prices fills at its own level, as a venue
would fill it, not at the candle's extreme. Between candles the price jumps (a gap is a gap).
The backtest and the live-path rehearsal both play a path through `play`, so the matching
engine sees the same prices in the same order.
"""
from __future__ import annotations

import math
from decimal import Decimal
from typing import Callable, Iterator, Protocol

from core.types import MarketSpec
from exchange.paper.candles import Candle, Series
from exchange.paper.engine import PaperEngine

Point = tuple[float, str, Decimal, bool]  # time, symbol, price, walk from the previous point

OnPrice = Callable[[str, Decimal], None]


class PriceSource(Protocol):
    """What the paper gateway's feed thread asks for every tick interval."""

    def advance(self, engine: PaperEngine, dt: float) -> dict[str, Decimal]:
        """Move the engine's prices (triggering what they cross); return the new prices."""


class RandomWalk:
    """The default: the engine's own seeded geometric random walk."""

    def advance(self, engine: PaperEngine, dt: float) -> dict[str, Decimal]:
        return engine.step(dt)


def candle_path(c: Candle, interval: float) -> tuple[tuple[float, Decimal], ...]:
    """The four prices a candle is walked through, each with its time."""
    q = interval / 4
    mid = (c.low, c.high) if c.close >= c.open else (c.high, c.low)
    return ((c.ts, c.open), (c.ts + q, mid[0]), (c.ts + 2 * q, mid[1]), (c.ts + 3 * q, c.close))


def points(series: Series) -> Iterator[Point]:
    """One symbol's path: every candle's four points (the open jumps, the rest walk), or
    every trade's price (walking from the one before)."""
    if series.kind == "trades":
        for k, c in enumerate(series.candles):
            yield c.ts, series.symbol, c.close, k > 0
        return
    for c in series.candles:
        for k, (t, p) in enumerate(candle_path(c, series.interval)):
            yield t, series.symbol, p, k > 0


def walk_to(engine: PaperEngine, symbol: str, target: Decimal, on_price: OnPrice) -> None:
    """Move one symbol's price to `target`, stopping at each trigger level passed on the way
    (rounded to the tick beyond it, so the order does trigger), nearest first."""
    spec = engine.markets[symbol]
    price = engine.price(symbol)
    while True:
        if target < price:
            between = [lv for lv in engine.trigger_levels(symbol) if target < lv < price]
            stop = spec.floor_price(max(between)) if between else None
            if stop is None or stop <= target or stop >= price:
                break
        elif target > price:
            between = [lv for lv in engine.trigger_levels(symbol) if price < lv < target]
            stop = spec.ceil_price(min(between)) if between else None
            if stop is None or stop >= target or stop <= price:
                break
        else:
            break
        engine.set_price(symbol, stop)
        on_price(symbol, stop)
        price = stop
    engine.set_price(symbol, target)
    on_price(symbol, target)


def play(engine: PaperEngine, point: Point, on_price: OnPrice) -> None:
    """Apply one point of a recorded path to the engine; `on_price` sees every price set."""
    _t, symbol, price, walk = point
    if walk:
        walk_to(engine, symbol, price, on_price)
    else:
        engine.set_price(symbol, price)
        on_price(symbol, price)


def _decimals(d: Decimal) -> int:
    exp = d.normalize().as_tuple().exponent
    return max(0, -exp) if isinstance(exp, int) else 0


def inferred_spec(series: Series, notional: Decimal) -> MarketSpec:
    """A market spec for a symbol the paper universe does not know: the tick is the finest
    digit its prices use, the lot gives a position of `notional` about four significant digits."""
    sample = series.candles[:500]
    places = max(_decimals(p) for c in sample for p in (c.open, c.high, c.low, c.close))
    tick = Decimal(1).scaleb(-places)
    qty = notional / sample[0].close
    lot = Decimal(1).scaleb(math.floor(math.log10(qty)) - 3 if qty > 0 else 0)
    return MarketSpec(series.symbol, tick, lot, lot, Decimal(5))


def recorded_markets(data: dict[str, Series], known: dict[str, MarketSpec],
                     notional: Decimal) -> dict[str, MarketSpec]:
    """The universe of a recorded path: known specs where we have them, inferred otherwise."""
    return {sym: known.get(sym) or inferred_spec(s, notional) for sym, s in data.items()}


def first_prices(data: dict[str, Series]) -> dict[str, Decimal]:
    """Each symbol's opening price, where its path starts."""
    return {sym: s.candles[0].open for sym, s in data.items()}
