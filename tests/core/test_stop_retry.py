"""A stop retried after a failed attempt is judged against the price at the retry, and a stop's
record carries the price it was sent at (what invariant 3 checks)."""
from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from core.position_logic import step
from core.position_types import (
    Begin, FailureKind, Leg, LookedUp, Phase, Placed, PlaceFailed, PositionState, Record,
    RetryDue, RetryLater, Tick,
)
from core.types import Side
from tests.core.test_position_logic import P, SPEC, places

EMU = replace(P, trailing_mode="emulated", replace_min_interval_s=0)


def _failed_then_retry_later(s, intent):
    s, _ = step(s, PlaceFailed(intent, FailureKind.UNKNOWN, "502"), SPEC)
    s, cmds = step(s, LookedUp(intent, False), SPEC)
    (retry,) = [c for c in cmds if isinstance(c, RetryLater)]
    return s, retry.intent


def _entered():
    """Long at 10, emulated trailing; returns the state and its first stop, in flight."""
    s = PositionState("p", "s", "w", SPEC.symbol, Side.LONG, EMU)
    s, cmds = step(s, Begin(Decimal(10)), SPEC)
    (e,) = places(cmds)
    s, cmds = step(s, Placed(e, Decimal(10), e.qty), SPEC)
    (stop,) = places(cmds)
    return s, stop


def _trailing_emulated():
    s, stop = _entered()
    s, _ = step(s, Placed(stop), SPEC)
    assert s.phase is Phase.TRAILING
    return s


def test_a_replacement_whose_price_has_passed_is_dropped_not_sent():
    s = _trailing_emulated()
    s, cmds = step(s, Tick(Decimal("10.5"), 1.0), SPEC)  # armed: the stop trails to ~10.44
    (repl,) = places(cmds)
    assert repl.leg is Leg.STOP and repl.price == Decimal("10.5")
    s, pending = _failed_then_retry_later(s, repl)
    old_stop = s.stop_cid
    s, _ = step(s, Tick(Decimal("10.40"), 2.0), SPEC)  # below the replacement's level
    s, cmds = step(s, RetryDue(pending), SPEC)
    assert not places(cmds), f"stop sent through the price: {places(cmds)}"
    assert s.stop_cid == old_stop and s.pending is None and s.phase is Phase.TRAILING
    s, cmds = step(s, Tick(Decimal("10.6"), 3.0), SPEC)  # a new best: a fresh replacement
    (fresh,) = places(cmds)
    assert fresh.stop_price < Decimal("10.6")


def test_a_first_stop_whose_price_has_passed_closes_at_market():
    s, stop = _entered()
    s, pending = _failed_then_retry_later(s, stop)
    s, _ = step(s, Tick(Decimal("9.7"), 1.0), SPEC)  # through the 2 % stop at 9.8
    s, cmds = step(s, RetryDue(pending), SPEC)
    assert [i.leg for i in places(cmds)] == [Leg.EXIT] and s.phase is Phase.CLOSING


def test_the_stop_record_carries_the_price_it_was_sent_at():
    s = _trailing_emulated()
    s, cmds = step(s, Tick(Decimal("10.5"), 1.0), SPEC)
    (repl,) = places(cmds)
    s, _ = step(s, Tick(Decimal("10.30"), 2.0), SPEC)  # while the answer is on its way
    s, cmds = step(s, Placed(repl), SPEC)
    (rec,) = [c for c in cmds if isinstance(c, Record) and c.kind == "stop_placed"]
    assert rec.data["price"] == "10.5"
