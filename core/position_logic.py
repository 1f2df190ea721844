"""The position state machine: `step(state, event, spec) -> (state, commands)`.

No I/O and no clock: time arrives inside events. The actor shell executes the commands and
feeds their results back as events; that split is what lets hypothesis drive the logic
through thousands of histories without threads.
"""
from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from core import entry_protocol as ep
from core import trailing as tr
from core.position_types import (
    Begin, CloseRequested, Command, Event, FailureKind, Filled, Leg, LookedUp, OrderIntent,
    Phase, Place, Placed, PlaceFailed, PositionState, Cancel, Lookup, ReadTrailing, Reconciled, Record, Resting,
    Report, Outcome, RetryDue, RetryLater, SetParams, Tick, leg_of, position_id_of,
)
from core.client_ids import reissued
from core.types import MarketSpec

Step = tuple[PositionState, list[Command]]


def step(s: PositionState, ev: Event, spec: MarketSpec) -> Step:
    old, s = s, ep.note_gone(s, ev)
    if (done := ep.before(s, ev, spec)) is None:
        done = _step(s, ev, spec)
    return ep.after(old, *done, ev, spec)


def _step(s: PositionState, ev: Event, spec: MarketSpec) -> Step:
    if s.phase.final and not isinstance(ev, (Filled, PlaceFailed, Placed, LookedUp)):
        return s, []
    match ev:
        case Begin():
            return _begin(s, ev, spec)
        case Placed():
            return _placed(s, ev.intent, ev.avg_price, ev.filled_qty, spec)
        case PlaceFailed():
            return _place_failed(s, ev, spec)
        case LookedUp():
            if ev.found:
                return _placed(s, ev.intent, ev.avg_price, ev.filled_qty, spec)
            return _not_placed(s, ev.intent, "not found at venue after unknown outcome", spec)
        case RetryDue():
            if s.pending != ev.intent:
                return s, []  # superseded while we waited
            return _resend(s, _renew(s, ev.intent))
        case Tick():
            return _tick(s, ev, spec)
        case Filled():
            return _filled(s, ev)
        case SetParams():
            return _set_params(s, ev, spec)
        case CloseRequested():
            return _close(s, ev.reason)
        case Reconciled():
            return _reconcile(s, ev, spec)
    raise TypeError(f"unknown event {ev!r}")


# ---- helpers ----------------------------------------------------------------------------


def _intent(s: PositionState, leg: Leg, **kw) -> tuple[PositionState, OrderIntent]:
    s = replace(s, seq=s.seq + 1)
    return s, OrderIntent(cid=s.cid(leg), leg=leg, **kw)


def _renew(s: PositionState, old: OrderIntent) -> OrderIntent:
    """The same order with a fresh client id: used only once the old one is known not placed."""
    return replace(old, cid=reissued(old.cid, s.seq + 1), attempt=old.attempt + 1)


def _send(s: PositionState, intent: OrderIntent) -> Step:
    if intent.attempt > 1:
        s = replace(s, seq=s.seq + 1)
    intent = replace(intent, price=s.last_price)
    return replace(s, pending=intent), [Place(intent)]


def _resend(s: PositionState, intent: OrderIntent) -> Step:
    """A retry: the price has moved since the first attempt, so a stop is judged again. One
    no longer on the loss side is never sent: a replacement is dropped (the resting stop still
    protects; the next tick computes a fresh level), a first stop becomes a market close."""
    if intent.leg is Leg.STOP and s.last_price is not None and not tr.is_protective(
            intent.stop_price, s.last_price, s.side):
        s = replace(s, pending=None)
        if s.stop_cid is not None:
            return s, [Record("replacement_dropped", {"cid": intent.cid, "stop": str(intent.stop_price),
                                                      "price": str(s.last_price)})]
        return _protect(s, intent.stop_price)
    return _send(s, intent)


def _report(s: PositionState, outcome: Outcome, reason: str) -> tuple[PositionState, list[Command]]:
    if s.reported:
        return s, []
    return replace(s, reported=True), [Report(outcome, reason)]


def _stop_intent(s: PositionState, level: Decimal) -> tuple[PositionState, OrderIntent]:
    return _intent(s, Leg.STOP, side=s.side.exit_order_side, qty=s.qty, stop_price=level)


