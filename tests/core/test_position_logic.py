"""Example histories of the pure state machine: unknown outcomes, refusals, recovery."""
from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from core.position_logic import step
from core.position_types import (
    Begin, Cancel, FailureKind, Filled, Leg, LookedUp, Lookup, Outcome, Params, Phase, Place, Placed,
    PlaceFailed, PositionState, Reconciled, Report, Resting, RetryDue, RetryLater, SetParams, Tick,
)
from core.types import MarketSpec, Side

SPEC = MarketSpec("X/USDT:USDT", Decimal("0.01"), Decimal("0.1"), Decimal("0.1"), Decimal(5))
P = Params(Decimal(2), Decimal(1), Decimal("0.5"), trailing_mode="native", notional=Decimal(100))


def places(cmds):
    return [c.intent for c in cmds if isinstance(c, Place)]


def opened(side=Side.LONG):
    s = PositionState("p", "s", "w", SPEC.symbol, side, P)
    s, cmds = step(s, Begin(Decimal(10)), SPEC)
    (e,) = places(cmds)
    s, cmds = step(s, Placed(e, Decimal(10), e.qty), SPEC)
    (stop,) = places(cmds)
    s, cmds = step(s, Placed(stop), SPEC)
    (trail,) = places(cmds)
    s, cmds = step(s, Placed(trail), SPEC)
    assert s.phase is Phase.TRAILING and [c.outcome for c in cmds if isinstance(c, Report)] == [Outcome.PROTECTED]
    return s


def test_unknown_outcome_is_looked_up_before_anything_is_resent():
    s = PositionState("p", "s", "w", SPEC.symbol, Side.LONG, P)
    s, cmds = step(s, Begin(Decimal(10)), SPEC)
    (e,) = places(cmds)
    s, cmds = step(s, Placed(e, Decimal(10), e.qty), SPEC)
    (stop,) = places(cmds)
    s, cmds = step(s, PlaceFailed(stop, FailureKind.UNKNOWN, "RequestTimeout"), SPEC)
    assert [type(c) for c in cmds if not hasattr(c, "kind")] == [Lookup] and not places(cmds)
    s2, cmds2 = step(s, LookedUp(stop, True), SPEC)  # it was accepted: adopt it
    assert s2.stop_cid == stop.cid and s2.phase is Phase.PROTECTED
    assert [i.leg for i in places(cmds2)] == [Leg.TRAILING]
    s3, cmds3 = step(s, LookedUp(stop, False), SPEC)  # it was not: retry later, new id
    (retry,) = [c for c in cmds3 if isinstance(c, RetryLater)]
    s3, cmds3 = step(s3, RetryDue(retry.intent), SPEC)
    (again,) = places(cmds3)
    assert again.cid != stop.cid and again.attempt == 2 and again.stop_price == stop.stop_price


def test_a_refused_entry_fails_and_reports_once():
    s = PositionState("p", "s", "w", SPEC.symbol, Side.SHORT, P)
    s, cmds = step(s, Begin(Decimal(10)), SPEC)
    (e,) = places(cmds)
    s, cmds = step(s, PlaceFailed(e, FailureKind.REJECTED, "-2019 Margin is insufficient"), SPEC)
    assert s.phase is Phase.FAILED
    assert [(c.outcome, "-2019" in c.reason) for c in cmds if isinstance(c, Report)] == [(Outcome.FAILED, True)]


def test_too_small_a_size_never_reaches_the_venue():
    s = PositionState("p", "s", "w", SPEC.symbol, Side.LONG, Params(Decimal(2), Decimal(1), Decimal(1), notional=Decimal(1)))
    s, cmds = step(s, Begin(Decimal(10)), SPEC)
    assert s.phase is Phase.FAILED and not places(cmds)


def test_recovery_keeps_the_tightest_resting_stop_and_cancels_the_rest():
    s = opened()
    old_stop = s.stop_cid
    newer = Resting("wt-p-s1-9", Leg.STOP, Decimal("9.90"))  # placed by the old epoch, never recorded
    s = replace(s, epoch=2)
    ev = Reconciled(s.qty, Decimal(10), (Resting(old_stop, Leg.STOP, s.stop_price), newer,
                                         Resting(s.trailing_cid, Leg.TRAILING)), Decimal("10.5"))
    s2, cmds = step(s, ev, SPEC)
    assert s2.stop_cid == newer.cid and s2.stop_price == Decimal("9.90")
    assert [c.cid for c in cmds if isinstance(c, Cancel)] == [old_stop] and not places(cmds)


def test_recovery_replaces_a_missing_stop_or_closes_if_the_market_is_through_it():
    s = opened()
    s2, cmds = step(s, Reconciled(s.qty, Decimal(10), (Resting(s.trailing_cid, Leg.TRAILING),), Decimal("10.2")), SPEC)
    assert [i.leg for i in places(cmds)] == [Leg.STOP] and places(cmds)[0].stop_price == s.stop_price
    s3, cmds = step(s, Reconciled(s.qty, Decimal(10), (), Decimal("9.5")), SPEC)  # below the 9.80 stop
    assert s3.phase is Phase.CLOSING and [i.leg for i in places(cmds)] == [Leg.EXIT]


