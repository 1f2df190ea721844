"""How a position's first stop-loss reaches the venue relative to its entry.

Three protocols (`Params.entry_mode`):

* ``stop_first`` — a close-position stop (no quantity: it closes whatever the symbol holds on
  its side) is placed at the pre-trade price's level, and the entry is sent only once that stop
  is acknowledged. The position is protected from its first fill. Once the fill is known the
  stop is ratcheted to the fill price's level (place-new-then-cancel-old, never looser). If the
  entry fails, or is never sent, the stop would rest on a flat symbol and could close a later or
  manual position there: the position then goes WITHDRAWING, keeps its symbol, and cancels the
  stop until the venue confirms it gone; only then is it FAILED.
* ``attached`` — the stop-loss rides on the entry order; the venue creates it at the first fill
  under `attached_cid(entry)`. Ratcheted to the fill level the same way.
* ``after_fill`` — the stop is placed once the entry's fill is known (one round trip naked).

The transitions live here, apart from the generic ones in `position_logic`, which calls
`before` ahead of its own dispatch and `after` on its result.
"""
from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import Iterable

from core import position_logic as pl
from core.config import ConfigError
from core import trailing as tr
from core.position_types import (
    CancelOutcome, Cancel, CloseRequested, Command, Event, FailureKind, Leg, LookedUp, OrderIntent,
    Phase, Place, Placed, PlaceFailed, PositionState, Reconciled, Record, RetryDue, RetryLater,
    Outcome, attached_cid, leg_of,
)
from core.types import MarketSpec

Step = tuple[PositionState, list[Command]]

MODES = ("stop_first", "attached", "after_fill")
# The protocol that closes the entry-fill → stop-resting window on each venue: Binance USD-M
# accepts a closePosition STOP_MARKET with no position (conditional orders are not margin-checked
# when placed) but no stop on a market entry; Bybit v5 takes `stopLoss` on the entry itself. The
# paper venue is Binance-shaped and supports both; stop_first is its default so a rehearsal runs
# the protocol with the most moving parts (the stop on a flat symbol, its withdrawal).
PREFERRED = {"paper": "stop_first", "binanceusdm": "stop_first", "bybit": "attached"}


def resolve(setting: str, venue: str, supported: Iterable[str]) -> str:
    """The entry protocol to run: `auto` is the venue's preferred one when its gateway carries
    it, else after_fill; an explicit setting the gateway cannot carry stops the start."""
    supported = set(supported) | {"after_fill"}
    if setting == "auto":
        want = PREFERRED.get(venue, "after_fill")
        return want if want in supported else "after_fill"
    if setting not in supported:
        raise ConfigError(f"protection.entry_mode = {setting!r} is not supported on {venue} "
                         f"(it supports {', '.join(sorted(supported))})")
    return setting


def begin(s: PositionState, qty: Decimal, price: Decimal, spec: MarketSpec) -> Step:
    """The first order of a sized position, by protocol."""
    s = replace(s, phase=Phase.ENTERING, last_price=price)
    level = tr.initial_stop(price, s.side, s.params.stop_loss_pct, spec)
    mode = s.params.entry_mode
    if mode == "stop_first":
        s, intent = pl._intent(s, Leg.STOP, side=s.side.exit_order_side, qty=qty, stop_price=level,
                               close_position=True)
        s, cmds = pl._send(s, intent)
        return s, [Record("stop_first", {"cid": intent.cid, "stop": str(level), "price": str(price)}), *cmds]
    if mode == "attached":
        s, intent = pl._intent(s, Leg.ENTRY, side=s.side.entry_order_side, qty=qty, attached_stop=level)
        s = replace(s, stop_cid=attached_cid(intent.cid), stop_price=level)
        return pl._send(s, intent)
    s, intent = pl._intent(s, Leg.ENTRY, side=s.side.entry_order_side, qty=qty)
    return pl._send(s, intent)


def protect_after_fill(s: PositionState, price: Decimal, spec: MarketSpec) -> Step:
    """The entry filled: place the stop, unless one already rests (stop_first, attached); the
    ratchet to the fill level (`after`) then waits until the trailing stop is established."""
    if s.stop_cid is None:
        return pl._protect(s, tr.initial_stop(price, s.side, s.params.stop_loss_pct, spec))
    s = replace(s, phase=Phase.PROTECTED)
    s, cmds = pl._begin_trailing(s)
    return s, [Record("stop_rested_at_fill", {"cid": s.stop_cid, "stop": str(s.stop_price)}), *cmds]


