"""Read-only views for the control plane: positions, waves, signals and events.

Live figures come from each position's own actor (`GetState`, always with a deadline: a
stuck actor must never hang the console); when an actor does not answer in time its last
persisted row is shown instead and marked as such. Reads go straight to the engine, bounded
by the database's own timeouts.
"""
from __future__ import annotations

import time
from decimal import Decimal
from typing import cast

import pykka
from sqlalchemy import desc, func, or_, select
from sqlalchemy.orm import Session

from actors.messages import GetState
from control import protocol as p
from control import replies as r
from control.ports import Operated
from core.pnl import gross
from core.position_types import PositionState, position_id_of
from core.types import Side
from persistence import trades
from persistence.models import EventRow, OrderRow, PositionRow, SignalRow, WaveRow
from persistence.positions import OPEN_PHASES

CENT = Decimal("0.0001")
PCT = Decimal("0.01")


def pnl(side: str, qty, entry, price) -> Decimal | None:
    if qty is None or entry is None or price is None:
        return None
    return gross(Side(side), qty, entry, price).quantize(CENT)


def money_fields(qty, entry, value: Decimal | None) -> dict:
    """P&L, its percentage of the entry notional, and that notional (USDT)."""
    notional = qty * entry if qty is not None and entry is not None else None
    pct = (value / notional * 100).quantize(PCT) if value is not None and notional else None
    return {"pnl": value, "pnl_pct": pct, "qty_usdt": None if notional is None else notional.quantize(PCT)}


def trailing_summary(mode: str, activation, activated: bool, best, level, callback) -> str:
    if activation is None:
        return "-"
    if not activated:
        return f"{mode}: armed at {activation}, cb {callback}%"
    return f"{mode}: active, best {best}, level {level}, cb {callback}%"


def from_state(s: PositionState, needs_attention: bool = False) -> r.PositionOut:
    t = s.trailing
    price = s.exit_price if s.phase.final else s.last_price
    return r.PositionOut(
        id=s.id, symbol=s.symbol, side=s.side.value, phase=s.phase.value, epoch=s.epoch, qty=s.qty,
        entry=s.entry_price, last=s.last_price, stop=s.stop_price,
        trailing=trailing_summary(s.params.trailing_mode, t.activation if t else None,
                                  bool(t and t.activated), t and t.best, t and t.level, s.params.callback_pct),
        **money_fields(s.qty, s.entry_price, pnl(s.side.value, s.qty, s.entry_price, price)),
        activation_pct=s.params.activation_pct,
        callback_pct=s.params.callback_pct, stop_loss_pct=s.params.stop_loss_pct, live=True,
        needs_attention=needs_attention)


def from_row(row: PositionRow) -> r.PositionOut:
    final = row.phase not in OPEN_PHASES
    return r.PositionOut(
        id=row.id, symbol=row.symbol, side=row.side, phase=row.phase, epoch=row.epoch, qty=row.qty,
        entry=row.entry_price, last=row.last_price, stop=row.stop_price,
        trailing=trailing_summary(row.trailing_mode, row.activation_price, row.trailing_activated,
                                  row.best_price, row.trail_level, row.callback_pct),
        **money_fields(row.qty, row.entry_price,
                       row.net_pnl.quantize(CENT) if final and row.net_pnl is not None
                       else pnl(row.side, row.qty, row.entry_price, row.exit_price if final else row.last_price)),
        activation_pct=row.activation_pct, callback_pct=row.callback_pct, stop_loss_pct=row.stop_loss_pct,
        live=False, needs_attention=row.needs_attention)


def live_states(handles: list, timeout_s: float) -> dict[str, PositionState]:
    """Ask every actor for its state at once; keep whatever arrives before one deadline."""
    futures = []
    for h in handles:
        try:
            futures.append((h.key, h.ref.ask(GetState(), block=False)))
        except pykka.ActorDeadError:
            pass
    end = time.monotonic() + timeout_s
    out: dict[str, PositionState] = {}
    for key, fut in futures:
        try:
            s = fut.get(timeout=max(0.0, end - time.monotonic()))
        except (pykka.Timeout, pykka.ActorDeadError):
            continue
        if isinstance(s, PositionState):
            out[key] = s
    return out


