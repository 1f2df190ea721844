"""Native trailing keeps its ratchet through parameter changes: the state machine is driven
through price ticks and operator changes of callback and activation while a model of the
venue's trailing orders (arming, following its best, firing) executes the commands; the
trigger the venue would fire at never loosens, and an armed order is never swapped for an
unarmed one."""
from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal

from hypothesis import example, given, settings, strategies as st

from core.position_logic import step
from core.position_types import (
    Begin, Cancel, Leg, Params, Phase, Place, Placed, PositionState, ReadTrailing, Reconciled, Resting,
    SetParams, Tick,
)
from core.position_types import VenueTrail as VenueView
from core.types import MarketSpec, Side

SPEC = MarketSpec("X/USDT:USDT", Decimal("0.001"), Decimal("0.1"), Decimal("0.1"), Decimal(5))
P = Params(Decimal(2), Decimal(1), Decimal("0.5"), trailing_mode="native", notional=Decimal(100),
           replace_min_interval_s=0)


@dataclass
class VenueTrail:
    """The paper venue's TRAILING order, as the engine runs it."""

    closes_long: bool
    activation: Decimal | None
    callback_pct: Decimal
    armed: bool = False
    best: Decimal | None = None

    def see(self, price: Decimal) -> bool:
        """One price; True if the order fires."""
        if not self.armed:
            if self.activation is None or (price >= self.activation if self.closes_long
                                           else price <= self.activation):
                self.armed, self.best = True, price
            return False
        self.best = max(self.best, price) if self.closes_long else min(self.best, price)
        t = self.trigger()
        return price <= t if self.closes_long else price >= t

    def trigger(self) -> Decimal | None:
        if not self.armed:
            return None
        cb = self.callback_pct / 100
        return self.best * (1 - cb) if self.closes_long else self.best * (1 + cb)


def _read(s, venue: dict[str, VenueTrail]) -> VenueView | None:
    o = venue.get(s.trailing_cid)
    return VenueView(o.armed, o.best, o.callback_pct) if o is not None else None


def _run(s, ev, venue: dict[str, VenueTrail], price: Decimal):
    """Step, then execute every command against the model venue, feeding results back, as the
    actor shell does (which reads the venue's trailing order for a parameter change)."""
    queue = [ev]
    while queue:
        ev = queue.pop(0)
        if isinstance(ev, SetParams) and ev.venue is None:
            ev = replace(ev, venue=_read(s, venue))
        s, cmds = step(s, ev, SPEC)
        for c in cmds:
            if isinstance(c, ReadTrailing):
                queue.append(SetParams(venue=_read(s, venue)))
            if isinstance(c, Place):
                i = c.intent
                if i.leg is Leg.TRAILING:
                    o = VenueTrail(i.side == "sell", i.activation, i.callback_pct)
                    o.see(price)
                    venue[i.cid] = o
                queue.append(Placed(i, price if i.leg in (Leg.ENTRY, Leg.EXIT) else None,
                                    i.qty if i.leg is Leg.ENTRY else None))
            elif isinstance(c, Cancel):
                venue.pop(c.cid, None)
    return s


def _effective(venue: dict[str, VenueTrail], side: Side) -> Decimal | None:
    """The tightest trigger among the armed resting orders (whichever fires first)."""
    ts = [t for o in venue.values() if (t := o.trigger()) is not None]
    if not ts:
        return None
    return max(ts) if side is Side.LONG else min(ts)


moves = st.integers(min_value=-30, max_value=30).map(lambda bp: ("tick", Decimal(bp) / 1000))
changes = st.one_of(
    st.decimals(min_value=Decimal("0.1"), max_value=Decimal(10), places=2).map(lambda v: ("cb", v)),
    st.decimals(min_value=Decimal(0), max_value=Decimal(5), places=2).map(lambda v: ("act", v)),
    st.just(("restart", None)),
    st.just(("restart", "stop lost")),
)


def _restarted(s, venue: dict[str, VenueTrail], price: Decimal, stop_lost: bool = False):
    """What a replacement actor starts from: the row (whose trailing callback is the configured
    one) reconciled with the venue's resting orders (without the stop-loss, if it was lost)."""
    s = replace(s, trailing=replace(s.trailing, callback_pct=s.params.callback_pct), epoch=s.epoch + 1)
    stop = () if stop_lost else (Resting(s.stop_cid, Leg.STOP, s.stop_price),)
    resting = (*stop, *(Resting(cid, Leg.TRAILING, None, o.callback_pct) for cid, o in venue.items()))
    return _run(s, Reconciled(s.qty, s.entry_price, resting, price), venue, price)