# ---- before the generic dispatch --------------------------------------------------------


def before(s: PositionState, ev: Event, spec: MarketSpec) -> Step | None:
    """Transitions of these protocols the generic machine does not know; None: not ours."""
    mode = s.params.entry_mode
    if s.phase is Phase.WITHDRAWING:
        return _withdrawing(s, ev, spec)
    if isinstance(ev, CancelOutcome):
        return s, []
    if mode == "after_fill" or s.phase not in (Phase.NEW, Phase.ENTERING):
        return None
    if isinstance(ev, Reconciled) and s.phase is Phase.ENTERING:
        return after(s, *_reconcile_entering(s, ev, spec), spec)
    p = s.pending
    if s.phase is not Phase.ENTERING or p is None or p.leg is not Leg.STOP or s.stop_cid is not None:
        return None
    # stop_first, the stop ahead of the entry is in flight
    match ev:
        case Placed(intent=i) if i.cid == p.cid:
            return _stop_resting(s, i)
        case LookedUp(intent=i, found=True) if i.cid == p.cid:
            return _stop_resting(s, i)
        case LookedUp(intent=i, found=False) if i.cid == p.cid and i.attempt >= s.params.max_attempts:
            return _entry_not_sent(s, i, f"not found at venue after unknown outcome (attempt {i.attempt})")
        case PlaceFailed(intent=i, kind=FailureKind.REJECTED, reason=r) if i.cid == p.cid:
            return _entry_not_sent(s, i, r)
    return None


def _stop_resting(s: PositionState, stop: OrderIntent) -> Step:
    """The stop rests: now, and only now, the entry may go out."""
    s = replace(s, pending=None, stop_cid=stop.cid, stop_price=stop.stop_price)
    rec = Record("stop_placed", {"cid": stop.cid, "stop": str(stop.stop_price),
                                 "price": str(s.last_price), "before_entry": True})
    if s.close_reason:  # the operator closed it while the stop was on its way
        s, cmds = pl._report(s, Outcome.FAILED, f"closed before entry: {s.close_reason}")
        s, more = _withdraw(s)
        return s, [rec, *cmds, *more]
    s, entry = pl._intent(s, Leg.ENTRY, side=s.side.entry_order_side, qty=stop.qty)
    s, cmds = pl._send(s, entry)
    return s, [rec, *cmds]


def _entry_not_sent(s: PositionState, stop: OrderIntent, reason: str) -> Step:
    through = "-2021" in reason or "immediately trigger" in reason.lower()
    why = (f"price {s.last_price} already through stop {stop.stop_price}: entry not sent ({reason})"
           if through else f"protective stop refused, entry not sent: {reason}")
    s = replace(s, phase=Phase.FAILED, pending=None)
    s, cmds = pl._report(s, Outcome.FAILED, why)
    return s, [Record("entry_not_sent", {"cid": stop.cid, "reason": reason}), *cmds]


def _withdraw(s: PositionState, cancels: Iterable[str] = ()) -> Step:
    """No position, but our stop may rest: cancel it, and hold the symbol until it is gone."""
    cids = list(dict.fromkeys([*( [s.stop_cid] if s.stop_cid else []), *cancels]))
    s = replace(s, phase=Phase.WITHDRAWING, pending=None, stop_cid=cids[0] if cids else None)
    if not cids:
        return replace(s, phase=Phase.FAILED), []
    return s, [Record("withdrawing_stop", {"cids": cids}), *[Cancel(c) for c in cids]]


def _withdrawal_intent(s: PositionState) -> OrderIntent:
    return OrderIntent(cid=s.stop_cid, leg=Leg.STOP, side=s.side.exit_order_side,
                       qty=s.qty or Decimal(0), stop_price=s.stop_price)