class Queries:
    def __init__(self, svc: Operated, timeout_s: float) -> None:
        self.svc, self.timeout_s = svc, timeout_s

    def session(self) -> Session:
        return Session(self.svc.db.engine)

    def position_handles(self) -> list:
        return [h for k, h in list(self.svc.supervisor.children.items())
                if k != "coordinator" and h.ref is not None and not h.done]

    def positions(self) -> r.PositionsReply:
        handles = self.position_handles()
        ids = {h.key for h in handles}
        with self.session() as s:
            rows = s.scalars(select(PositionRow).where(or_(PositionRow.phase.in_(OPEN_PHASES),
                                                           PositionRow.id.in_(ids)))).all()
        live = live_states([h for h in handles if not h.retired], min(2.0, self.timeout_s))
        out = [from_state(live[row.id], row.needs_attention) if row.id in live else from_row(row)
               for row in rows]
        open_pnl = [x.pnl for x in out if x.phase in OPEN_PHASES and x.pnl is not None]
        return r.PositionsReply(positions=sorted(out, key=lambda x: x.symbol),
                                unrealized=sum(open_pnl, Decimal(0)).quantize(CENT))

    def find_row(self, target: str) -> PositionRow | None:
        """A position by id, or the open (else most recent) position of a symbol."""
        with self.session() as s:
            row = s.get(PositionRow, target)
            if row is not None:
                return row
            sym = self.symbol(target)
            if sym is None:
                return None
            return s.scalars(select(PositionRow).where(PositionRow.symbol == sym)
                             .order_by(PositionRow.active_symbol.is_(None), desc(PositionRow.opened_ts))
                             .limit(1)).first()

    def symbol(self, target: str) -> str | None:
        """BTC/USDT:USDT, btc/usdt:usdt, BTCUSDT and BTC all name the same market."""
        markets = self.svc.markets
        t = target.strip().upper()
        for cand in (t, f"{t}/USDT:USDT", f"{t.removesuffix('USDT')}/USDT:USDT"):
            if cand in markets:
                return cand
        return None

    def position(self, args: p.PositionArgs) -> r.PositionDetailReply:
        row = self.find_row(args.target)
        if row is None:
            raise p.ProtocolError(p.NOT_FOUND, f"no position for {args.target!r} (a symbol or position id)")
        h = self.svc.supervisor.children.get(row.id)
        live = live_states([h], min(2.0, self.timeout_s)) if h is not None and not h.retired else {}
        pos = from_state(live[row.id], row.needs_attention) if row.id in live else from_row(row)
        with self.session() as s:
            orders = s.scalars(select(OrderRow).where(OrderRow.position_id == row.id).order_by(OrderRow.created_ts)).all()
            events = s.scalars(select(EventRow).where(EventRow.position_id == row.id)
                               .order_by(desc(EventRow.id)).limit(args.events)).all()
        venue_orders, venue_error = None, None
        try:
            gw = self.svc.venue
            venue_orders = [r.VenueOrderOut(cid=o.cid, leg=o.leg.value, status=o.status, stop_price=o.stop_price)
                            for o in gw.open_orders(row.symbol, timeout=self.timeout_s)
                            if position_id_of(o.cid) == row.id]
        except Exception as e:  # the venue may be the very thing that is down
            venue_error = f"{type(e).__name__}: {e}"
        return r.PositionDetailReply(
            position=pos, signal_id=row.signal_id, wave_id=row.wave_id, trailing_mode=row.trailing_mode,
            activation_price=row.activation_price, trailing_activated=row.trailing_activated,
            best_price=row.best_price, trail_level=row.trail_level, stop_cid=row.stop_cid,
            trailing_cid=row.trailing_cid, pending_cid=row.pending_cid, close_reason=row.close_reason,
            exit_price=row.exit_price, attention_reason=row.attention_reason, opened_ts=row.opened_ts,
            closed_ts=row.closed_ts, orders=[order_out(o) for o in orders], venue_orders=venue_orders,
            venue_error=venue_error, events=[event_out(e) for e in reversed(events)])

    def waves(self, args: p.WavesArgs) -> r.WavesReply:
        with self.session() as s:
            rows = s.scalars(select(WaveRow).order_by(desc(WaveRow.received_ts)).limit(args.limit)).all()
            counts = self._outcomes(s, [w.id for w in rows])
        money = trades.by_wave(self.svc.db, [w.id for w in rows])
        return r.WavesReply(waves=[wave_out(w, counts.get(w.id, {}), money.get(w.id)) for w in rows])

    def trades(self, args: p.TradesArgs) -> r.TradesReply:
        sym = None
        if args.symbol is not None:
            sym = self.symbol(args.symbol)
            if sym is None:
                raise p.ProtocolError(p.NOT_FOUND, f"{args.symbol!r} is not a known symbol")
        return trades_reply(self.svc.db, args, sym)

    def wave(self, args: p.WaveArgs) -> r.WaveReply:
        with self.session() as s:
            w = s.get(WaveRow, args.wave_id)
            if w is None:
                raise p.ProtocolError(p.NOT_FOUND, f"no wave {args.wave_id!r}")
            sigs = s.scalars(select(SignalRow).where(SignalRow.wave_id == w.id).order_by(SignalRow.rank)).all()
            counts = self._outcomes(s, [w.id])
            net = dict(s.execute(select(PositionRow.id, PositionRow.net_pnl).where(PositionRow.wave_id == w.id)).all())
        money = trades.by_wave(self.svc.db, [w.id]).get(w.id)
        return r.WaveReply(wave=wave_out(w, counts.get(w.id, {}), money), signals=[
            r.SignalOut(id=x.id, rank=x.rank, symbol=x.symbol, side=x.side, score=x.score, outcome=x.outcome,
                        reason=x.reason, position_id=x.position_id, pnl=net.get(x.position_id) if x.position_id else None) for x in sigs])

    @staticmethod
    def _outcomes(s: Session, wave_ids: list[str]) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        if wave_ids:
            for wid, outcome, n in s.execute(select(SignalRow.wave_id, SignalRow.outcome, func.count())
                                             .where(SignalRow.wave_id.in_(wave_ids))
                                             .group_by(SignalRow.wave_id, SignalRow.outcome)).all():
                out.setdefault(wid, {})[outcome or "pending"] = n
        return out

    def events(self, args: p.EventsArgs) -> r.EventsReply:
        q = select(EventRow)
        if args.target:
            sym = self.symbol(args.target)
            with self.session() as s:
                ids = s.scalars(select(PositionRow.id).where(
                    or_(PositionRow.id == args.target, PositionRow.symbol == sym))).all()
            if not ids:
                raise p.ProtocolError(p.NOT_FOUND, f"no position for {args.target!r}")
            q = q.where(EventRow.position_id.in_(ids))
        with self.session() as s:
            if args.after_id is not None:  # following: oldest new events first
                rows = s.scalars(q.where(EventRow.id > args.after_id).order_by(EventRow.id).limit(args.limit)).all()
            else:
                rows = list(reversed(s.scalars(q.order_by(desc(EventRow.id)).limit(args.limit)).all()))
            last = s.scalar(select(func.max(EventRow.id)))
            pids = {e.position_id for e in rows if e.position_id}
            symbols = dict(s.execute(select(PositionRow.id, PositionRow.symbol)
                                     .where(PositionRow.id.in_(pids))).all()) if pids else {}
        last_id = rows[-1].id if rows else (args.after_id if args.after_id is not None else last)
        return r.EventsReply(events=[event_out(e, symbols.get(e.position_id) if e.position_id else None) for e in rows], last_id=last_id)