def _protect(s: PositionState, level: Decimal, emergency: bool = True) -> Step:
    """Place a stop at `level`, or close at market if the price is already through it."""
    if s.last_price is not None and not tr.is_protective(level, s.last_price, s.side):
        return _close(s, f"market {s.last_price} already through stop {level}", emergency=emergency)
    s, intent = _stop_intent(s, level)
    return _send(s, intent)


def _begin_trailing(s: PositionState) -> Step:
    if s.params.trailing_mode == "native":
        t = s.trailing
        # An activation the price has already reached (always so at 0 %) is sent as none: the
        # venue then arms the trailing stop at its latest price, which is what "reached" means;
        # Binance refuses an activation price on the wrong side of the latest price (-2021).
        reached = s.last_price is not None and t.reached(s.last_price, s.side)
        s, intent = _intent(s, Leg.TRAILING, side=s.side.exit_order_side, qty=s.qty,
                            activation=None if reached else t.activation, callback_pct=t.callback_pct)
        return _send(s, intent)
    return _trailing_established(s)


def _trailing_established(s: PositionState) -> Step:
    s = replace(s, phase=Phase.TRAILING, pending=None)
    s, cmds = _report(s, Outcome.PROTECTED, "stop-loss resting, trailing stop established")
    return s, [Record("trailing_established", {"mode": s.params.trailing_mode}), *cmds]


# ---- transitions ------------------------------------------------------------------------


def _begin(s: PositionState, ev: Begin, spec: MarketSpec) -> Step:
    if s.phase is not Phase.NEW:
        return s, []
    qty = spec.round_qty(s.params.notional / ev.price)
    if qty < spec.min_qty or qty * ev.price < spec.min_notional:
        s = replace(s, phase=Phase.FAILED, last_price=ev.price)
        reason = (f"size {qty} at {ev.price} is below the venue minimum "
                  f"(min qty {spec.min_qty}, min notional {spec.min_notional})")
        s, cmds = _report(s, Outcome.FAILED, reason)
        return s, [Record("entry_refused", {"reason": reason}), *cmds]
    if (reason := _liquidates_first(s, ev.price, spec)) is not None:
        s = replace(s, phase=Phase.FAILED, last_price=ev.price)
        s, cmds = _report(s, Outcome.FAILED, reason)
        return s, [Record("entry_refused", {"reason": reason}), *cmds]
    return ep.begin(s, qty, ev.price, spec)


def _liquidates_first(s: PositionState, price: Decimal, spec: MarketSpec) -> str | None:
    """Why an entry at `price` must not be made: its stop would lie beyond liquidation."""
    p = s.params
    if p.leverage is None:
        return None
    stop = tr.initial_stop(price, s.side, p.stop_loss_pct, spec)
    liq = tr.liquidation_estimate(price, s.side, p.leverage, p.maint_margin_pct)
    if not tr.beyond_liquidation(stop, liq, s.side):
        return None
    return (f"stop {stop} lies beyond the estimated liquidation price {spec.nearest_price(liq)} "
            f"(leverage {p.leverage}x, maintenance margin {p.maint_margin_pct}%): lower exchange.leverage "
            f"or tighten protection.stop_loss_pct")


def _placed(s: PositionState, intent: OrderIntent, price: Decimal | None,
            filled: Decimal | None, spec: MarketSpec) -> Step:
    stale = (s.pending is not None and intent.cid != s.pending.cid) or s.phase.final
    if stale:  # an order we no longer want reached the venue: take it off again
        return s, [Cancel(intent.cid)] if intent.leg in (Leg.STOP, Leg.TRAILING) else []
    s = replace(s, pending=None)
    match intent.leg:
        case Leg.ENTRY if filled is not None and filled <= 0:
            return _refused(s, intent, "entry ended with nothing filled")
        case Leg.ENTRY:
            return _entered(s, price or s.last_price, filled or intent.qty, spec)
        case Leg.STOP:
            old = s.stop_cid
            s = replace(s, stop_cid=intent.cid, stop_price=intent.stop_price)
            sent_at = intent.price if intent.price is not None else s.last_price
            cmds: list[Command] = [Record("stop_placed", {"cid": intent.cid, "stop": str(intent.stop_price),
                                                          "price": str(sent_at)})]
            if old:  # place-new-then-cancel-old: never a window without a resting stop
                cmds.append(Cancel(old))
            if s.phase is Phase.OPEN:
                s = replace(s, phase=Phase.PROTECTED)
                if s.params.trailing_mode == "native" and s.trailing_cid is not None:
                    # re-protected after a restart: the trailing stop still rests, armed or not,
                    # and a new one would start over from today's price (a looser trigger)
                    s, more = _trailing_established(s)
                else:
                    s, more = _begin_trailing(s)
                cmds += more
            return s, cmds
        case Leg.TRAILING:
            old = s.trailing_cid
            s = replace(s, trailing_cid=intent.cid)
            s, cmds = _trailing_established(s)
            return s, cmds + ([Cancel(old)] if old else [])
        case Leg.EXIT:
            return _closed(s, price or s.last_price, s.close_reason or "closed")
    return s, []


