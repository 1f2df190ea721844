"""Property tests of the pure trailing-stop arithmetic and the position state machine:
ratchet, activation, protective side and rounding, for longs and shorts."""
from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from core import trailing as tr
from core.position_logic import step
from core.position_types import (
    Begin, Leg, Params, Phase, Place, Placed, PositionState, Tick,
)
from core.types import MarketSpec, Side

TICKS = [Decimal("0.1"), Decimal("0.01"), Decimal("0.0001"), Decimal("0.0000001")]

sides = st.sampled_from([Side.LONG, Side.SHORT])
pcts = st.decimals(min_value=Decimal("0.1"), max_value=Decimal("10"), places=2)
ticks = st.sampled_from(TICKS)


@st.composite
def market_and_prices(draw, n=st.integers(1, 60)):
    tick = draw(ticks)
    spec = MarketSpec("X/USDT:USDT", tick, Decimal("0.001"), Decimal("0.001"), Decimal(0))
    start = draw(st.integers(1000, 10_000_000)) * tick
    moves = draw(st.lists(st.integers(-300, 300), min_size=1, max_size=draw(n)))
    prices, p = [], start
    for m in moves:  # a walk in per-mille steps, kept on the tick grid and positive
        p = max(tick * 10, spec.nearest_price(p * (1 + Decimal(m) / 10000)))
        prices.append(p)
    return spec, start, prices


def on_grid(value: Decimal, tick: Decimal) -> bool:
    return (value / tick) == (value / tick).to_integral_value()


@given(market_and_prices(), sides, pcts, pcts)
@settings(max_examples=300)
def test_trailing_ratchets_activates_and_rounds(mp, side, act_pct, cb_pct):
    spec, entry, prices = mp
    act = tr.activation_price(entry, side, act_pct, spec)
    t = tr.Trailing(act, cb_pct)
    best = None
    for price in prices:
        before = t
        t = t.on_price(price, side, spec)
        reached = price >= act if side is Side.LONG else price <= act
        if not before.activated and not reached:
            assert t == before, "trailing moved before price reached activation"
            continue
        assert t.activated
        best = price if best is None else tr.better_price(best, price, side)
        assert t.best == best
        # the ratchet: never loosens
        if before.level is not None:
            assert (t.level >= before.level) if side is Side.LONG else (t.level <= before.level)
        # the level is best × (1 ∓ cb), rounded away from the price onto the tick grid,
        # unless an earlier, tighter level already holds
        expected = tr.trail_level(best, side, cb_pct, spec)
        assert on_grid(t.level, spec.tick_size)
        assert tr.tighter(t.level, expected, side) == t.level
        raw = best * (1 - side.sign * cb_pct / 100)
        assert (expected <= raw) if side is Side.LONG else (expected >= raw)
        assert abs(expected - raw) < spec.tick_size


@given(st.integers(1000, 10_000_000), ticks, sides, pcts)
def test_initial_stop_is_on_protective_side_and_on_grid(units, tick, side, sl):
    spec = MarketSpec("X", tick, Decimal(1), Decimal(1), Decimal(0))
    entry = units * tick
    stop = tr.initial_stop(entry, side, sl, spec)
    assert on_grid(stop, tick)
    assert tr.is_protective(stop, entry, side)
    raw = entry * (1 - side.sign * sl / 100)
    assert abs(stop - raw) < tick and ((stop <= raw) if side is Side.LONG else (stop >= raw))


def _opened(side: Side, mode: str, spec: MarketSpec, entry: Decimal, act: Decimal, cb: Decimal):
    params = Params(Decimal(2), act, cb, trailing_mode=mode, notional=entry * 10)
    s = PositionState("p1", "s1", "w1", spec.symbol, side, params)
    s, cmds = step(s, Begin(entry), spec)
    (entry_cmd,) = [c for c in cmds if isinstance(c, Place)]
    s, cmds = step(s, Placed(entry_cmd.intent, entry, entry_cmd.intent.qty), spec)
    (stop_cmd,) = [c for c in cmds if isinstance(c, Place)]
    s, cmds = step(s, Placed(stop_cmd.intent), spec)
    if mode == "native":
        (trail_cmd,) = [c for c in cmds if isinstance(c, Place)]
        s, cmds = step(s, Placed(trail_cmd.intent), spec)
    assert s.phase is Phase.TRAILING
    return s


@given(market_and_prices(), sides, pcts, pcts)
@settings(max_examples=200)
def test_emulated_position_only_tightens_and_sends_protective_stops(mp, side, act, cb):
    """Through any price path: every stop sent is on the protective side of the last price
    (else the position closes at market), and the resting stop level never loosens."""
    spec, entry, prices = mp
    s = _opened(side, "emulated", spec, entry, act, cb)
    now = 0.0
    for price in prices:
        now += 1
        before = s.stop_price
        s, cmds = step(s, Tick(price, now), spec)
        for c in cmds:
            if isinstance(c, Place) and c.intent.leg is Leg.STOP:
                assert tr.is_protective(c.intent.stop_price, price, side)
                assert tr.is_tighter(c.intent.stop_price, before, side)
                s, _ = step(s, Placed(c.intent), spec)
            elif isinstance(c, Place) and c.intent.leg is Leg.EXIT:
                assert s.phase is Phase.CLOSING
        if s.phase is Phase.CLOSING:
            break
        assert (s.stop_price >= before) if side is Side.LONG else (s.stop_price <= before)
        assert s.stop_cid is not None, "an open position must always have a resting stop"


@given(market_and_prices(), sides, pcts, pcts)
@settings(max_examples=100)
def test_native_mode_sends_nothing_on_ticks(mp, side, act, cb):
    spec, entry, prices = mp
    s = _opened(side, "native", spec, entry, act, cb)
    for i, price in enumerate(prices):
        s, cmds = step(s, Tick(price, float(i)), spec)
        assert not [c for c in cmds if isinstance(c, Place)]


def test_ticks_that_only_move_prices_are_not_persisted():
    spec = MarketSpec("X/USDT:USDT", Decimal("0.01"), Decimal("0.001"), Decimal("0.001"), Decimal(0))
    s = _opened(Side.LONG, "emulated", spec, Decimal(100), Decimal(1), Decimal("0.5"))
    below, _ = step(s, Tick(Decimal("100.50"), 1.0), spec)  # below activation: price only
    assert not below.differs_materially(s)
    armed, _ = step(below, Tick(Decimal("101.20"), 2.0), spec)  # activation: level appears
    assert armed.differs_materially(below)
    higher, _ = step(armed, Tick(Decimal("101.21"), 3.0), spec)  # new best, same rounded level?
    assert higher.differs_materially(armed) == (higher.trailing.level != armed.trailing.level)
