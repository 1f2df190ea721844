"""Reconciliation: a restored position brought in line with the venue before it acts again.

Policy: the venue is the truth about quantity and resting orders. Of our resting stops the
tightest is kept (it may be a replacement the old epoch placed but never recorded), every
other order of ours is cancelled, and whatever protection is missing is placed again.

The cases, by what the venue holds and the phase the position was stored in:

venue flat
  NEW                 → begin (no entry intent was ever committed, so none was ever sent)
  ENTERING, no fill   → FAILED (never re-sent: a request of the old run may still be in flight)
  otherwise           → closed while we were down
venue holds the position
  NEW or ENTERING     → entered: protect it, keeping a resting stop until ours rests
  CLOSING             → close again (the exit may never have been sent)
  no stop resting     → place the stop again
  trailing resting    → trailing (native: the order rests; only its answer was lost)
  otherwise           → establish the trailing stop
"""
from __future__ import annotations

from dataclasses import replace

from core import trailing as tr
from core.phases import Outcome, Phase
from core.position_entry import begin, entered
from core.position_steps import (
    Step, begin_trailing, close, closed, initial_stop, protect, report, trailing_established,
)
from core.position_types import (
    EMERGENCY_PREFIX, Begin, Cancel, Command, Leg, PositionState, Reconciled, Record, Resting,
    TrailingMode,
)
from core.types import MarketSpec


def reconcile(s: PositionState, ev: Reconciled, spec: MarketSpec) -> Step:
    s = replace(s, last_price=ev.price, pending=None)
    rec = Record("reconciled", {"venue_qty": str(ev.venue_qty),
                                "resting": sorted(o.cid for o in ev.resting)})
    if ev.venue_qty == 0:
        s, cmds = _flat(s, ev, spec)
        return s, [rec, *[Cancel(o.cid) for o in ev.resting], *cmds]
    if s.phase in (Phase.NEW, Phase.ENTERING):
        s, cmds = _entered_while_down(s, ev, spec)
        return s, [rec, *cmds]
    s, cmds = _keep_resting(s, ev)
    s, more = _resume(s, spec)
    return s, [rec, *cmds, *more]


def _flat(s: PositionState, ev: Reconciled, spec: MarketSpec) -> Step:
    """The venue holds nothing for the symbol; every order of ours there is cancelled."""
    if s.phase is Phase.NEW:
        return begin(s, Begin(ev.price), spec)
    if s.phase is Phase.ENTERING and ev.entry_fill is None:
        # An entry was sent but the venue does not know it. A request of the old run may
        # still be in flight, and a new one would carry a new client id: never re-send.
        return report(replace(s, phase=Phase.FAILED), Outcome.FAILED, "entry not placed before restart")
    why = "closed at venue while down"
    if ev.exit_cid is not None and ev.exit_cid in (s.stop_cid, s.trailing_cid):
        why = f"{'trailing stop' if ev.exit_cid == s.trailing_cid else 'stop-loss'} filled while down"
    s = replace(s, stop_cid=None, trailing_cid=None, entry_price=s.entry_price or ev.entry_fill)
    return closed(s, ev.exit_fill or ev.price, s.close_reason or why)


def _tightest_stop(resting: tuple[Resting, ...], s: PositionState) -> Resting | None:
    best: Resting | None = None
    for o in resting:
        if o.leg is Leg.STOP and o.stop_price is not None and (
                best is None or tr.is_tighter(o.stop_price, best.stop_price, s.side)):
            best = o
    return best


def _entered_while_down(s: PositionState, ev: Reconciled, spec: MarketSpec) -> Step:
    """The entry filled while we were down (or its answer was lost). A stop id held from before
    is no protection unless it still rests; a stop resting now (the guardian's, or ours whose
    answer was lost) protects the position until our own rests: it is cancelled after, never
    before."""
    best = _tightest_stop(ev.resting, s)
    s = replace(s, phase=Phase.ENTERING, stop_cid=None, stop_price=None)
    if best is not None:
        s = replace(s, stop_cid=best.cid, stop_price=best.stop_price)
    s, cmds = entered(s, ev.entry_fill or ev.venue_entry or ev.price, ev.venue_qty, spec)
    if best is not None and s.stop_cid != best.cid:  # closed at once instead: no stop kept
        cmds.append(Cancel(best.cid))
    return s, [*[Cancel(o.cid) for o in ev.resting if o is not best], *cmds]


def _keep_resting(s: PositionState, ev: Reconciled) -> Step:
    """Keep the tightest resting stop and our trailing stop (the recorded one, else the last
    listed); cancel every other order of ours. The venue's quantity is the position's."""
    best = _tightest_stop(ev.resting, s)
    trails = [o.cid for o in ev.resting if o.leg is Leg.TRAILING]
    trail = s.trailing_cid if s.trailing_cid in trails else (trails[-1] if trails else None)
    keep = {c for c in (best.cid if best else None, trail) if c}
    cmds: list[Command] = [Cancel(o.cid) for o in ev.resting if o.cid not in keep]
    s = replace(s, qty=ev.venue_qty, stop_cid=best.cid if best else None, trailing_cid=trail,
                stop_price=tr.tighter(s.stop_price, best.stop_price, s.side) if best else s.stop_price)
    venue_cb = next((o.callback_pct for o in ev.resting if o.cid == trail and o.callback_pct), None)
    if venue_cb is not None and s.trailing is not None:
        # the venue's order may run a callback other than the configured one (a looser change
        # is not applied to a resting order): later changes are judged against the venue's
        s = replace(s, trailing=replace(s.trailing, callback_pct=venue_cb))
    return s, cmds


def _resume(s: PositionState, spec: MarketSpec) -> Step:
    """Carry on from what rests now: the close, the stop, the trailing stop, in that order."""
    if s.phase is Phase.CLOSING:
        return _close_again(s)
    if s.stop_cid is None:
        return _replace_missing_stop(s, spec)
    native = s.params.trailing_mode is TrailingMode.NATIVE
    if native and s.trailing_cid is not None:
        # it rests at the venue; only the answer may have been lost
        return (s, []) if s.phase is Phase.TRAILING else trailing_established(s)
    if s.phase is not Phase.TRAILING or native:
        return begin_trailing(replace(s, phase=Phase.PROTECTED))
    return s, []


def _close_again(s: PositionState) -> Step:
    """A close was under way: it is sent again, under this epoch, for the same reason."""
    reason = (s.close_reason or "close").removeprefix(EMERGENCY_PREFIX)
    return close(replace(s, phase=Phase.TRAILING, close_reason=None, emergency=False), reason,
                 emergency=s.emergency)


def _replace_missing_stop(s: PositionState, spec: MarketSpec) -> Step:
    level = s.stop_price or initial_stop(s, spec)
    s, cmds = protect(replace(s, phase=Phase.OPEN), level)
    return s, [Record("stop_missing", {"replacing_at": str(level)}), *cmds]