def _entered(s: PositionState, price: Decimal, qty: Decimal, spec: MarketSpec) -> Step:
    p = s.params
    s = replace(
        s, phase=Phase.OPEN, entry_price=price, qty=qty, last_price=s.last_price or price,
        trailing=tr.Trailing(tr.activation_price(price, s.side, p.activation_pct, spec), p.callback_pct),
    )
    if s.close_reason:  # a close was asked for while the entry was in flight
        return _close(s, s.close_reason)
    s2, cmds = ep.protect_after_fill(s, price, spec)
    return s2, [Record("entered", {"price": str(price), "qty": str(qty)}), *cmds]


def _place_failed(s: PositionState, ev: PlaceFailed, spec: MarketSpec) -> Step:
    if s.pending is None or ev.intent.cid != s.pending.cid:
        return s, []
    if ev.kind is FailureKind.UNKNOWN:
        return s, [Record("order_outcome_unknown", {"cid": ev.intent.cid, "reason": ev.reason}),
                   Lookup(ev.intent)]
    return _refused(s, ev.intent, ev.reason)


def _not_placed(s: PositionState, intent: OrderIntent, reason: str, spec: MarketSpec) -> Step:
    """An order known not to have reached the venue: retry with backoff while attempts last."""
    if s.pending is None or intent.cid != s.pending.cid:
        return s, []
    if intent.leg is not Leg.ENTRY and intent.attempt < s.params.max_attempts:
        delay = s.params.retry_backoff_s * (2 ** (intent.attempt - 1))
        return s, [Record("retrying", {"cid": intent.cid, "in_s": delay}), RetryLater(intent, delay)]
    return _refused(s, intent, f"{reason} (attempt {intent.attempt})")


def _refused(s: PositionState, intent: OrderIntent, reason: str) -> Step:
    s = replace(s, pending=None)
    rec = Record("order_refused", {"cid": intent.cid, "leg": intent.leg.value, "reason": reason})
    match intent.leg:
        case Leg.ENTRY:
            s = replace(s, phase=Phase.FAILED)
            s, cmds = _report(s, Outcome.FAILED, f"entry refused: {reason}")
            return s, [rec, *cmds]
        case Leg.STOP if s.stop_cid is None:
            s, cmds = _close(s, f"protection failed: {reason}", emergency=True)
            return s, [rec, *cmds]
        case Leg.STOP if s.phase is Phase.OPEN:  # our first stop refused; an adopted one rests
            s = replace(s, phase=Phase.PROTECTED)
            s, cmds = _begin_trailing(s)
            return s, [rec, *cmds]
        case Leg.STOP:
            return s, [rec]  # a refused replacement: the old stop still rests
        case Leg.TRAILING:
            s = replace(s, params=replace(s.params, trailing_mode="emulated"))
            s, cmds = _trailing_established(s)
            return s, [rec, Record("trailing_emulated", {"reason": reason}), *cmds]
        case Leg.EXIT:
            if "reduce" in reason.lower():  # nothing left to reduce: a stop got there first
                return _closed(s, s.last_price, s.close_reason or "closed")
            if intent.attempt < s.params.max_attempts:  # a close must not give up quietly
                delay = s.params.retry_backoff_s * (2 ** (intent.attempt - 1))
                return replace(s, pending=intent), [rec, RetryLater(intent, delay)]
            # Out of attempts: the position stays CLOSING; without a resting stop it counts as
            # unprotected, so the supervisor restarts it past protect_s and escalates after that.
            return s, [rec, Record("exit_refused", {"reason": reason})]
    return s, [rec]