@settings(max_examples=500)
# a looser change kept the order, a restart reloaded the configured callback, a tighter one came
@example(side=Side.LONG, ops=[("tick", Decimal("0.01")), ("cb", Decimal("0.52")), ("restart", None),
                              ("cb", Decimal("0.51"))])
# armed, pulled back, then restarted without its stop-loss: re-protecting must keep the order
@example(side=Side.SHORT, ops=[("tick", Decimal("-0.02")), ("tick", Decimal("0.004")), ("restart", "stop lost")])
@given(side=st.sampled_from([Side.LONG, Side.SHORT]),
       ops=st.lists(st.one_of(moves, moves, changes), min_size=1, max_size=60))
def test_the_venue_trigger_never_loosens(side, ops):
    price = Decimal(10)
    venue: dict[str, VenueTrail] = {}
    s = PositionState("p", "s", "w", SPEC.symbol, side, P)
    s = _run(s, Begin(price), venue, price)
    assert s.phase is Phase.TRAILING and len(venue) == 1
    prev = _effective(venue, side)
    now = 0.0
    for kind, v in ops:
        if kind == "tick":
            now += 1
            price = SPEC.nearest_price(price * (1 + v))
            if any(o.see(price) for o in venue.values()):
                return  # the trailing stop fired: the position is closed
            prev = _effective(venue, side)  # the market moves the trigger; only our changes are checked
            s = _run(s, Tick(price, now), venue, price)
        elif kind == "restart":
            s = _restarted(s, venue, price, stop_lost=v is not None)
        elif kind == "cb":
            s = _run(s, SetParams(callback_pct=v), venue, price)
        else:
            s = _run(s, SetParams(activation_pct=v), venue, price)
        if s.phase.final:
            return  # re-protecting found the price through the stop: closed at market
        eff = _effective(venue, side)
        if prev is not None:
            assert eff is not None, f"an armed trailing stop was replaced by an unarmed one ({kind} {v})"
            loosened = eff < prev if side is Side.LONG else eff > prev
            assert not loosened, f"trigger loosened {prev} -> {eff} on {kind} {v}"
        assert len(venue) == 1, "exactly one trailing order rests"
        prev = eff


def _armed(side=Side.LONG):
    price = Decimal(10)
    venue: dict[str, VenueTrail] = {}
    s = _run(PositionState("p", "s", "w", SPEC.symbol, side, P), Begin(price), venue, price)
    for p in ("10.2", "10.3"):  # activation is at 10.1
        price = Decimal(p)
        for o in venue.values():
            o.see(price)
        s = _run(s, Tick(price, 1.0), venue, price)
    return s, venue


def test_a_tightened_callback_after_a_pullback_waits_for_a_new_best():
    s, venue = _armed()
    (old,) = venue
    price = Decimal("10.27")  # trigger from the best 10.3 at 0.5 %: 10.2485
    for o in venue.values():
        o.see(price)
    s = _run(s, Tick(price, 2.0), venue, price)
    s = _run(s, SetParams(callback_pct=Decimal("0.6")), venue, price)  # looser: kept
    s = _run(s, SetParams(callback_pct=Decimal("0.4")), venue, price)  # 10.27 × 0.996 = 10.229 < 10.2485
    assert list(venue) == [old], "re-placing now would fire later than the resting order"
    price = Decimal("10.4")  # a new best: 10.4 × 0.996 = 10.3584 > 10.4 × 0.995
    for o in venue.values():
        o.see(price)
    s = _run(s, Tick(price, 3.0), venue, price)
    (new,) = venue
    assert new != old and venue[new].callback_pct == Decimal("0.4") and venue[new].armed


def test_activation_zero_replaces_an_unarmed_order():
    price = Decimal(10)
    venue: dict[str, VenueTrail] = {}
    s = _run(PositionState("p", "s", "w", SPEC.symbol, Side.LONG, P), Begin(price), venue, price)
    (old,) = venue
    price = Decimal("10.05")  # above the entry, below the 1 % activation
    for o in venue.values():
        o.see(price)
    s = _run(s, Tick(price, 1.0), venue, price)
    s = _run(s, SetParams(activation_pct=Decimal(0)), venue, price)
    (new,) = venue
    assert new != old and venue[new].armed and venue[new].activation == s.entry_price
