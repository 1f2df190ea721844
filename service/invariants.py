"""The invariants (README: What always holds), checked against the database and the venue after the fact.

Used by the hypothesis stateful test after every step and by `bin/trader chaos` at the end of
a run. Call it when the service is quiescent (`settle`), or transient states will show.
"""
from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from sqlalchemy import select

from actors.messages import CoordinatorStatus, GetState
from core import trailing as tr
from core.client_ids import epoch_of
from core.phases import AT_REST, HELD_OPEN, LIVE, STOP_RESTING
from core.position_types import position_id_of
from core.types import Side
from exchange.gateway import OrderState, VenuePosition
from persistence.models import EventRow, OrderRow, PositionRow, SignalRow, WaveRow
from service.venue_truth import assess

if TYPE_CHECKING:
    from service.app import Service


@dataclass(frozen=True)
class Violation:
    invariant: int
    detail: str

    def __str__(self) -> str:
        return f"invariant {self.invariant}: {self.detail}"


def settle(svc: "Service", timeout_s: float = 20.0) -> bool:
    """Wait until no wave is in progress and every position is idle in a stable phase.

    Asking each actor (and the coordinator) for its state is the barrier: the answer comes
    after every message queued before it, so nothing is still in flight when we look.
    """
    end = time.monotonic() + timeout_s
    stable = AT_REST
    calm = 0
    while time.monotonic() < end and calm < 2:
        kids = [h for k, h in list(svc.supervisor.children.items()) if k != "coordinator"]
        try:
            coord = svc._coordinator.ask(CoordinatorStatus(), timeout=max(0.1, end - time.monotonic()))
            states = [h.ref.ask(GetState(), timeout=max(0.1, end - time.monotonic()))
                      for h in kids if not h.retired]
        except Exception:
            calm = 0
            continue
        restarting = any(h.retired and not h.done for h in kids)
        quiet = all(s is None or s.phase.value in stable and s.pending is None for s in states)
        # waves held in a paused coordinator's inbox are quiet: nothing will happen to them
        waves_quiet = not any(coord["waves_in_progress"].values()) and (coord["paused"] or not coord["inbox"])
        calm = calm + 1 if quiet and not restarting and waves_quiet else 0
        if calm < 2:
            time.sleep(0.01)
    return calm >= 2


@dataclass(frozen=True)
class _World:
    """One read of the database and the venue: what every check below judges."""

    svc: "Service"
    positions: list[PositionRow]
    orders: dict[str, OrderRow]  # by client id
    stop_events: list[EventRow]  # every stop placed, in order
    signals: list[SignalRow]  # of completed waves
    venue_orders: list[OrderState]
    venue_pos: dict[str, VenuePosition]  # by symbol
    by_id: dict[str, PositionRow]
    open_rows: list[PositionRow]


def _read_world(svc: "Service") -> _World:
    with svc.db.tx("db_read") as tx:
        positions = list(tx.scalars(select(PositionRow)))
        orders = {o.cid: o for o in tx.scalars(select(OrderRow))}
        stop_events = list(tx.scalars(select(EventRow).where(EventRow.kind == "stop_placed").order_by(EventRow.id)))
        signals = list(tx.scalars(select(SignalRow).join(WaveRow, WaveRow.id == SignalRow.wave_id)
                                  .where(WaveRow.status == "complete")))
    venue_orders = svc.gateway.open_orders(None, timeout=svc.cfg.deadlines.venue_call_s)
    venue_pos = {p.symbol: p for p in svc.gateway.positions(timeout=svc.cfg.deadlines.venue_call_s)}
    return _World(svc=svc, positions=positions, orders=orders, stop_events=stop_events, signals=signals,
                  venue_orders=venue_orders, venue_pos=venue_pos, by_id={p.id: p for p in positions},
                  open_rows=[p for p in positions if p.phase in LIVE])


def check_invariants(svc: "Service") -> list[Violation]:
    """Every violation of the invariants, checked in the order of their numbers."""
    world = _read_world(svc)
    return [v for check in CHECKS for v in check(world)]


def ratchet(w: _World) -> list[Violation]:
    """1 Ratchet: a stop only ever tightens, read from the append-only log of every stop placed."""
    out: list[Violation] = []
    last: dict[str, Decimal] = {}
    for ev in w.stop_events:
        p = w.by_id.get(ev.position_id) if ev.position_id else None
        if p is None:
            continue
        side, stop = Side(p.side), Decimal(ev.data["stop"])
        prev = last.get(p.id)
        if prev is not None and tr.is_tighter(prev, stop, side):
            out.append(Violation(1, f"{p.symbol} stop loosened {prev} -> {stop}"))
        last[p.id] = stop
    return out