def _tick(s: PositionState, ev: Tick, spec: MarketSpec) -> Step:
    s = replace(s, last_price=ev.price)
    if s.trailing is None or s.phase not in (Phase.OPEN, Phase.PROTECTED, Phase.TRAILING):
        return s, []
    t = s.trailing.on_price(ev.price, s.side, spec)
    if t is not s.trailing:
        s = replace(s, trailing=t)
    if (s.params.trailing_mode == "native" and s.phase is Phase.TRAILING and s.pending is None
            and t.activated and s.params.callback_pct < t.callback_pct
            and ev.now - s.last_replace_at >= s.params.replace_min_interval_s):
        probe = _retrail(s, spec)[1]  # would it pass by our view? then ask the venue's
        return (replace(s, last_replace_at=ev.now), [ReadTrailing()]) if probe else (s, [])
    if (s.phase is not Phase.TRAILING or s.params.trailing_mode != "emulated" or t.level is None
            or s.pending is not None or not tr.is_tighter(t.level, s.stop_price, s.side)
            or ev.now - s.last_replace_at < s.params.replace_min_interval_s):
        return s, []
    s = replace(s, last_replace_at=ev.now)
    return _protect(s, t.level, emergency=False)


def _filled(s: PositionState, ev: Filled) -> Step:
    """Any stop of ours filling closes the position, not only the recorded one: a replaced
    stop can fill before its cancel lands, and one left by an older epoch can rest until
    reconciliation cancels it."""
    stale_stop = position_id_of(ev.cid) == s.id and leg_of(ev.cid) in (Leg.STOP, Leg.TRAILING)
    if ev.cid not in s.protective_cids and not (s.pending and s.pending.cid == ev.cid) and not stale_stop:
        return s, []
    if s.phase.final:
        return s, []
    return _closed(s, ev.price, f"{'trailing stop' if ev.cid == s.trailing_cid else 'stop-loss'} triggered")


def _set_params(s: PositionState, ev: SetParams, spec: MarketSpec) -> Step:
    changes = {k: v for k, v in (("activation_pct", ev.activation_pct), ("callback_pct", ev.callback_pct),
                                 ("stop_loss_pct", ev.stop_loss_pct)) if v is not None}
    p = replace(s.params, **changes)
    s = replace(s, params=p)
    cmds: list[Command] = [Record("params_set", {k: str(v) for k, v in changes.items()})] if changes else []
    native = p.trailing_mode == "native"
    if s.trailing is not None and not native:
        # emulated: the level is ours and ratchets (`Trailing.on_price` only ever tightens it)
        act = s.trailing.activation if s.trailing.activated or s.entry_price is None else \
            tr.activation_price(s.entry_price, s.side, p.activation_pct, spec)
        s = replace(s, trailing=replace(s.trailing, callback_pct=p.callback_pct, activation=act))
    elif s.trailing is not None and s.trailing_cid is None and not s.trailing.activated and s.entry_price:
        # native, no trailing order yet: the one still to be placed takes the new parameters
        s = replace(s, trailing=replace(s.trailing, callback_pct=p.callback_pct, activation=tr.activation_price(
            s.entry_price, s.side, p.activation_pct, spec)))
    if s.phase is not Phase.TRAILING or s.pending is not None:
        return s, cmds
    if ev.stop_loss_pct is not None:
        level = tr.initial_stop(s.entry_price, s.side, p.stop_loss_pct, spec)
        if tr.is_tighter(level, s.stop_price, s.side):
            s, more = _protect(s, level, emergency=False)
            return s, cmds + more
    if native and s.trailing_cid is not None and (ev.venue is not None or changes.keys() - {"stop_loss_pct"}):
        if ev.venue is None:  # the shell could not read the venue's order: keep it
            return s, cmds + [Record("trailing_kept", {"reason": "the venue's trailing order could not be read"})]
        s, more = _retrail(_with_venue(s, ev.venue, spec), spec)
        return s, cmds + more
    return s, cmds


def _with_venue(s: PositionState, v, spec: MarketSpec) -> PositionState:
    """Our trailing state corrected by the venue's: armed if it is, its best if further on."""
    t = s.trailing
    if t is None:
        return s
    if v.callback_pct is not None:
        t = replace(t, callback_pct=v.callback_pct)
    if v.armed:
        best = v.best if t.best is None or v.best is None else tr.better_price(t.best, v.best, s.side)
        if best is not None:
            level = tr.tighter(t.level, tr.trail_level(best, s.side, t.callback_pct, spec), s.side)
            t = replace(t, activated=True, best=best, level=level)
    return replace(s, trailing=t)