def test_recovery_of_a_flat_venue_closes_the_position_and_its_leftovers():
    s = opened()
    s2, cmds = step(s, Reconciled(Decimal(0), None, (Resting(s.trailing_cid, Leg.TRAILING),), Decimal(9)), SPEC)
    assert s2.phase is Phase.CLOSED and s2.stop_cid is None
    assert s.trailing_cid in [c.cid for c in cmds if isinstance(c, Cancel)]
    assert not [c for c in cmds if isinstance(c, Report)], "the signal's outcome was already given"


def test_recovery_before_any_order_begins_again():
    s = PositionState("p", "s", "w", SPEC.symbol, Side.LONG, P, epoch=2)
    s2, cmds = step(s, Reconciled(Decimal(0), None, (), Decimal(10)), SPEC)
    assert s2.phase is Phase.ENTERING and [i.leg for i in places(cmds)] == [Leg.ENTRY]
    assert places(cmds)[0].cid.startswith("wt-p-e2-")


def test_recovery_of_an_entry_sent_but_unknown_to_the_venue_never_resends_it():
    s = PositionState("p", "s", "w", SPEC.symbol, Side.LONG, P)
    s, _ = step(s, Begin(Decimal(10)), SPEC)
    s2, cmds = step(replace(s, epoch=2), Reconciled(Decimal(0), None, (), Decimal(10)), SPEC)
    assert s2.phase is Phase.FAILED and not places(cmds)
    assert [c.reason for c in cmds if isinstance(c, Report)] == ["entry not placed before restart"]


def test_a_replaced_stop_that_fires_before_its_cancel_still_closes_the_position():
    s = replace(opened(), params=replace(P, trailing_mode="emulated", replace_min_interval_s=0))
    old = s.stop_cid
    s, cmds = step(s, Tick(Decimal("10.50"), 1.0), SPEC)  # activates: a tighter stop is placed
    (new,) = places(cmds)
    s, cmds = step(s, Placed(new), SPEC)
    assert s.stop_cid == new.cid and Cancel(old) in cmds
    s, cmds = step(s, Filled(old, Decimal("9.79")), SPEC)  # the old one fired meanwhile
    assert s.phase is Phase.CLOSED and s.exit_price == Decimal("9.79")
    assert Cancel(new.cid) in cmds, "its successor is taken off too"


def test_setting_activation_to_zero_is_applied_not_ignored():
    s = PositionState("p", "s", "w", SPEC.symbol, Side.LONG, P)
    s, cmds = step(s, Begin(Decimal(10)), SPEC)
    (e,) = places(cmds)
    s, _ = step(s, Placed(e, Decimal(10), e.qty), SPEC)
    s, _ = step(s, SetParams(activation_pct=Decimal(0)), SPEC)
    assert s.params.activation_pct == 0 and s.trailing.activation == Decimal(10)


def test_a_refused_exit_is_retried_not_abandoned():
    s = PositionState("p", "s", "w", SPEC.symbol, Side.LONG, P)
    s, cmds = step(s, Begin(Decimal(10)), SPEC)
    (e,) = places(cmds)
    s, cmds = step(s, Placed(e, Decimal(10), e.qty), SPEC)
    (stop,) = places(cmds)
    s, cmds = step(s, PlaceFailed(stop, FailureKind.REJECTED, "-1111 invalid"), SPEC)
    (exit_,) = places(cmds)
    assert s.phase is Phase.CLOSING and exit_.leg is Leg.EXIT
    for attempt in range(1, P.max_attempts):
        s, cmds = step(s, PlaceFailed(exit_, FailureKind.REJECTED, "-1111 invalid"), SPEC)
        (retry,) = [c for c in cmds if isinstance(c, RetryLater)]
        s, cmds = step(s, RetryDue(retry.intent), SPEC)
        (exit_,) = places(cmds)
        assert exit_.attempt == attempt + 1
    s, cmds = step(s, PlaceFailed(exit_, FailureKind.REJECTED, "-1111 invalid"), SPEC)
    assert s.phase is Phase.CLOSING and not places(cmds) and s.stop_cid is None  # the supervisor's now
    s, cmds = step(s, Reconciled(s.qty, Decimal(10), (), Decimal(10)), SPEC)  # after its restart
    assert s.phase is Phase.CLOSING and [i.leg for i in places(cmds)] == [Leg.EXIT]


def test_a_native_trailing_whose_activation_is_reached_is_sent_without_one():
    """Binance refuses an activation price on the wrong side of the latest price (-2021); one
    already reached (always so at 0 %) is left to the venue, which arms at its latest price."""
    for activation_pct, price_after_entry, sent in ((Decimal(0), Decimal(10), None),
                                                    (Decimal(1), Decimal("10.2"), None),
                                                    (Decimal(1), Decimal(10), Decimal("10.10"))):
        s = PositionState("p", "s", "w", SPEC.symbol, Side.LONG, replace(P, activation_pct=activation_pct))
        s, cmds = step(s, Begin(Decimal(10)), SPEC)
        (e,) = places(cmds)
        s, cmds = step(s, Placed(e, Decimal(10), e.qty), SPEC)
        (stop,) = places(cmds)
        s, _ = step(s, Tick(price_after_entry, 1.0), SPEC)
        s, cmds = step(s, Placed(stop), SPEC)
        (trail,) = places(cmds)
        assert trail.leg is Leg.TRAILING and trail.activation == sent, (activation_pct, price_after_entry)