def _withdrawing(s: PositionState, ev: Event, spec: MarketSpec) -> Step | None:
    match ev:
        case CancelOutcome(cid=c, done=True) if c == s.stop_cid:
            s = replace(s, phase=Phase.FAILED, stop_cid=None)
            return s, [Record("stop_withdrawn", {"cid": c})]
        case CancelOutcome(cid=c, done=False, reason=r) if c == s.stop_cid:
            delay = min(s.params.retry_backoff_s * 2, 5.0)
            return s, [Record("withdraw_retry", {"cid": c, "reason": r, "in_s": delay}),
                       RetryLater(_withdrawal_intent(s), delay)]
        case RetryDue(intent=i) if i.cid == s.stop_cid:
            return s, [Cancel(i.cid)]
        case Reconciled(venue_qty=q) if q == 0:
            ours = [o.cid for o in ev.resting]
            s = replace(s, last_price=ev.price, stop_cid=None)
            s, cmds = _withdraw(s, ours)
            return s, [Record("reconciled", {"venue_qty": "0", "resting": sorted(ours)}), *cmds]
        case Reconciled():  # the entry did fill after all: a position to protect
            return pl._reconcile(replace(s, phase=Phase.ENTERING, stop_cid=None, stop_price=None), ev, spec)
        case Placed(intent=i) | LookedUp(intent=i, found=True) if i.leg is Leg.ENTRY:
            return pl.step(replace(s, phase=Phase.ENTERING, pending=i), ev, spec)
        case CloseRequested() | RetryDue() | CancelOutcome():
            return s, []
    return None


def _reconcile_entering(s: PositionState, ev: Reconciled, spec: MarketSpec) -> Step:
    """A restart while entering: the venue's resting stops, not our books, say what protects.
    A held position with one of our stops resting is adopted as it is (cancelling that stop to
    place another would open the window this protocol closes)."""
    s = replace(s, stop_cid=None, stop_price=None)
    stops = [o for o in ev.resting if o.leg is Leg.STOP and o.stop_price is not None]
    if ev.venue_qty == 0 or not stops:
        return pl._reconcile(s, ev, spec)
    entry = ev.entry_fill or ev.venue_entry or ev.price
    p = s.params
    s = replace(s, entry_price=entry, qty=ev.venue_qty,
                phase=Phase.CLOSING if s.close_reason else Phase.PROTECTED,
                trailing=tr.Trailing(tr.activation_price(entry, s.side, p.activation_pct, spec), p.callback_pct))
    s, cmds = pl._reconcile(s, ev, spec)
    return s, [Record("entered", {"price": str(entry), "qty": str(ev.venue_qty), "adopted_stop": True}), *cmds]


# ---- after the generic dispatch ---------------------------------------------------------


def after(old: PositionState, s: PositionState, cmds: list[Command], spec: MarketSpec) -> Step:
    mode = s.params.entry_mode
    if mode == "after_fill":
        return s, cmds
    if s.phase is Phase.FAILED and old.phase in (Phase.NEW, Phase.ENTERING):
        if mode == "attached":  # the venue creates an attached stop only with a fill
            return replace(s, stop_cid=None, stop_price=None), cmds
        stop_cancels = [c.cid for c in cmds if isinstance(c, Cancel) and leg_of(c.cid) is Leg.STOP]
        if s.stop_cid is not None or stop_cancels:
            rest = [c for c in cmds if not (isinstance(c, Cancel) and c.cid in stop_cancels)]
            s, more = _withdraw(s, stop_cancels)
            return s, rest + more
        return s, cmds
    return _ratchet_to_fill(s, cmds, spec)


def _ratchet_to_fill(s: PositionState, cmds: list[Command], spec: MarketSpec) -> Step:
    """Once fully protected, move a stop placed from the pre-trade price to the fill price's
    level if that is tighter and still on the loss side: place-new-then-cancel-old."""
    if (s.phase is not Phase.TRAILING or s.pending is not None or s.entry_price is None
            or s.last_price is None or any(isinstance(c, Place) for c in cmds)):
        return s, cmds
    level = tr.initial_stop(s.entry_price, s.side, s.params.stop_loss_pct, spec)
    if not tr.is_tighter(level, s.stop_price, s.side) or not tr.is_protective(level, s.last_price, s.side):
        return s, cmds
    s, more = pl._protect(s, level, emergency=False)
    return s, [*cmds, Record("stop_to_fill_level", {"stop": str(level)}), *more]