def _trigger(best: Decimal, side, callback_pct: Decimal) -> Decimal:
    """Where an armed native trailing stop fires: best × (1 ∓ callback%), as the venue computes it."""
    return best * (1 - side.sign * callback_pct / 100)


def _retrail(s: PositionState, spec: MarketSpec) -> Step:
    """Re-place the venue's trailing stop with the current parameters, only where the new order
    can never fire later than the resting one would (the ratchet survives a parameter change).

    Unarmed, the resting order protects nothing yet: it is replaced by one with the new
    activation and callback (armed at once if the price is already past that activation). Armed,
    it is kept unless the new callback is tighter *and* a new order armed at today's price fires
    no later than the old one from its best so far; a tighter callback that does not pass now
    is tried again on later ticks (a new best makes it pass). A looser callback never replaces an
    armed order, and a change of activation does not concern an armed one.
    """
    t, p, price = s.trailing, s.params, s.last_price
    if t is None or price is None or s.entry_price is None or s.trailing_cid is None:
        return s, []
    if not t.activated:
        act = tr.activation_price(s.entry_price, s.side, p.activation_pct, spec)
        if act == t.activation and p.callback_pct == t.callback_pct:
            return s, []  # the resting order is that order already
        s = replace(s, trailing=tr.Trailing(act, p.callback_pct).on_price(price, s.side, spec))
        activation: Decimal | None = act
    else:
        if p.callback_pct >= t.callback_pct or not tr.is_tighter(
                _trigger(price, s.side, p.callback_pct), _trigger(t.best, s.side, t.callback_pct), s.side):
            return s, []
        level = tr.tighter(t.level, tr.trail_level(t.best, s.side, p.callback_pct, spec), s.side)
        s = replace(s, trailing=replace(t, callback_pct=p.callback_pct, level=level))
        activation = None  # armed at once, from today's price
    s, intent = _intent(s, Leg.TRAILING, side=s.side.exit_order_side, qty=s.qty,
                        activation=activation, callback_pct=p.callback_pct)
    s, cmds = _send(s, intent)
    return s, [Record("trailing_replaced", {"activation": str(activation), "callback_pct": str(p.callback_pct),
                                            "price": str(price)}), *cmds]


def _close(s: PositionState, reason: str, emergency: bool = False) -> Step:
    if s.phase.final or s.phase is Phase.CLOSING:
        return s, []
    if s.phase is Phase.NEW:
        s = replace(s, phase=Phase.FAILED, close_reason=reason)
        s, cmds = _report(s, Outcome.FAILED, f"closed before entry: {reason}")
        return s, cmds
    if s.phase is Phase.ENTERING:
        return replace(s, close_reason=reason), []
    s = replace(s, phase=Phase.CLOSING, close_reason=("emergency: " if emergency else "") + reason)
    s, intent = _intent(s, Leg.EXIT, side=s.side.exit_order_side, qty=s.qty)
    s, cmds = _send(s, intent)
    return s, [Record("closing", {"reason": s.close_reason}), *cmds]


def _closed(s: PositionState, price: Decimal | None, reason: str) -> Step:
    emergency = bool(s.close_reason and s.close_reason.startswith("emergency"))
    phase = Phase.EMERGENCY_CLOSED if emergency and not s.reported else Phase.CLOSED
    cancels = [Cancel(c) for c in s.protective_cids]
    s = replace(s, phase=phase, exit_price=price, close_reason=s.close_reason or reason,
                stop_cid=None, trailing_cid=None, pending=None)
    s, cmds = _report(s, Outcome.EMERGENCY_CLOSED, s.close_reason or reason)
    return s, [*cancels, Record("closed", {"price": str(price), "reason": s.close_reason}), *cmds]


def _tightest_stop(resting: tuple[Resting, ...], s: PositionState) -> Resting | None:
    best = None
    for o in resting:
        if o.leg is Leg.STOP and o.stop_price is not None and (
                best is None or tr.is_tighter(o.stop_price, best.stop_price, s.side)):
            best = o
    return best