def order_out(o: OrderRow) -> r.OrderOut:
    return r.OrderOut(cid=o.cid, leg=o.leg, side=o.side, qty=o.qty, status=o.status, epoch=o.epoch,
                      stop_price=o.stop_price, activation=o.activation, callback_pct=o.callback_pct,
                      avg_price=o.avg_price, fee=o.fee, reason=o.reason)


def event_out(e: EventRow, symbol: str | None = None) -> r.EventOut:
    return r.EventOut(id=e.id, ts=e.ts, kind=e.kind, position_id=e.position_id, symbol=symbol,
                      wave_id=e.wave_id, epoch=e.epoch, data=e.data or {})


def wave_out(w: WaveRow, outcomes: dict[str, int], money: trades.Totals | None = None) -> r.WaveOut:
    return r.WaveOut(id=w.id, status=w.status, source=w.source, received_ts=w.received_ts,
                     completed_ts=w.completed_ts, n_signals=w.n_signals, outcomes=outcomes, reason=w.reason,
                     pnl=money.net if money else None, closed=money.trades if money else 0)


def trades_reply(db, args: p.TradesArgs, symbol: str | None) -> r.TradesReply:
    rows = trades.closed_trades(db, args.since_ts, symbol)[-args.limit:]
    t = trades.totals_of(rows)
    return r.TradesReply(trades=[trade_out(x) for x in rows], count=t.trades, gross=t.gross,
                         fees=t.fees, net=t.net, wins=t.wins)


def trade_out(x: PositionRow) -> r.TradeOut:
    # a closed trade had a fill: its quantity and entry are set (the reply model checks it)
    qty, entry = cast(Decimal, x.qty), cast(Decimal, x.entry_price)
    return r.TradeOut(id=x.id, symbol=x.symbol, side=x.side, qty=qty, entry=entry, exit=x.exit_price,
                      gross=x.gross_pnl, fees=x.fees, net=x.net_pnl, pct=x.pnl_pct, reason=x.close_reason,
                      wave_id=x.wave_id, opened_ts=x.opened_ts, closed_ts=x.closed_ts,
                      duration_s=None if x.closed_ts is None else round(x.closed_ts - x.opened_ts, 3))