def activation(w: _World) -> list[Violation]:
    """2 Activation: no trailing level before activation; once activated, the best price
    reached the activation price and the level is `best × (1 ∓ callback%)`, never looser.

    A native trailing stop runs the callback of the order resting at the venue (a change that
    would loosen it is not applied to that order)."""
    out: list[Violation] = []
    venue_cb = {o.cid: o.callback_pct for o in w.venue_orders if o.callback_pct is not None}
    for p in w.positions:
        if p.activation_price is None:
            continue
        side = Side(p.side)
        if not p.trailing_activated and p.trail_level is not None:
            out.append(Violation(2, f"{p.symbol} trailing level set before activation"))
        if p.trailing_activated and p.best_price is not None:
            reached = p.best_price >= p.activation_price if side is Side.LONG else p.best_price <= p.activation_price
            spec = w.svc.markets[p.symbol]
            cb = venue_cb.get(p.trailing_cid, p.callback_pct) \
                if p.trailing_mode == "native" and p.trailing_cid is not None else p.callback_pct
            expected = tr.trail_level(p.best_price, side, cb, spec)
            if not reached or tr.tighter(p.trail_level, expected, side) != p.trail_level:
                out.append(Violation(2, f"{p.symbol} trailing level {p.trail_level} inconsistent with best {p.best_price}"))
    return out


def native_trailing_at_venue(w: _World) -> list[Violation]:
    """1 and 2 for native trailing stops, from the venue's own orders (see below)."""
    return _native_trailing_at_venue(w.svc, w.open_rows, {o.cid: o for o in w.venue_orders}, w.orders)


def protective_side(w: _World) -> list[Violation]:
    """3 Protective side: every stop sent was on the loss side of the price it was sent at."""
    out: list[Violation] = []
    for ev in w.stop_events:
        p = w.by_id.get(ev.position_id) if ev.position_id else None
        if p is None:
            continue
        side, stop = Side(p.side), Decimal(ev.data["stop"])
        price = ev.data.get("price")
        if price not in (None, "None") and not tr.is_protective(stop, Decimal(price), side):
            out.append(Violation(3, f"{p.symbol} stop {stop} sent on the wrong side of {price}"))
    return out


def always_protected(w: _World) -> list[Violation]:
    """4 Always protected: our stop rests, and the venue's own orders protect the position
    (a reduce-only stop on the protective side for the whole quantity)."""
    out: list[Violation] = []
    venue_cids = {o.cid for o in w.venue_orders}
    covers = assess(w.venue_pos.values(), w.venue_orders)
    for p in w.open_rows:
        if p.phase not in STOP_RESTING:
            continue
        if p.stop_cid not in venue_cids:
            out.append(Violation(4, f"{p.symbol} ({p.phase}) has no resting stop at the venue"))
        elif (c := covers.get(p.symbol)) is not None and not c.protected:
            out.append(Violation(4, f"{p.symbol}: no resting order at the venue would close its {c.qty}"))
    return out


def one_outcome(w: _World) -> list[Violation]:
    """6 Exactly one outcome per signal of a completed wave, and wave statistics are their sum."""
    out: list[Violation] = []
    for s in w.signals:
        if s.outcome is None:
            out.append(Violation(6, f"signal {s.id} of a completed wave has no outcome"))
    by_wave: dict[str, Counter[str]] = defaultdict(Counter)
    for s in w.signals:
        by_wave[s.wave_id][s.outcome or "pending"] += 1
    for wv in w.svc.stats.waves:
        if wv.wave_id in by_wave and dict(by_wave[wv.wave_id]) != wv.outcomes:
            out.append(Violation(6, f"wave {wv.wave_id} stats {wv.outcomes} != outcomes {dict(by_wave[wv.wave_id])}"))
    return out


def write_ahead(w: _World) -> list[Violation]:
    """7 Write-ahead: every order of ours at the venue was recorded first; no double entry."""
    out: list[Violation] = []
    for o in w.venue_orders:
        if position_id_of(o.cid) and o.cid not in w.orders:
            out.append(Violation(7, f"order {o.cid} at the venue was never recorded (orphan)"))
    entries = Counter(o.position_id for o in w.orders.values() if o.leg == "e" and o.status == "filled")
    for pid, n in entries.items():
        if n > 1:
            out.append(Violation(7, f"position {pid} has {n} filled entry orders"))
    return out