def _reconcile(s: PositionState, ev: Reconciled, spec: MarketSpec) -> Step:
    """Bring a restored position in line with the venue before it acts again.

    Policy: the venue is the truth about quantity and resting orders. Of our resting stops the
    tightest is kept (it may be a replacement the old epoch placed but never recorded), every
    other order of ours is cancelled, and whatever protection is missing is placed again.
    """
    s = replace(s, last_price=ev.price, pending=None)
    rec = Record("reconciled", {"venue_qty": str(ev.venue_qty),
                                "resting": sorted(o.cid for o in ev.resting)})
    if ev.venue_qty == 0:
        if s.phase is Phase.NEW:
            # No entry intent was ever committed, so (write-ahead) none was ever sent: begin.
            s, cmds = _begin(s, Begin(ev.price), spec)
            return s, [rec, *[Cancel(o.cid) for o in ev.resting], *cmds]
        if s.phase is Phase.ENTERING and ev.entry_fill is None:
            # An entry was sent but the venue does not know it. A request of the old run may
            # still be in flight, and a new one would carry a new client id: never re-send.
            s = replace(s, phase=Phase.FAILED)
            s, cmds = _report(s, Outcome.FAILED, "entry not placed before restart")
            return s, [rec, *[Cancel(o.cid) for o in ev.resting], *cmds]
        why = "closed at venue while down"
        if ev.exit_cid is not None and ev.exit_cid in (s.stop_cid, s.trailing_cid):
            why = f"{'trailing stop' if ev.exit_cid == s.trailing_cid else 'stop-loss'} filled while down"
        s = replace(s, stop_cid=None, trailing_cid=None,
                    entry_price=s.entry_price or ev.entry_fill)
        s, cmds = _closed(s, ev.exit_fill or ev.price, s.close_reason or why)
        return s, [rec, *[Cancel(o.cid) for o in ev.resting], *cmds]
    best = _tightest_stop(ev.resting, s)
    if s.phase in (Phase.NEW, Phase.ENTERING):
        # A stop id held from before is no protection unless it still rests; a stop resting now
        # (the guardian's, or ours whose answer was lost) protects the position until our own
        # rests: it is cancelled after, never before.
        s = replace(s, phase=Phase.ENTERING, stop_cid=None, stop_price=None)
        if best is not None:
            s = replace(s, stop_cid=best.cid, stop_price=best.stop_price)
        s, cmds = _entered(s, ev.entry_fill or ev.venue_entry or ev.price, ev.venue_qty, spec)
        if best is not None and s.stop_cid != best.cid:  # closed at once instead: no stop kept
            cmds.append(Cancel(best.cid))
        return s, [rec, *[Cancel(o.cid) for o in ev.resting if o is not best], *cmds]
    trails = [o.cid for o in ev.resting if o.leg is Leg.TRAILING]
    trail = s.trailing_cid if s.trailing_cid in trails else (trails[-1] if trails else None)
    keep = {c for c in (best.cid if best else None, trail) if c}
    cmds: list[Command] = [rec, *[Cancel(o.cid) for o in ev.resting if o.cid not in keep]]
    s = replace(s, qty=ev.venue_qty, stop_cid=best.cid if best else None, trailing_cid=trail,
                stop_price=tr.tighter(s.stop_price, best.stop_price, s.side) if best else s.stop_price)
    venue_cb = next((o.callback_pct for o in ev.resting if o.cid == trail and o.callback_pct), None)
    if venue_cb is not None and s.trailing is not None:
        # the venue's order may run a callback other than the configured one (a looser change
        # is not applied to a resting order): later changes are judged against the venue's
        s = replace(s, trailing=replace(s.trailing, callback_pct=venue_cb))
    if s.phase is Phase.CLOSING:
        reason = s.close_reason or "close"
        s = replace(s, phase=Phase.TRAILING, close_reason=None)
        s, more = _close(s, reason.removeprefix("emergency: "), emergency=reason.startswith("emergency"))
        return s, cmds + more
    if s.stop_cid is None:
        level = s.stop_price or tr.initial_stop(s.entry_price, s.side, s.params.stop_loss_pct, spec)
        s = replace(s, phase=Phase.OPEN)
        s, more = _protect(s, level)
        return s, cmds + [Record("stop_missing", {"replacing_at": str(level)})] + more
    native = s.params.trailing_mode == "native"
    if native and s.trailing_cid is not None:
        if s.phase is Phase.TRAILING:
            return s, cmds
        s, more = _trailing_established(s)  # it rests at the venue; only the answer was lost
        return s, cmds + more
    if s.phase is not Phase.TRAILING or native:
        s = replace(s, phase=Phase.PROTECTED)
        s, more = _begin_trailing(s)
        return s, cmds + more
    return s, cmds
