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

Every close-position stop sent is remembered (`close_stops`) until the venue says it is gone
(cancelled, not found on cancel, refused, fired). A position that would go final while one may
still rest goes WITHDRAWING instead and cancels it with a doubling, capped backoff; a withdrawal
of a position that never opened asks the venue for the symbol's position before it ends FAILED,
since an entry of unknown outcome may have landed after all: a held position is adopted and
protected, and only a flat venue gives FAILED (reported then, not before).

The transitions live here, apart from the generic ones in `position_logic`, which calls
`before` ahead of its own dispatch and `after` on its result.
"""
from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import Callable, Iterable, NamedTuple

from core import position_steps as st
from core import trailing as tr
from core.config import ConfigError
from core.position_steps import Step
from core.position_types import (
    CancelOutcome, Cancel, CloseRequested, Command, EntryMode, Event, FailureKind, Filled, Leg,
    LookedUp, OrderIntent, Phase, Place, Placed, PlaceFailed, PositionState, Reconcile, Reconciled,
    Record, Report, RetryDue, RetryLater, Tick, Outcome, attached_cid, is_guardian_cid, leg_of,
    position_id_of,
)
from core.types import MarketSpec


class Generic(NamedTuple):
    """The generic machine's moves these protocols hand over to, given by `position_logic`
    (which builds on this module, so this module cannot import it)."""

    step: Callable[[PositionState, Event, MarketSpec], Step]
    reconcile: Callable[[PositionState, Reconciled, MarketSpec], Step]

# The protocol that closes the entry-fill → stop-resting window on each venue: Binance USD-M
# accepts a closePosition STOP_MARKET with no position (conditional orders are not margin-checked
# when placed) but no stop on a market entry; Bybit v5 takes `stopLoss` on the entry itself. The
# paper venue is Binance-shaped and supports both; stop_first is its default so a rehearsal runs
# the protocol with the most moving parts (the stop on a flat symbol, its withdrawal).
PREFERRED = {"paper": "stop_first", "binanceusdm": "stop_first", "bybit": "attached"}
WITHDRAW_BACKOFF_CAP_S = 30.0
WITHDRAW_ALARM_AFTER = 5  # failed cancels in a row before the withdrawal is flagged stuck


def resolve(setting: str, venue: str, supported: Iterable[str]) -> EntryMode:
    """The entry protocol to run: `auto` is the venue's preferred one when its gateway carries
    it, else after_fill; an explicit setting the gateway cannot carry stops the start."""
    supported = set(supported) | {"after_fill"}
    if setting == "auto":
        want = PREFERRED.get(venue, "after_fill")
        return EntryMode(want if want in supported else "after_fill")
    if setting not in supported:
        raise ConfigError(f"protection.entry_mode = {setting!r} is not supported on {venue} "
                         f"(it supports {', '.join(sorted(supported))})")
    return EntryMode(setting)


def restored_mode(phase: Phase, stop_cid: str | None, pending_cid: str | None,
                  configured: EntryMode) -> EntryMode:
    """The protocol a restored position was entering under, from what it holds rather than from
    today's configuration: a stop already held while entering came before the entry (stop_first)
    unless it is the attached stop of the pending entry."""
    if stop_cid is None or phase not in (Phase.ENTERING, Phase.WITHDRAWING):
        return EntryMode(configured)
    if pending_cid is not None and leg_of(pending_cid) is Leg.ENTRY and attached_cid(pending_cid) == stop_cid:
        return EntryMode.ATTACHED
    return EntryMode.STOP_FIRST


def begin(s: PositionState, qty: Decimal, price: Decimal, spec: MarketSpec) -> Step:
    """The first order of a sized position, by protocol."""
    s = replace(s, phase=Phase.ENTERING, last_price=price)
    level = tr.initial_stop(price, s.side, s.params.stop_loss_pct, spec)
    mode = s.params.entry_mode
    if mode is EntryMode.STOP_FIRST:
        s, intent = st.intent(s, Leg.STOP, side=s.side.exit_order_side, qty=qty, stop_price=level,
                              close_position=True)
        s, cmds = st.send(s, intent)
        return s, [Record("stop_first", {"cid": intent.cid, "stop": str(level), "price": str(price)}), *cmds]
    if mode is EntryMode.ATTACHED:
        s, intent = st.intent(s, Leg.ENTRY, side=s.side.entry_order_side, qty=qty, attached_stop=level)
        s = replace(s, stop_cid=attached_cid(intent.cid), stop_price=level)
        return st.send(s, intent)
    s, intent = st.intent(s, Leg.ENTRY, side=s.side.entry_order_side, qty=qty)
    return st.send(s, intent)


def protect_after_fill(s: PositionState, price: Decimal, spec: MarketSpec) -> Step:
    """The entry filled: place the stop, unless the protocol's own already rests (stop_first,
    attached); the ratchet to the fill level (`after`) then waits until the trailing stop is
    established. A stop that rests but is not the protocol's own (the guardian's, or one an
    after_fill restart found) keeps protecting until ours rests: place-new-then-cancel-old."""
    own = s.params.entry_mode in (EntryMode.STOP_FIRST, EntryMode.ATTACHED) and not is_guardian_cid(s.stop_cid or "")
    if s.stop_cid is None or not own:
        return st.protect(s, tr.initial_stop(price, s.side, s.params.stop_loss_pct, spec))
    s = replace(s, phase=Phase.PROTECTED)
    s, cmds = st.begin_trailing(s)
    return s, [Record("stop_rested_at_fill", {"cid": s.stop_cid, "stop": str(s.stop_price)}), *cmds]


# ---- before the generic dispatch --------------------------------------------------------


def note_gone(s: PositionState, ev: Event) -> PositionState:
    """Forget a close-position stop the venue says no longer rests."""
    match ev:
        case CancelOutcome(cid=c, done=True) | Filled(cid=c):
            gone = c
        case PlaceFailed(intent=i, kind=FailureKind.REJECTED):
            gone = i.cid
        case _:
            return s
    if gone not in s.close_stops:
        return s
    return replace(s, close_stops=tuple(c for c in s.close_stops if c != gone), withdraw_failures=0)


def before(s: PositionState, ev: Event, spec: MarketSpec, generic: Generic) -> Step | None:
    """Transitions of these protocols the generic machine does not know; None: not ours."""
    mode = s.params.entry_mode
    if s.phase is Phase.WITHDRAWING:
        return _withdrawing(s, ev, spec, generic)
    if (done := _close_stop_cancels(s, ev, spec)) is not None:
        return done
    if isinstance(ev, CancelOutcome):
        return s, []
    if mode is EntryMode.AFTER_FILL or s.phase not in (Phase.NEW, Phase.ENTERING):
        return None
    if isinstance(ev, Reconciled) and s.phase is Phase.ENTERING:
        return _reconcile_entering(s, ev, spec, generic)
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


def _close_stops_intent(s: PositionState, cid: str) -> OrderIntent:
    """The retry token of a cancel: never equal to a placement the machine waits for."""
    return OrderIntent(cid=cid, leg=Leg.STOP, side=s.side.exit_order_side, qty=Decimal(0),
                       attempt=s.withdraw_failures)


def _cancel_failed(s: PositionState, cid: str, reason: str) -> Step:
    """A cancel of a close-position stop failed: again later, doubling up to a cap; past a few
    failures in a row the withdrawal is flagged (logged as an error, counted by health)."""
    n = s.withdraw_failures + 1
    s = replace(s, withdraw_failures=n)
    delay = min(s.params.retry_backoff_s * 2 ** (n - 1), WITHDRAW_BACKOFF_CAP_S)
    cmds: list[Command] = [Record("withdraw_retry", {"cid": cid, "reason": reason, "in_s": delay, "failures": n})]
    if n == WITHDRAW_ALARM_AFTER:
        cmds.append(Record("withdraw_stuck", {"cid": cid, "failures": n, "reason": reason}))
    return s, [*cmds, RetryLater(_close_stops_intent(s, cid), delay)]


def _close_stop_cancels(s: PositionState, ev: Event, spec: MarketSpec) -> Step | None:
    """Cancels of close-position stops while the position lives: retried until done; our own
    current stop reported gone leaves the position naked, so it is placed again."""
    match ev:
        case CancelOutcome(cid=c, done=False, reason=r) if c in s.close_stops and c != s.stop_cid:
            return _cancel_failed(s, c, r)
        case RetryDue(intent=i) if i.cid in s.close_stops and i != s.pending and i.cid != s.stop_cid:
            return s, [Cancel(i.cid)]
        case CancelOutcome(cid=c, done=True) if c == s.stop_cid and s.phase.holds_position and s.pending is None:
            level = s.stop_price or st.initial_stop(s, spec)
            s, cmds = st.protect(replace(s, stop_cid=None), level)
            return s, [Record("stop_missing", {"cid": c, "replacing_at": str(level)}), *cmds]
    return None


def _stop_resting(s: PositionState, stop: OrderIntent) -> Step:
    """The stop rests: now, and only now, the entry may go out."""
    s = replace(s, pending=None, stop_cid=stop.cid, stop_price=stop.stop_price)
    rec = Record("stop_placed", {"cid": stop.cid, "stop": str(stop.stop_price),
                                 "price": str(s.last_price), "before_entry": True})
    if s.close_reason:  # the operator closed it while the stop was on its way
        s, cmds = st.report(replace(s, phase=Phase.FAILED), Outcome.FAILED, f"closed before entry: {s.close_reason}")
        return s, [rec, *cmds]
    s, entry = st.intent(s, Leg.ENTRY, side=s.side.entry_order_side, qty=stop.qty)
    s, cmds = st.send(s, entry)
    return s, [rec, *cmds]


def _entry_not_sent(s: PositionState, stop: OrderIntent, reason: str) -> Step:
    through = "-2021" in reason or "immediately trigger" in reason.lower()
    why = (f"price {s.last_price} already through stop {stop.stop_price}: entry not sent ({reason})"
           if through else f"protective stop refused, entry not sent: {reason}")
    s = replace(s, phase=Phase.FAILED, pending=None)
    s, cmds = st.report(s, Outcome.FAILED, why)
    return s, [Record("entry_not_sent", {"cid": stop.cid, "reason": reason}), *cmds]


def _withdraw(s: PositionState, cmds: list[Command]) -> Step:
    """The position would go final while close-position stops of ours may rest: hold the symbol
    and cancel each until it is known gone. A FAILED report waits for the end of it."""
    held = [c for c in cmds if isinstance(c, Report) and c.outcome is Outcome.FAILED]
    if held:
        cmds = [c for c in cmds if c not in held]
        s = replace(s, reported=False, withdraw_reason=held[0].reason)
    sent = {c.cid for c in cmds if isinstance(c, Cancel)}
    s = replace(s, settle_phase=s.phase, phase=Phase.WITHDRAWING, pending=None, withdraw_failures=0,
                stop_cid=None if s.stop_cid in s.close_stops else s.stop_cid)
    return s, [*cmds, Record("withdrawing_stop", {"cids": list(s.close_stops)}),
               *[Cancel(c) for c in s.close_stops if c not in sent]]


def _settled(s: PositionState) -> Phase:
    if s.settle_phase is not None:
        return s.settle_phase
    if s.entry_price is None:
        return Phase.FAILED
    return Phase.EMERGENCY_CLOSED if s.emergency else Phase.CLOSED


def _withdrawal_done(s: PositionState) -> Step:
    """Every close-position stop is gone. A position that never opened first asks the venue
    whether its entry landed after all; only a flat venue makes it FAILED."""
    if s.close_stops:
        return s, []
    phase = _settled(s)
    if phase is Phase.FAILED:
        return s, [Record("withdrawal_verifying", {}), Reconcile()]
    s = replace(s, phase=phase, stop_cid=None)
    return s, [Record("stop_withdrawn", {})]


def _withdrawing(s: PositionState, ev: Event, spec: MarketSpec, generic: Generic) -> Step | None:
    never_opened = _settled(s) is Phase.FAILED
    match ev:
        case CancelOutcome(cid=c, done=True):
            s, cmds = _withdrawal_done(s)
            return s, [Record("stop_gone", {"cid": c}), *cmds]
        case CancelOutcome(cid=c, done=False, reason=r) if c in s.close_stops:
            return _cancel_failed(s, c, r)
        case RetryDue(intent=i) if i.cid in s.close_stops:
            return s, [Cancel(i.cid)]
        case Filled(cid=c) if position_id_of(c) == s.id:
            # one of our stops fired on the symbol, or the entry filled: the venue says which
            return s, [Record("withdrawing_fill", {"cid": c}), Reconcile()]
        case Reconciled(venue_qty=q) if q == 0 or not never_opened:
            ours = [o.cid for o in ev.resting if leg_of(o.cid) is Leg.STOP]
            s = replace(s, last_price=ev.price, close_stops=tuple(dict.fromkeys([*s.close_stops, *ours])))
            rec = Record("reconciled", {"venue_qty": str(q), "resting": sorted(ours)})
            if not s.close_stops:
                if never_opened:
                    s = replace(s, phase=Phase.FAILED, stop_cid=None)
                    s, cmds = st.report(s, Outcome.FAILED, s.withdraw_reason or "entry never filled")
                    return s, [rec, Record("stop_withdrawn", {}), *cmds]
                return replace(s, phase=_settled(s), stop_cid=None), [rec, Record("stop_withdrawn", {})]
            return s, [rec, *[Cancel(c) for c in s.close_stops]]
        case Reconciled():  # the entry did fill after all: a position to protect
            return _adopt(s, ev, spec, generic)
        case Placed(intent=i) | LookedUp(intent=i, found=True) if i.leg is Leg.ENTRY and never_opened:
            # a late fill: the stop being withdrawn may be gone already, so a fresh one goes out
            s = replace(s, phase=Phase.ENTERING, pending=i, stop_cid=None, stop_price=None,
                        settle_phase=None, withdraw_reason=None)
            return generic.step(s, ev, spec)  # the generic machine hears it from here on
        case CloseRequested() | RetryDue() | CancelOutcome() | Placed() | LookedUp() | PlaceFailed():
            return s, []
    return None


def _adopt(s: PositionState, ev: Reconciled, spec: MarketSpec, generic: Generic) -> Step:
    s = replace(s, phase=Phase.ENTERING, settle_phase=None, withdraw_reason=None, withdraw_failures=0)
    s, cmds = _reconcile_entering(s, ev, spec, generic)
    return s, [Record("withdrawal_found_position", {"venue_qty": str(ev.venue_qty)}), *cmds]


def _reconcile_entering(s: PositionState, ev: Reconciled, spec: MarketSpec, generic: Generic) -> Step:
    """A restart while entering: the venue's resting stops, not our books, say what protects.
    A held position with one of our stops resting is adopted as it is (cancelling that stop to
    place another would open the window this protocol closes)."""
    s = replace(s, stop_cid=None, stop_price=None)
    stops = [o for o in ev.resting if o.leg is Leg.STOP and o.stop_price is not None]
    if ev.venue_qty == 0 or not stops:
        return generic.reconcile(s, ev, spec)
    entry = ev.entry_fill or ev.venue_entry or ev.price
    p = s.params
    s = replace(s, entry_price=entry, qty=ev.venue_qty,
                phase=Phase.CLOSING if s.close_reason else Phase.PROTECTED,
                trailing=tr.Trailing(tr.activation_price(entry, s.side, p.activation_pct, spec), p.callback_pct))
    s, cmds = generic.reconcile(s, ev, spec)
    return s, [Record("entered", {"price": str(entry), "qty": str(ev.venue_qty), "adopted_stop": True}), *cmds]


# ---- after the generic dispatch ---------------------------------------------------------


def after(old: PositionState, s: PositionState, cmds: list[Command], ev: Event, spec: MarketSpec) -> Step:
    sent = [c.intent.cid for c in cmds if isinstance(c, Place) and c.intent.close_position]
    if isinstance(ev, Reconciled) and s.params.entry_mode is EntryMode.STOP_FIRST:
        # which resting stop is the close-position one is not persisted: each is confirmed gone
        sent += [o.cid for o in ev.resting if o.leg is Leg.STOP]
    if sent:
        s = replace(s, close_stops=tuple(dict.fromkeys([*s.close_stops, *sent])))
    if s.phase is Phase.FAILED and old.phase in (Phase.NEW, Phase.ENTERING, Phase.WITHDRAWING):
        if s.params.entry_mode is EntryMode.ATTACHED:  # the venue creates an attached stop only with a fill
            s = replace(s, stop_cid=None, stop_price=None)
        else:  # a restart's view of the venue: every resting stop of ours on the flat symbol
            stop_cancels = [c.cid for c in cmds if isinstance(c, Cancel) and leg_of(c.cid) is Leg.STOP]
            s = replace(s, close_stops=tuple(dict.fromkeys([*s.close_stops, *stop_cancels])))
    if s.phase.final and s.close_stops:
        return _withdraw(s, cmds)
    if s.params.entry_mode is EntryMode.AFTER_FILL:
        return s, cmds
    return _ratchet_to_fill(s, cmds, ev, spec)


def _ratchet_to_fill(s: PositionState, cmds: list[Command], ev: Event, spec: MarketSpec) -> Step:
    """Once fully protected, move a stop placed from the pre-trade price to the fill price's
    level if that is tighter and still on the loss side: place-new-then-cancel-old. Each level
    is tried once, never in the step that hears a stop refused, and no faster than
    `replace_min_interval_s` on ticks."""
    if (s.phase is not Phase.TRAILING or s.pending is not None or s.entry_price is None
            or s.last_price is None or any(isinstance(c, Place) for c in cmds)):
        return s, cmds
    if isinstance(ev, (PlaceFailed, LookedUp)) and ev.intent.leg is Leg.STOP:
        return s, cmds
    level = tr.initial_stop(s.entry_price, s.side, s.params.stop_loss_pct, spec)
    if level == s.ratchet_level:
        return s, cmds
    if not tr.is_tighter(level, s.stop_price, s.side) or not tr.is_protective(level, s.last_price, s.side):
        return s, cmds
    if isinstance(ev, Tick):
        if ev.now - s.last_replace_at < s.params.replace_min_interval_s:
            return s, cmds
        s = replace(s, last_replace_at=ev.now)
    s, more = st.protect(replace(s, ratchet_level=level), level, emergency=False)
    return s, [*cmds, Record("stop_to_fill_level", {"stop": str(level)}), *more]