def fencing(w: _World) -> list[Violation]:
    """8 Fencing: live actors run the database's epoch; resting orders belong to it and are the
    position's current stops."""
    out: list[Violation] = []
    for p in w.open_rows:
        live = w.svc.supervisor.epochs.get(p.id)
        if live is not None and live != p.epoch:
            out.append(Violation(8, f"{p.symbol}: supervisor epoch {live} != db epoch {p.epoch}"))
    for o in w.venue_orders:
        owner = position_id_of(o.cid)
        row = w.by_id.get(owner) if owner else None
        if row is not None and row.phase in LIVE and (epoch := epoch_of(o.cid)) is not None:
            if epoch > row.epoch:
                out.append(Violation(8, f"{o.cid} carries an epoch newer than the database's {row.epoch}"))
            if o.cid not in (row.stop_cid, row.trailing_cid):
                out.append(Violation(8, f"{o.cid} rests at the venue but is not {row.symbol}'s current stop"))
    return out


def db_and_venue_agree(w: _World) -> list[Violation]:
    """9 The database and the venue agree: a position held open is held at the venue with our
    side and quantity, and the venue holds nothing no open position owns."""
    out: list[Violation] = []
    for p in w.open_rows:
        vp = w.venue_pos.get(p.symbol)
        if p.phase in HELD_OPEN:
            if vp is None or abs(vp.qty) != p.qty or (vp.qty > 0) != (p.side == "long"):
                out.append(Violation(9, f"{p.symbol}: db {p.side} {p.qty}, venue {vp.qty if vp else 0}"))
    held = {p.symbol for p in w.open_rows}
    for sym, vp in w.venue_pos.items():
        if sym not in held:
            out.append(Violation(9, f"venue holds {vp.qty} {sym} that no open position owns"))
    return out


def one_per_symbol(w: _World) -> list[Violation]:
    """10 One open position per symbol."""
    return [Violation(10, f"{n} open positions for {sym}")
            for sym, n in Counter(p.symbol for p in w.open_rows).items() if n > 1]


CHECKS: tuple[Callable[[_World], list[Violation]], ...] = (
    ratchet, activation, native_trailing_at_venue, protective_side, always_protected, one_outcome,
    write_ahead, fencing, db_and_venue_agree, one_per_symbol,
)


def _native_trailing_at_venue(svc: "Service", open_rows: list[PositionRow], resting: dict[str, OrderState],
                              orders: dict[str, OrderRow]) -> list[Violation]:
    """1 and 2 for native trailing stops, from the venue's orders rather than our levels: the
    order rests; armed in our books means armed at the venue; unarmed, it arms where we think;
    and no replacement fires later than the order it replaced would have (the venue keeps a
    cancelled order's last best, and an order's trigger only tightens afterwards, so a current
    trigger looser than its predecessor's last one was looser when it was placed)."""
    out: list[Violation] = []
    t = svc.cfg.deadlines.venue_call_s
    earlier: dict[str, list[str]] = defaultdict(list)
    for row in sorted(orders.values(), key=lambda o: (o.created_ts, o.cid)):
        if row.leg == "t" and row.status == "cancelled":
            earlier[row.position_id].append(row.cid)
    for p in open_rows:
        if p.phase != "trailing" or p.trailing_mode != "native" or not p.trailing_cid:
            continue
        o = resting.get(p.trailing_cid)
        if o is None:
            out.append(Violation(2, f"{p.symbol}: native trailing stop {p.trailing_cid} is not resting at the venue"))
            continue
        if o.activated is False and p.trailing_activated:
            out.append(Violation(2, f"{p.symbol}: trailing stop armed in our books, unarmed at the venue"))
        if o.activated is False and o.activation is not None and p.activation_price is not None \
                and o.activation != p.activation_price:
            out.append(Violation(2, f"{p.symbol}: venue trailing stop arms at {o.activation}, ours at {p.activation_price}"))
        now = o.trailing_trigger()
        side = Side(p.side)
        for cid in earlier.get(p.id, []):
            try:
                old = svc.gateway.fetch_order(p.symbol, cid, timeout=t)
            except Exception:
                continue  # the venue keeps no record of it: nothing to compare
            was = old.trailing_trigger()
            if was is None:
                continue
            if now is None or tr.is_tighter(was, now, side):
                out.append(Violation(1, f"{p.symbol}: native trailing {cid} -> {o.cid} loosened at the venue "
                                        f"(trigger {was} -> {now if now is not None else 'unarmed'})"))
    return out
