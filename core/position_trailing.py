"""The trailing stop while the position trails: prices move it, parameter changes re-place it.

Emulated, the level is ours: each tick may tighten it and the stop-loss is moved up behind it
(place-new-then-cancel-old, no faster than `replace_min_interval_s`). Native, the venue trails
and our copy follows its account; a change of parameters replaces the venue's order only
where the new one can never fire later than the resting one would (`retrail`).
"""
from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from core import trailing as tr
from core.phases import HELD_OPEN, Phase
from core.position_steps import Step, initial_stop, intent, protect, send
from core.position_types import (
    Command, Leg, PositionState, ReadTrailing, Record, SetParams, Tick, TrailingMode, VenueTrail,
)
from core.types import MarketSpec, Side


def tick(s: PositionState, ev: Tick, spec: MarketSpec) -> Step:
    s = replace(s, last_price=ev.price)
    if s.trailing is None or s.phase not in HELD_OPEN:
        return s, []
    t = s.trailing.on_price(ev.price, s.side, spec)
    if t is not s.trailing:
        s = replace(s, trailing=t)
    if s.phase is not Phase.TRAILING or s.pending is not None:
        return s, []
    due = ev.now - s.last_replace_at >= s.params.replace_min_interval_s
    if s.params.trailing_mode is TrailingMode.NATIVE:
        if not (t.activated and s.params.callback_pct < t.callback_pct and due):
            return s, []
        probe = retrail(s, spec)[1]  # would it pass by our view? then ask the venue's
        return (replace(s, last_replace_at=ev.now), [ReadTrailing()]) if probe else (s, [])
    if t.level is None or not tr.is_tighter(t.level, s.stop_price, s.side) or not due:
        return s, []
    return protect(replace(s, last_replace_at=ev.now), t.level, emergency=False)


def set_params(s: PositionState, ev: SetParams, spec: MarketSpec) -> Step:
    """New protection parameters: the trailing state takes them, and a trailing position
    applies them to what rests at the venue (a tighter stop-loss, a re-placed trailing stop)."""
    changes = {k: v for k, v in (("activation_pct", ev.activation_pct), ("callback_pct", ev.callback_pct),
                                 ("stop_loss_pct", ev.stop_loss_pct)) if v is not None}
    old = s.params
    p = replace(old, activation_pct=old.activation_pct if ev.activation_pct is None else ev.activation_pct,
                callback_pct=old.callback_pct if ev.callback_pct is None else ev.callback_pct,
                stop_loss_pct=old.stop_loss_pct if ev.stop_loss_pct is None else ev.stop_loss_pct)
    s = _retarget(replace(s, params=p), spec)
    cmds: list[Command] = [Record("params_set", {k: str(v) for k, v in changes.items()})] if changes else []
    if s.phase is not Phase.TRAILING or s.pending is not None:
        return s, cmds
    if ev.stop_loss_pct is not None:
        level = initial_stop(s, spec)
        if tr.is_tighter(level, s.stop_price, s.side):
            s, more = protect(s, level, emergency=False)
            return s, cmds + more
    native = p.trailing_mode is TrailingMode.NATIVE
    if native and s.trailing_cid is not None and (ev.venue is not None or changes.keys() - {"stop_loss_pct"}):
        if ev.venue is None:  # the shell could not read the venue's order: keep it
            return s, cmds + [Record("trailing_kept", {"reason": "the venue's trailing order could not be read"})]
        s, more = retrail(_with_venue(s, ev.venue, spec), spec)
        return s, cmds + more
    return s, cmds


def _retarget(s: PositionState, spec: MarketSpec) -> PositionState:
    """Our trailing state with the parameters just set, where they apply to it."""
    t, p = s.trailing, s.params
    if t is None:
        return s
    if p.trailing_mode is not TrailingMode.NATIVE:
        # emulated: the level is ours and ratchets (`Trailing.on_price` only ever tightens it)
        act = t.activation if t.activated or s.entry_price is None else \
            tr.activation_price(s.entry_price, s.side, p.activation_pct, spec)
        return replace(s, trailing=replace(t, callback_pct=p.callback_pct, activation=act))
    if s.trailing_cid is None and not t.activated and s.entry_price:
        # native, no trailing order yet: the one still to be placed takes the new parameters
        return replace(s, trailing=replace(t, callback_pct=p.callback_pct, activation=tr.activation_price(
            s.entry_price, s.side, p.activation_pct, spec)))
    return s


def _with_venue(s: PositionState, v: VenueTrail, spec: MarketSpec) -> PositionState:
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


def _trigger(best: Decimal, side: Side, callback_pct: Decimal) -> Decimal:
    """Where an armed native trailing stop fires: best × (1 ∓ callback%), as the venue computes it."""
    return best * (1 - side.sign * callback_pct / 100)


def retrail(s: PositionState, spec: MarketSpec) -> Step:
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
    activation: Decimal | None
    if not t.activated:
        activation = tr.activation_price(s.entry_price, s.side, p.activation_pct, spec)
        if activation == t.activation and p.callback_pct == t.callback_pct:
            return s, []  # the resting order is that order already
        s = replace(s, trailing=tr.Trailing(activation, p.callback_pct).on_price(price, s.side, spec))
    else:
        assert t.best is not None, "an armed trailing stop has seen its best price"
        if p.callback_pct >= t.callback_pct or not tr.is_tighter(
                _trigger(price, s.side, p.callback_pct), _trigger(t.best, s.side, t.callback_pct), s.side):
            return s, []
        level = tr.tighter(t.level, tr.trail_level(t.best, s.side, p.callback_pct, spec), s.side)
        s = replace(s, trailing=replace(t, callback_pct=p.callback_pct, level=level))
        activation = None  # armed at once, from today's price
    s, order = intent(s, Leg.TRAILING, side=s.side.exit_order_side, qty=s.qty,
                      activation=activation, callback_pct=p.callback_pct)
    s, cmds = send(s, order)
    return s, [Record("trailing_replaced", {"activation": str(activation), "callback_pct": str(p.callback_pct),
                                            "price": str(price)}), *cmds]
