"""Property tests of the recovery policy in the pure state machine (`Reconciled`): whatever the
venue shows after a crash, the position keeps one stop (the tightest of ours), never sends an
order for a leg that already rests, cancels every other order of its own, and ends protected
or closing — or closed, if the venue no longer holds it."""
from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from core import trailing as tr
from core.position_logic import step
from core.position_types import (
    Cancel, Filled, Leg, Params, Phase, Place, PositionState, Reconciled, Report, Resting,
)
from core.types import MarketSpec, Side

SPEC = MarketSpec("X/USDT:USDT", Decimal("0.01"), Decimal("0.001"), Decimal("0.001"), Decimal(0))
ENTRY = Decimal(100)


@st.composite
def crash_aftermath(draw):
    side = draw(st.sampled_from([Side.LONG, Side.SHORT]))
    mode = draw(st.sampled_from(["native", "emulated"]))
    phase = draw(st.sampled_from([Phase.OPEN, Phase.PROTECTED, Phase.TRAILING, Phase.CLOSING]))
    params = Params(Decimal(2), Decimal(1), Decimal("0.5"), trailing_mode=mode)
    stop = tr.initial_stop(ENTRY, side, params.stop_loss_pct, SPEC)
    recorded_stop = draw(st.booleans()) and phase is not Phase.OPEN
    recorded_trail = draw(st.booleans()) and phase is Phase.TRAILING and mode == "native"
    s = PositionState(
        id="p1", signal_id="s1", wave_id="w1", symbol=SPEC.symbol, side=side, params=params,
        phase=phase, epoch=2, seq=9, qty=Decimal("1.5"), entry_price=ENTRY, last_price=ENTRY,
        stop_price=stop if recorded_stop else None, stop_cid="wt-p1-s1-2" if recorded_stop else None,
        trailing=tr.Trailing(tr.activation_price(ENTRY, side, params.activation_pct, SPEC), params.callback_pct),
        trailing_cid="wt-p1-t1-3" if recorded_trail else None, reported=phase is Phase.TRAILING,
        close_reason="operator close" if phase is Phase.CLOSING else None)
    step_ = side.sign * Decimal("0.5")
    candidates = [Resting("wt-p1-s1-2", Leg.STOP, stop),  # recorded or lost answer
                  Resting("wt-p1-s1-7", Leg.STOP, stop + step_),  # a tighter replacement, unrecorded
                  Resting("wt-p1-s1-8", Leg.STOP, stop - step_),  # a looser one, unrecorded
                  Resting("wt-p1-t1-3", Leg.TRAILING), Resting("wt-p1-t1-9", Leg.TRAILING)]
    resting = tuple(r for r in candidates if draw(st.booleans()))
    held = draw(st.booleans())
    price = ENTRY * (1 + side.sign * Decimal(draw(st.integers(-40, 40))) / 1000)
    return s, Reconciled(s.qty if held else Decimal(0), ENTRY if held else None, resting, price)


@given(crash_aftermath())
def test_reconciliation_keeps_one_tightest_stop_and_never_duplicates_a_leg(case):
    s, ev = case
    new, cmds = step(s, ev, SPEC)
    cancels = {c.cid for c in cmds if isinstance(c, Cancel)}
    places = [c.intent for c in cmds if isinstance(c, Place)]
    ours = {r.cid for r in ev.resting}
    assert cancels <= ours | set(s.protective_cids)
    if ev.venue_qty == 0:
        assert new.phase.final and not places and cancels >= ours
        return
    kept = ours - cancels
    kept_stops = [r for r in ev.resting if r.leg is Leg.STOP and r.cid in kept]
    kept_trails = [r for r in ev.resting if r.leg is Leg.TRAILING and r.cid in kept]
    stops = [r for r in ev.resting if r.leg is Leg.STOP]
    assert len(kept_stops) <= 1 and len(kept_trails) <= 1
    if stops:
        best = tr.tighter(None, stops[0].stop_price, s.side)
        for r in stops:
            best = tr.tighter(best, r.stop_price, s.side)
        assert kept_stops and kept_stops[0].stop_price == best and new.stop_cid == kept_stops[0].cid
    legs = [i.leg for i in places]
    if kept_stops:
        assert Leg.STOP not in legs  # a resting stop is never sent again
    if kept_trails:
        assert Leg.TRAILING not in legs
    assert legs.count(Leg.STOP) <= 1 and legs.count(Leg.TRAILING) <= 1
    if s.phase is Phase.CLOSING:
        assert legs == [Leg.EXIT] and new.phase is Phase.CLOSING
    elif Leg.EXIT in legs:  # the market is already through the stop it would place
        assert not kept_stops and new.phase is Phase.CLOSING
    else:
        assert new.stop_cid in kept or Leg.STOP in legs  # protected, or its stop on the way
        for i in places:
            if i.leg is Leg.STOP:
                assert tr.is_protective(i.stop_price, ev.price, s.side)
        if new.phase is Phase.TRAILING and s.params.trailing_mode == "native":
            assert new.trailing_cid in kept
    outcomes = [c.outcome for c in cmds if isinstance(c, Report)]
    assert len(outcomes) <= (0 if s.reported else 1)


