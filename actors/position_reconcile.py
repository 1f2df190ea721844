"""What the venue holds for a position, read to reconcile it (after a restart, a restore, or an
order of ours found gone): the `Reconciled` event the state machine steps on.

Every intent of unknown fate is resolved first, then the venue's position and open orders
are read; if our protective orders are no longer resting, their fates say which of them
closed the position, and at what price. The reads are independent, so they go out together:
one round trip, not four. At a cold start the service reads the account once for every
position and hands each its `VenueView` instead.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Any, Callable

from actors.ports import PositionReports
from actors.position_context import PositionContext
from actors.together import together
from core.position_types import Leg, PositionState, Reconciled, Resting, leg_of, position_id_of
from exchange.gateway import OrderNotFound, OrderState
from persistence.positions import OrderFate


def reconcile(s: PositionState, ctx: PositionContext, handle: PositionReports,
              record: Callable[[OrderFate], None]) -> Reconciled:
    """Read the venue for `s`; `record` persists each looked-up order's fate, in order, as
    soon as its batch of reads is back."""
    gw, t = ctx.gateway, ctx.deadlines.venue_call_s
    with handle.op("recovery view", ctx.deadlines.operation_s):
        seen = ctx.recovery_view(s)  # at a cold start: read once for all positions
    reads: dict[str, Callable[[], Any]] = {}
    if seen is None:
        unresolved = [r.cid for r in ctx.store.unresolved_orders(s.id)]
        reads["positions"] = lambda: gw.positions(timeout=t)
        reads["open orders"] = lambda: gw.open_orders(s.symbol, timeout=t)
    else:
        unresolved = [cid for cid, _leg in seen.unresolved]
    known_price = seen.price if seen is not None else None
    if not known_price:
        reads["price"] = lambda: gw.price(s.symbol, timeout=t)
    got = _read_together(s, ctx, handle, reads, unresolved)
    positions = got["positions"] if seen is None else seen.positions
    orders = got["open orders"] if seen is None else seen.orders
    price: Decimal = known_price if known_price else got["price"]
    fills: dict[str, OrderState] = {}
    _note_fates(unresolved, got, fills, record)
    venue_qty, venue_entry = 0, None
    for p in positions:
        if p.symbol == s.symbol and (p.qty > 0) == (s.side.sign > 0):  # the other side is not ours
            venue_qty, venue_entry = abs(p.qty), p.entry_price
    # ours: our own client ids, and the stop an adopted position took over with its ids
    resting = tuple(Resting(o.cid, leg, o.stop_price, o.callback_pct) for o in orders
                    if (position_id_of(o.cid) == s.id or o.cid in s.protective_cids)
                    and (leg := leg_of(o.cid)) is not None)
    gone = sorted(set(s.protective_cids) - set(fills) - {r.cid for r in resting})
    if gone:  # no longer resting: filled or cancelled while we were down
        _note_fates(gone, _read_together(s, ctx, handle, {}, gone), fills, record)
    entry = next((o for o in fills.values() if o.leg is Leg.ENTRY), None)
    exit_ = next((o for o in fills.values() if o.leg is not Leg.ENTRY), None)
    return Reconciled(Decimal(venue_qty), venue_entry, resting, price,
                      entry.avg_price if entry else None,
                      exit_.avg_price if exit_ else None, exit_.cid if exit_ else None)


def _read_together(s: PositionState, ctx: PositionContext, handle: PositionReports,
                   reads: dict[str, Callable[[], Any]], cids: list[str]) -> dict[str, Any]:
    """`reads` plus a lookup of each client id, all at once under one operation deadline."""
    calls = dict(reads) | {f"lookup {cid}": (lambda cid=cid: _fate(s.symbol, ctx, cid)) for cid in cids}
    if not calls:
        return {}
    with handle.op(f"reconcile: {', '.join(calls)}", ctx.deadlines.operation_s):
        return together(calls)


def _note_fates(cids: list[str], got: dict[str, Any], fills: dict[str, OrderState],
                record: Callable[[OrderFate], None]) -> None:
    """Record each looked-up order's fate (in order); collect the fills among them."""
    for cid in cids:
        fate, o = got[f"lookup {cid}"]
        if o is not None and o.status == "filled":
            fills[o.cid] = o
        record(fate)


def _fate(symbol: str, ctx: PositionContext, cid: str) -> tuple[OrderFate, OrderState | None]:
    """What the venue knows of one of our orders, by client id (safe in a helper thread:
    it touches neither the actor's state nor its supervisor handle)."""
    try:
        o = ctx.gateway.fetch_order(symbol, cid, timeout=ctx.deadlines.venue_call_s)
    except OrderNotFound:
        return OrderFate(cid, "not_found"), None
    return OrderFate(cid, o.status, o.avg_price, o.filled_qty, fee=o.fee), o
