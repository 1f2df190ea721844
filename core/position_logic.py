"""The position state machine: `step(state, event, spec) -> (state, commands)`.

No I/O and no clock: time arrives inside events. The actor shell executes the commands and
feeds their results back as events; that split is what lets hypothesis drive the logic
through thousands of histories without threads.

The spec, read top down: `HEARD_IN` says in which phases each event can change anything (in
any other it is ignored), `HANDLERS` which transition it takes. The entry protocols'
transitions (`entry_protocol`) come before this table and their ratchet after it; reconciliation
after a restart is `position_reconcile`, the trailing stop at work `position_trailing`, and the
moves every transition is made of `position_steps`.

Phases: NEW → ENTERING → OPEN (entry filled) → PROTECTED (stop-loss resting) → TRAILING
(trailing stop established: the signal's outcome is PROTECTED) → CLOSING → CLOSED; or FAILED
(never opened), EMERGENCY_CLOSED (opened but could not be protected), WITHDRAWING (a stop
placed ahead of an entry that never filled is being cancelled).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable

from core import entry_protocol as ep
from core.client_ids import leg_of, position_id_of
from core.phases import LIVE, Outcome, Phase
from core.position_entry import begin, entered
from core.position_reconcile import reconcile
from core.position_steps import (
    Step, begin_trailing, close, closed, renew, report, resend, trailing_established,
)
from core.position_trailing import set_params, tick
from core.position_types import (
    Begin, Cancel, CancelOutcome, CloseRequested, Command, Event, FailureKind, Filled, Leg, Lookup,
    LookedUp, OrderIntent, Placed, PlaceFailed, PositionState, Reconciled, Record, RetryDue,
    RetryLater, SetParams, Tick, TrailingMode,
)
from core.types import MarketSpec

Handler = Callable[[PositionState, Any, MarketSpec], Step]
ALL: frozenset[Phase] = frozenset(Phase)

# In which phases each event can change anything. An order's answer is heard even once the
# position is final (an order it no longer wants may have reached the venue: it is cancelled);
# a cancel's outcome concerns only the entry protocols (`entry_protocol.before`).
HEARD_IN: dict[type, frozenset[Phase]] = {
    Begin: frozenset({Phase.NEW}),
    Placed: ALL, LookedUp: ALL, PlaceFailed: ALL,
    RetryDue: LIVE, Tick: LIVE, SetParams: LIVE, CloseRequested: LIVE, Reconciled: LIVE, Filled: LIVE,
    CancelOutcome: frozenset(),
}


def step(s: PositionState, ev: Event, spec: MarketSpec) -> Step:
    old, s = s, ep.note_gone(s, ev)
    if (done := ep.before(s, ev, spec, _GENERIC)) is None:
        done = _step(s, ev, spec)
    return ep.after(old, *done, ev, spec)


def _step(s: PositionState, ev: Event, spec: MarketSpec) -> Step:
    handler = HANDLERS.get(type(ev))
    if handler is None:
        raise TypeError(f"unknown event {ev!r}")
    if s.phase not in HEARD_IN[type(ev)]:
        return s, []
    return handler(s, ev, spec)


_GENERIC = ep.Generic(step=_step, reconcile=reconcile)


# ---- order answers ----------------------------------------------------------------------


def _placed(s: PositionState, ev: Placed | LookedUp, spec: MarketSpec) -> Step:
    """An order of ours reached the venue. One we no longer want is taken off again."""
    order = ev.intent
    if (s.pending is not None and order.cid != s.pending.cid) or s.phase.final:
        return s, [Cancel(order.cid)] if order.leg in (Leg.STOP, Leg.TRAILING) else []
    s = replace(s, pending=None)
    match order.leg:
        case Leg.ENTRY if ev.filled_qty is not None and ev.filled_qty <= 0:
            return _refused(s, order, "entry ended with nothing filled")
        case Leg.ENTRY:
            price = ev.avg_price or s.last_price
            assert price is not None, "an entry is sent at a known price"
            return entered(s, price, ev.filled_qty or order.qty, spec)
        case Leg.STOP:
            return _stop_placed(s, order)
        case Leg.TRAILING:
            old = s.trailing_cid
            s, cmds = trailing_established(replace(s, trailing_cid=order.cid))
            return s, cmds + ([Cancel(old)] if old else [])
    return closed(s, ev.avg_price or s.last_price, s.close_reason or "closed")  # the exit


def _stop_placed(s: PositionState, order: OrderIntent) -> Step:
    """A stop rests. It replaces the one before (place-new-then-cancel-old: never a window
    without a resting stop); the first one protects the position and the trailing stop follows."""
    old = s.stop_cid
    s = replace(s, stop_cid=order.cid, stop_price=order.stop_price)
    sent_at = order.price if order.price is not None else s.last_price
    cmds: list[Command] = [Record("stop_placed", {"cid": order.cid, "stop": str(order.stop_price),
                                                  "price": str(sent_at)})]
    if old:
        cmds.append(Cancel(old))
    if s.phase is not Phase.OPEN:
        return s, cmds
    s = replace(s, phase=Phase.PROTECTED)
    if s.params.trailing_mode is TrailingMode.NATIVE and s.trailing_cid is not None:
        # re-protected after a restart: the trailing stop still rests, armed or not, and a new
        # one would start over from today's price (a looser trigger)
        s, more = trailing_established(s)
    else:
        s, more = begin_trailing(s)
    return s, cmds + more


def _looked_up(s: PositionState, ev: LookedUp, spec: MarketSpec) -> Step:
    if ev.found:
        return _placed(s, ev, spec)
    return _not_placed(s, ev.intent, "not found at venue after unknown outcome")


def _place_failed(s: PositionState, ev: PlaceFailed, spec: MarketSpec) -> Step:
    if s.pending is None or ev.intent.cid != s.pending.cid:
        return s, []
    if ev.kind is FailureKind.UNKNOWN:
        return s, [Record("order_outcome_unknown", {"cid": ev.intent.cid, "reason": ev.reason}),
                   Lookup(ev.intent)]
    return _refused(s, ev.intent, ev.reason)


def _backoff(s: PositionState, order: OrderIntent) -> float:
    delay: float = s.params.retry_backoff_s * (2 ** (order.attempt - 1))
    return delay


def _not_placed(s: PositionState, order: OrderIntent, reason: str) -> Step:
    """An order known not to have reached the venue: retry with backoff while attempts last."""
    if s.pending is None or order.cid != s.pending.cid:
        return s, []
    if order.leg is not Leg.ENTRY and order.attempt < s.params.max_attempts:
        delay = _backoff(s, order)
        return s, [Record("retrying", {"cid": order.cid, "in_s": delay}), RetryLater(order, delay)]
    return _refused(s, order, f"{reason} (attempt {order.attempt})")


def _retry_due(s: PositionState, ev: RetryDue, spec: MarketSpec) -> Step:
    if s.pending != ev.intent:
        return s, []  # superseded while we waited
    return resend(s, renew(s, ev.intent))


# ---- refusals, by leg -------------------------------------------------------------------


def _refused(s: PositionState, order: OrderIntent, reason: str) -> Step:
    s = replace(s, pending=None)
    if order.leg is Leg.EXIT and "reduce" in reason.lower():
        # nothing left to reduce: a stop got there first, and the position is closed
        return closed(s, s.last_price, s.close_reason or "closed")
    rec = Record("order_refused", {"cid": order.cid, "leg": order.leg.value, "reason": reason})
    s, cmds = REFUSED[order.leg](s, order, reason)
    return s, [rec, *cmds]


def _entry_refused(s: PositionState, order: OrderIntent, reason: str) -> Step:
    return report(replace(s, phase=Phase.FAILED), Outcome.FAILED, f"entry refused: {reason}")


def _stop_refused(s: PositionState, order: OrderIntent, reason: str) -> Step:
    if s.stop_cid is None:  # nothing protects the position: close it
        return close(s, f"protection failed: {reason}", emergency=True)
    if s.phase is Phase.OPEN:  # our first stop refused; an adopted one rests
        return begin_trailing(replace(s, phase=Phase.PROTECTED))
    return s, []  # a refused replacement: the old stop still rests


def _trailing_refused(s: PositionState, order: OrderIntent, reason: str) -> Step:
    """The venue will not trail it: we do (the stop-loss is moved behind the price)."""
    s = replace(s, params=replace(s.params, trailing_mode=TrailingMode.EMULATED))
    s, cmds = trailing_established(s)
    return s, [Record("trailing_emulated", {"reason": reason}), *cmds]


def _exit_refused(s: PositionState, order: OrderIntent, reason: str) -> Step:
    if order.attempt < s.params.max_attempts:  # a close must not give up quietly
        return replace(s, pending=order), [RetryLater(order, _backoff(s, order))]
    # Out of attempts: the position stays CLOSING; without a resting stop it counts as
    # unprotected, so the supervisor restarts it past protect_s and escalates after that.
    return s, [Record("exit_refused", {"reason": reason})]


REFUSED: dict[Leg, Callable[[PositionState, OrderIntent, str], Step]] = {
    Leg.ENTRY: _entry_refused, Leg.STOP: _stop_refused, Leg.TRAILING: _trailing_refused,
    Leg.EXIT: _exit_refused,
}


# ---- the market and the operator --------------------------------------------------------


def _filled(s: PositionState, ev: Filled, spec: MarketSpec) -> Step:
    """Any stop of ours filling closes the position, not only the recorded one: a replaced
    stop can fill before its cancel lands, and one left by an older epoch can rest until
    reconciliation cancels it."""
    stale_stop = position_id_of(ev.cid) == s.id and leg_of(ev.cid) in (Leg.STOP, Leg.TRAILING)
    if ev.cid not in s.protective_cids and not (s.pending and s.pending.cid == ev.cid) and not stale_stop:
        return s, []
    return closed(s, ev.price, f"{'trailing stop' if ev.cid == s.trailing_cid else 'stop-loss'} triggered")


def _begin(s: PositionState, ev: Begin, spec: MarketSpec) -> Step:
    return begin(s, ev, spec)


def _close_requested(s: PositionState, ev: CloseRequested, spec: MarketSpec) -> Step:
    return close(s, ev.reason)


def _ignored(s: PositionState, ev: Event, spec: MarketSpec) -> Step:
    return s, []


# ---- the transition each event takes ----------------------------------------------------

HANDLERS: dict[type, Handler] = {
    Begin: _begin, Placed: _placed, LookedUp: _looked_up, PlaceFailed: _place_failed,
    RetryDue: _retry_due, Tick: tick, Filled: _filled, SetParams: set_params,
    CloseRequested: _close_requested, Reconciled: reconcile, CancelOutcome: _ignored,
}