def test_a_trailing_stop_resting_with_its_answer_lost_is_adopted_not_sent_again():
    s, ev = PositionState(
        id="p1", signal_id="s1", wave_id="w1", symbol=SPEC.symbol, side=Side.LONG,
        params=Params(Decimal(2), Decimal(1), Decimal("0.5")), phase=Phase.PROTECTED, epoch=2,
        seq=3, qty=Decimal(1), entry_price=ENTRY, stop_price=Decimal(98), stop_cid="wt-p1-s1-2",
        trailing=tr.Trailing(Decimal(101), Decimal("0.5"))), None
    ev = Reconciled(Decimal(1), ENTRY, (Resting("wt-p1-s1-2", Leg.STOP, Decimal(98)),
                                        Resting("wt-p1-t1-3", Leg.TRAILING)), Decimal(100))
    new, cmds = step(s, ev, SPEC)
    assert new.phase is Phase.TRAILING and new.trailing_cid == "wt-p1-t1-3"
    assert not [c for c in cmds if isinstance(c, (Place, Cancel))]
    assert [c.outcome.value for c in cmds if isinstance(c, Report)] == ["protected"]


def test_closed_while_down_records_the_fill_that_closed_it():
    s = PositionState(
        id="p1", signal_id="s1", wave_id="w1", symbol=SPEC.symbol, side=Side.SHORT,
        params=Params(Decimal(2), Decimal(1), Decimal("0.5")), phase=Phase.TRAILING, epoch=2,
        seq=3, qty=Decimal(1), entry_price=ENTRY, stop_price=Decimal(102), stop_cid="wt-p1-s1-2",
        trailing_cid="wt-p1-t1-3", reported=True)
    ev = replace(Reconciled(Decimal(0), None, (Resting("wt-p1-t1-3", Leg.TRAILING),), Decimal(105)),
                 exit_fill=Decimal("102.03"), exit_cid="wt-p1-s1-2")
    new, cmds = step(s, ev, SPEC)
    assert (new.phase, new.exit_price, new.close_reason) == (Phase.CLOSED, Decimal("102.03"),
                                                            "stop-loss filled while down")
    assert [c.cid for c in cmds if isinstance(c, Cancel)] == ["wt-p1-t1-3"]


def test_a_fill_of_an_older_stop_of_ours_closes_the_position():
    """A replaced stop (or one an older epoch left) can fill before its cancel lands: the venue
    position is gone, so ours is closed and what still rests is taken off."""
    s = PositionState(
        id="p1", signal_id="s1", wave_id="w1", symbol=SPEC.symbol, side=Side.LONG,
        params=Params(Decimal(2), Decimal(1), Decimal("0.5"), trailing_mode="emulated"),
        phase=Phase.TRAILING, epoch=3, seq=12, qty=Decimal(1), entry_price=ENTRY,
        stop_price=Decimal("99.5"), stop_cid="wt-p1-s3-12", reported=True)
    new, cmds = step(s, Filled("wt-p1-s2-7", Decimal("98.9")), SPEC)
    assert (new.phase, new.exit_price) == (Phase.CLOSED, Decimal("98.9"))
    assert [c.cid for c in cmds if isinstance(c, Cancel)] == ["wt-p1-s3-12"]
    assert step(s, Filled("wt-p2-s2-7", Decimal("98.9")), SPEC)[0] is s  # another position's: not ours
    assert step(s, Filled("wt-p1-e3-1", Decimal("98.9")), SPEC)[0] is s  # an entry fill closes nothing
