"""The moves every transition of the position state machine is made of: send an order, report
the outcome once, protect at a level, establish the trailing stop, close, record the close.

Each takes a state and gives the next one with the commands it implies (`Step`); none looks at
an event. The transitions in `position_logic`, `position_entry`, `position_trailing`,
`position_reconcile` and `entry_protocol` are written with them.
"""
from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import Any

from core import trailing as tr
from core.client_ids import reissued
from core.phases import Outcome, Phase, closed_phase
from core.position_types import (
    EMERGENCY_PREFIX, Cancel, Command, Leg, OrderIntent, Place, PositionState, Record, Report,
    TrailingMode,
)
from core.types import MarketSpec

Step = tuple[PositionState, list[Command]]


def intent(s: PositionState, leg: Leg, **kw: Any) -> tuple[PositionState, OrderIntent]:
    """A new order of this position, under the next client id."""
    s = replace(s, seq=s.seq + 1)
    return s, OrderIntent(cid=s.cid(leg), leg=leg, **kw)


def renew(s: PositionState, old: OrderIntent) -> OrderIntent:
    """The same order with a fresh client id: used only once the old one is known not placed."""
    return replace(old, cid=reissued(old.cid, s.seq + 1), attempt=old.attempt + 1)


def send(s: PositionState, order: OrderIntent) -> Step:
    if order.attempt > 1:
        s = replace(s, seq=s.seq + 1)
    order = replace(order, price=s.last_price)
    return replace(s, pending=order), [Place(order)]


def resend(s: PositionState, order: OrderIntent) -> Step:
    """A retry: the price has moved since the first attempt, so a stop is judged again. One
    no longer on the loss side is never sent: a replacement is dropped (the resting stop still
    protects; the next tick computes a fresh level), a first stop becomes a market close."""
    level = order.stop_price
    if order.leg is Leg.STOP and level is not None and s.last_price is not None and not tr.is_protective(
            level, s.last_price, s.side):
        s = replace(s, pending=None)
        if s.stop_cid is not None:
            return s, [Record("replacement_dropped", {"cid": order.cid, "stop": str(level),
                                                      "price": str(s.last_price)})]
        return protect(s, level)
    return send(s, order)


def report(s: PositionState, outcome: Outcome, reason: str) -> Step:
    """The signal's one outcome: reported once, whatever happens after."""
    if s.reported:
        return s, []
    return replace(s, reported=True), [Report(outcome, reason)]


def protect(s: PositionState, level: Decimal, emergency: bool = True) -> Step:
    """Place a stop at `level`, or close at market if the price is already through it."""
    if s.last_price is not None and not tr.is_protective(level, s.last_price, s.side):
        return close(s, f"market {s.last_price} already through stop {level}", emergency=emergency)
    s, order = intent(s, Leg.STOP, side=s.side.exit_order_side, qty=s.qty, stop_price=level)
    return send(s, order)


def initial_stop(s: PositionState, spec: MarketSpec) -> Decimal:
    """The stop-loss level of an entered position (its entry price known)."""
    assert s.entry_price is not None, "an entered position knows its entry price"
    return tr.initial_stop(s.entry_price, s.side, s.params.stop_loss_pct, spec)


def begin_trailing(s: PositionState) -> Step:
    """The stop-loss rests: establish the trailing stop (native: place it; emulated: ours)."""
    if s.params.trailing_mode is not TrailingMode.NATIVE:
        return trailing_established(s)
    t = s.trailing
    assert t is not None, "an entered position has its trailing state"
    # An activation the price has already reached (always so at 0 %) is sent as none: the
    # venue then arms the trailing stop at its latest price, which is what "reached" means;
    # Binance refuses an activation price on the wrong side of the latest price (-2021).
    reached = s.last_price is not None and t.reached(s.last_price, s.side)
    s, order = intent(s, Leg.TRAILING, side=s.side.exit_order_side, qty=s.qty,
                      activation=None if reached else t.activation, callback_pct=t.callback_pct)
    return send(s, order)


def trailing_established(s: PositionState) -> Step:
    s = replace(s, phase=Phase.TRAILING, pending=None)
    s, cmds = report(s, Outcome.PROTECTED, "stop-loss resting, trailing stop established")
    return s, [Record("trailing_established", {"mode": s.params.trailing_mode.value}), *cmds]


def close(s: PositionState, reason: str, emergency: bool = False) -> Step:
    """Close at market; before the entry there is nothing to close. While the entry is in
    flight the reason is kept, and the close follows its fill (`entered`)."""
    if s.phase.final or s.phase is Phase.CLOSING:
        return s, []
    if s.phase is Phase.NEW:
        s = replace(s, phase=Phase.FAILED, close_reason=reason)
        return report(s, Outcome.FAILED, f"closed before entry: {reason}")
    if s.phase is Phase.ENTERING:
        return replace(s, close_reason=reason), []
    s = replace(s, phase=Phase.CLOSING, emergency=emergency,
                close_reason=(EMERGENCY_PREFIX if emergency else "") + reason)
    s, order = intent(s, Leg.EXIT, side=s.side.exit_order_side, qty=s.qty)
    s, cmds = send(s, order)
    return s, [Record("closing", {"reason": s.close_reason}), *cmds]


def closed(s: PositionState, price: Decimal | None, reason: str) -> Step:
    """The position is flat: whatever of ours still rests is cancelled."""
    phase = closed_phase(s.emergency, s.reported)
    cancels = [Cancel(c) for c in s.protective_cids]
    s = replace(s, phase=phase, exit_price=price, close_reason=s.close_reason or reason,
                stop_cid=None, trailing_cid=None, pending=None)
    s, cmds = report(s, Outcome.EMERGENCY_CLOSED, s.close_reason or reason)
    return s, [*cancels, Record("closed", {"price": str(price), "reason": s.close_reason}), *cmds]
