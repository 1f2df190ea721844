"""The state machine's table and flags: an event outside the phases that hear it changes
nothing; an emergency close is a flag on the state that survives a restart, while the stored
and reported close reason reads as it always did; the modes are enums that take their text."""
from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from core import position_logic as pl
from core.phases import Phase
from core.position_types import (
    Begin, CloseRequested, EntryMode, FailureKind, Filled, Leg, OrderIntent, Params, Place, Placed,
    PlaceFailed, PositionState, Reconciled, Report, Resting, RetryDue, SetParams, Tick,
    TrailingMode,
)
from core.types import MarketSpec, Side
from persistence.models import PositionRow
from persistence.positions import _row_values, state_from_row

SPEC = MarketSpec("X/USDT:USDT", Decimal("0.01"), Decimal("0.001"), Decimal("0.001"), Decimal(0))
P = Params(Decimal(2), Decimal(1), Decimal("0.5"))
STOP = OrderIntent("wt-p-s1-2", Leg.STOP, "sell", Decimal(1), stop_price=Decimal(98))
EVENTS = [Begin(Decimal(100)), Tick(Decimal(101), 5.0), Filled("wt-p-s1-2", Decimal(98)),
          SetParams(callback_pct=Decimal(1)), CloseRequested("operator close"),
          RetryDue(STOP), Reconciled(Decimal(1), Decimal(100), (), Decimal(100)),
          Placed(STOP), PlaceFailed(STOP, FailureKind.REJECTED, "no")]


def state(phase: Phase, **kw) -> PositionState:
    return PositionState("p", "s", "w", SPEC.symbol, Side.LONG, P, phase=phase, seq=3, qty=Decimal(1),
                         entry_price=Decimal(100), last_price=Decimal(100), **kw)


@pytest.mark.parametrize("ev", EVENTS, ids=lambda e: type(e).__name__)
def test_an_event_outside_the_phases_that_hear_it_changes_nothing(ev):
    for phase in Phase:
        if phase not in pl.HEARD_IN[type(ev)]:
            s = state(phase)
            assert pl._step(s, ev, SPEC) == (s, [])
    assert set(pl.HEARD_IN) == set(pl.HANDLERS)


def test_an_emergency_close_is_flagged_and_reads_as_before():
    s = state(Phase.OPEN, pending=replace(STOP, cid="wt-p-s1-4"))  # its first stop is refused
    s, cmds = pl.step(s, PlaceFailed(replace(STOP, cid="wt-p-s1-4"), FailureKind.REJECTED, "refused"), SPEC)
    assert s.phase is Phase.CLOSING and s.emergency
    assert s.close_reason == "emergency: protection failed: refused"
    (exit_,) = [c.intent for c in cmds if isinstance(c, Place)]
    s, cmds = pl.step(s, Placed(exit_, Decimal(99)), SPEC)
    assert s.phase is Phase.EMERGENCY_CLOSED
    assert [c.reason for c in cmds if isinstance(c, Report)] == ["emergency: protection failed: refused"]


def test_the_flag_survives_a_restart_and_the_close_is_sent_again_as_an_emergency():
    closing = replace(state(Phase.CLOSING), emergency=True, close_reason="emergency: protection failed: x")
    row = PositionRow(id="p", signal_id="s", wave_id="w", symbol=SPEC.symbol, side="long", epoch=1,
                      notional=P.notional, **_row_values(closing))
    assert row.close_reason == "emergency: protection failed: x" and row.trailing_mode == "native"
    back = state_from_row(row, P)
    assert back.emergency and back.params.trailing_mode is TrailingMode.NATIVE
    s, cmds = pl.step(replace(back, epoch=2), Reconciled(Decimal(1), Decimal(100),
                                                       (Resting("wt-p-t1-9", Leg.TRAILING),), Decimal(99)), SPEC)
    assert s.phase is Phase.CLOSING and s.emergency and s.close_reason == "emergency: protection failed: x"
    assert [c.intent.leg for c in cmds if isinstance(c, Place)] == [Leg.EXIT]


def test_an_operator_close_is_no_emergency():
    s, _ = pl.step(state(Phase.TRAILING, stop_cid="wt-p-s1-2"), CloseRequested("operator close"), SPEC)
    assert s.phase is Phase.CLOSING and not s.emergency and s.close_reason == "operator close"


def test_modes_take_their_text():
    p = Params(Decimal(2), Decimal(1), Decimal("0.5"), trailing_mode="emulated", entry_mode="stop_first")
    assert p.trailing_mode is TrailingMode.EMULATED and p.entry_mode is EntryMode.STOP_FIRST
    assert p.trailing_mode == "emulated" and f"{p.entry_mode}" == "stop_first"
    with pytest.raises(ValueError):
        Params(Decimal(2), Decimal(1), Decimal("0.5"), trailing_mode="sideways")
