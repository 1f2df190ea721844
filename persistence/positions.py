"""Position persistence with epoch fencing: a replaced actor's writes change nothing.

Every write is `UPDATE … WHERE id = :id AND epoch = :epoch` inside the same transaction as
the order intents and events of that step, so a step is durable as a whole before any order
it asks for is sent (write-ahead), and a stale epoch can neither write nor send.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any, Sequence, cast

from sqlalchemy import CursorResult, bindparam, func, insert, select, update

from core.entry_protocol import restored_mode
from core.errors import Fenced
from core.pnl import Realized, realized
from core.position_types import (
    EntryMode, Leg, OrderIntent, Params, Phase, PositionState, Record, TrailingMode,
)
from core.trailing import Trailing
from core.types import Side
from persistence import coordinator_epoch as coordinator_fence
from persistence.db import Database
from persistence.models import DecimalText, EventRow, OrderRow, PositionRow, SignalRow

OPEN_PHASES = [p.value for p in Phase if not p.final]
_STEP_COLUMNS = (
    "phase", "seq", "qty", "entry_price", "last_price", "stop_price", "stop_cid", "trailing_cid",
    "pending_cid", "activation_price", "trailing_activated", "best_price", "trail_level",
    "stop_loss_pct", "activation_pct", "callback_pct", "trailing_mode", "close_reason",
    "exit_price", "reported", "active_symbol", "updated_ts",
)
_UPDATE_POSITION = (
    update(PositionRow)
    .where(PositionRow.id == bindparam("_id"), PositionRow.epoch == bindparam("_epoch"))
    .values({c: bindparam(c) for c in _STEP_COLUMNS}
            | {"closed_ts": func.coalesce(bindparam("closed_ts"), PositionRow.closed_ts)})
)
_UPDATE_ORDER = (
    update(OrderRow).where(OrderRow.cid == bindparam("_cid"))
    .values({c: bindparam(c) for c in ("status", "avg_price", "filled_qty", "reason", "updated_ts")}
            | {"fee": func.coalesce(bindparam("fee", type_=DecimalText()), OrderRow.fee)})  # a later cancel keeps the fill's fee
)
# every fill's fee; a fill whose venue reply carried none (NULL) makes the position's fees unknown
_POSITION_FEES = select(OrderRow.fee, OrderRow.filled_qty).where(OrderRow.position_id == bindparam("_id"))
_UPDATE_PNL = (
    update(PositionRow).where(PositionRow.id == bindparam("_id"), PositionRow.epoch == bindparam("_epoch"))
    .values({c: bindparam(c) for c in ("gross_pnl", "fees", "net_pnl", "pnl_pct")})
)
_FIRST_PNL = _UPDATE_PNL.where(PositionRow.net_pnl.is_(None))
_INSERT_ORDER = insert(OrderRow)
_INSERT_EVENT = insert(EventRow)


class SymbolBusy(RuntimeError):
    """Another open position already holds this symbol on the account."""


@dataclass(frozen=True, slots=True)
class OrderFate:
    """What became of one order, to be written with the step that learned it."""

    cid: str
    status: str
    avg_price: Decimal | None = None
    filled_qty: Decimal | None = None
    reason: str | None = None
    fee: Decimal | None = None


def _row_values(s: PositionState) -> dict:
    t = s.trailing
    return dict(
        phase=s.phase.value, seq=s.seq, qty=s.qty, entry_price=s.entry_price,
        last_price=s.last_price, stop_price=s.stop_price, stop_cid=s.stop_cid,
        trailing_cid=s.trailing_cid, pending_cid=s.pending.cid if s.pending else None,
        activation_price=t.activation if t else None, trailing_activated=bool(t and t.activated),
        best_price=t.best if t else None, trail_level=t.level if t else None,
        stop_loss_pct=s.params.stop_loss_pct, activation_pct=s.params.activation_pct,
        callback_pct=s.params.callback_pct, trailing_mode=s.params.trailing_mode.value,
        close_reason=s.close_reason, exit_price=s.exit_price, reported=s.reported,
        active_symbol=None if s.phase.final else s.symbol,
    )


def state_from_row(r: PositionRow, defaults: Params) -> PositionState:
    phase = Phase(r.phase)
    mode = restored_mode(phase, r.stop_cid, r.pending_cid, defaults.entry_mode)
    params = replace(defaults, stop_loss_pct=r.stop_loss_pct, activation_pct=r.activation_pct,
                     callback_pct=r.callback_pct, trailing_mode=TrailingMode(r.trailing_mode),
                     notional=r.notional, entry_mode=mode)
    # a stop held before the entry is a close-position one: it must be known gone before the end
    held = r.stop_cid if mode is EntryMode.STOP_FIRST and phase in (Phase.ENTERING, Phase.WITHDRAWING) else None
    close_stops = (held,) if held else ()
    trailing = None
    if r.activation_price is not None:
        trailing = Trailing(r.activation_price, r.callback_pct, r.trailing_activated,
                            r.best_price, r.trail_level)
    return PositionState(
        id=r.id, signal_id=r.signal_id, wave_id=r.wave_id, symbol=r.symbol, side=Side(r.side),
        params=params, phase=phase, close_stops=close_stops, epoch=r.epoch, seq=r.seq, qty=r.qty,
        entry_price=r.entry_price, last_price=r.last_price, stop_price=r.stop_price,
        stop_cid=r.stop_cid, trailing=trailing, trailing_cid=r.trailing_cid,
        close_reason=r.close_reason, exit_price=r.exit_price, reported=r.reported,
    )


class PositionStore:
    def __init__(self, db: Database):
        self.db = db

    def create(self, s: PositionState, *, origin: str = "signal", coordinator_epoch: int | None = None) -> None:
        """Insert a new position; SymbolBusy if the symbol is already held (invariant 10);
        Fenced if `coordinator_epoch` (the creating coordinator's) is no longer current.

        The signal points at its position in the same transaction, so a restart finds every
        launched position through its signal and never launches a second one for it."""
        now = time.time()
        row = PositionRow(id=s.id, signal_id=s.signal_id, wave_id=s.wave_id, symbol=s.symbol,
                          side=s.side.value, epoch=s.epoch, notional=s.params.notional,
                          opened_ts=now, updated_ts=now, origin=origin, **_row_values(s))
        try:
            with self.db.tx("position_create", s.symbol) as tx:
                coordinator_fence.check(tx, coordinator_epoch)
                if tx.scalar(select(func.count()).where(PositionRow.active_symbol == s.symbol)):
                    raise SymbolBusy(s.symbol)
                tx.add(row)
                # in the same transaction: a restarted coordinator must find the signal's own
                # position, or it would launch the signal again and mislabel it "skipped"
                tx.flush()
                tx.execute(update(SignalRow).where(SignalRow.id == s.signal_id,
                                                   SignalRow.position_id.is_(None))
                           .values(position_id=s.id))
        except SymbolBusy:
            raise
        except Exception as e:  # the unique constraint is the last word when two race
            if "uq_positions_active_symbol" in str(e) or "UNIQUE" in str(e).upper():
                raise SymbolBusy(s.symbol) from None
            raise

    def commit_step(self, s: PositionState, *, intents: Sequence[OrderIntent] = (),
                    fates: Sequence[OrderFate] = (), records: Sequence[Record] = ()) -> Realized | None:
        """Persist one transition atomically, fenced by the state's epoch. A final state also
        gets its realized P&L (from its orders' fees), which is returned.

        Every tick of every position comes through here, so the statements are built once
        (compiled and cached by SQLAlchemy) and run on the Core connection, without the ORM."""
        now = time.time()
        values = _row_values(s) | {"updated_ts": now, "closed_ts": now if s.phase.final else None,
                                   "_id": s.id, "_epoch": s.epoch}
        pnl = None
        with self.db.tx("db_write", s.symbol) as tx:
            conn = tx.connection()
            if conn.execute(_UPDATE_POSITION, values).rowcount != 1:
                raise Fenced(f"position {s.id}: epoch {s.epoch} is no longer current")
            if intents:
                conn.execute(_INSERT_ORDER, [dict(
                    cid=i.cid, position_id=s.id, epoch=s.epoch, symbol=s.symbol, leg=i.leg.value,
                    side=i.side, qty=i.qty, stop_price=i.stop_price, activation=i.activation,
                    callback_pct=i.callback_pct, attempt=i.attempt, status="intent",
                    avg_price=None, filled_qty=None, reason=None, created_ts=now, updated_ts=now)
                    for i in intents])
            for f in fates:
                conn.execute(_UPDATE_ORDER, dict(_cid=f.cid, status=f.status, avg_price=f.avg_price,
                                                 filled_qty=f.filled_qty, reason=f.reason, fee=f.fee,
                                                 updated_ts=now))
            if s.phase.final and s.qty and s.entry_price is not None and s.exit_price is not None:
                # the fees of every fill so far, this step's included (each fill's fee is
                # written once, with the step that learned of it)
                fills = [fee for fee, qty in conn.execute(_POSITION_FEES, {"_id": s.id}) if qty]
                fees = sum((f for f in fills if f is not None), Decimal(0))
                pnl = realized(s.side, s.qty, s.entry_price, s.exit_price, fees,
                               fees_known=None not in fills)
                values = dict(_id=s.id, _epoch=s.epoch, gross_pnl=pnl.gross,
                              fees=pnl.fees if pnl.fees_known else None, net_pnl=pnl.net, pnl_pct=pnl.pct)
                if conn.execute(_FIRST_PNL, values).rowcount == 1:  # the close itself: into the event log
                    conn.execute(_INSERT_EVENT, [dict(
                        ts=now, kind="realized", position_id=s.id, wave_id=s.wave_id, epoch=s.epoch,
                        data={"symbol": s.symbol, "reason": s.close_reason, "net": str(pnl.net),
                              "fees": str(pnl.fees) if pnl.fees_known else "unknown", "gross": str(pnl.gross),
                              "pct": str(pnl.pct)})])
                else:
                    conn.execute(_UPDATE_PNL, values)
            if records:
                conn.execute(_INSERT_EVENT, [dict(ts=now, kind=r.kind, position_id=s.id, wave_id=s.wave_id,
                                                  epoch=s.epoch, data=r.data) for r in records])
        return pnl

    def bump_epoch(self, position_id: str, expected: int) -> int:
        """Raise the epoch (fencing every older actor); Fenced if someone else already did."""
        with self.db.tx("epoch_bump") as tx:
            bump = (update(PositionRow).where(PositionRow.id == position_id, PositionRow.epoch == expected)
                    .values(epoch=expected + 1, updated_ts=time.time()))
            # an UPDATE answers with a cursor result, the kind that counts its rows
            res = cast("CursorResult[Any]", tx.execute(bump))
            if res.rowcount != 1:
                raise Fenced(f"position {position_id}: epoch moved past {expected}")
        return expected + 1

    def flag(self, position_id: str, reason: str) -> None:
        """Mark a position as needing an operator; not fenced: the supervisor owns this flag."""
        with self.db.tx("db_write") as tx:
            tx.execute(update(PositionRow).where(PositionRow.id == position_id)
                       .values(needs_attention=True, attention_reason=reason, updated_ts=time.time()))
            tx.add(EventRow(ts=time.time(), kind="needs_attention", position_id=position_id,
                            data={"reason": reason}))

    def take_over_open(self, defaults: Params) -> list[PositionState]:
        """Cold start: raise the epoch of every open position in one transaction (fencing any
        writer of a previous run) and return their states under the new epochs."""
        with self.db.tx("epoch_bump") as tx:
            tx.execute(update(PositionRow).where(PositionRow.phase.in_(OPEN_PHASES))
                       .values(epoch=PositionRow.epoch + 1, updated_ts=time.time()))
            rows = tx.scalars(select(PositionRow).where(PositionRow.phase.in_(OPEN_PHASES))
                              .order_by(PositionRow.opened_ts)).all()
            return [state_from_row(r, defaults) for r in rows]

    def open_symbols(self) -> dict[str, str]:
        """Symbol → id of every position holding its symbol (open, or opening)."""
        with self.db.tx("db_read") as tx:
            rows = tx.execute(select(PositionRow.active_symbol, PositionRow.id)
                              .where(PositionRow.active_symbol.is_not(None))).all()
            return {symbol: pid for symbol, pid in rows if symbol is not None}

    def open_notional(self) -> dict[str, Decimal]:
        """Position id → planned entry notional of every position holding its symbol."""
        with self.db.tx("db_read") as tx:
            return dict(tx.execute(select(PositionRow.id, PositionRow.notional)
                                   .where(PositionRow.active_symbol.is_not(None))).all())

    def record(self, kind: str, data: dict, *, position_id: str | None = None) -> None:
        """Append one entry to the event log that belongs to no position step (recovery)."""
        with self.db.tx("db_write") as tx:
            tx.add(EventRow(ts=time.time(), kind=kind, position_id=position_id, data=data))

    def load(self, position_id: str, defaults: Params) -> PositionState:
        with self.db.tx("db_read") as tx:
            row = tx.get(PositionRow, position_id)
            if row is None:
                raise KeyError(position_id)
            return state_from_row(row, defaults)

    def unresolved_orders(self, position_id: str) -> list[OrderRow]:
        """Intents whose fate we never learned: they must be looked up before anything else."""
        with self.db.tx("db_read") as tx:
            return list(tx.scalars(select(OrderRow).where(
                OrderRow.position_id == position_id,
                OrderRow.status.in_(["intent", "unknown"]))).all())

    def unresolved_by_position(self) -> dict[str, list[tuple[str, str]]]:
        """(cid, leg) of every intent of unknown fate, by position: one query at a cold start."""
        out: dict[str, list[tuple[str, str]]] = {}
        with self.db.tx("db_read") as tx:
            for pid, cid, leg in tx.execute(select(OrderRow.position_id, OrderRow.cid, OrderRow.leg)
                                            .where(OrderRow.status.in_(["intent", "unknown"]))):
                out.setdefault(pid, []).append((cid, leg))
        return out

    def order_intent(self, row: OrderRow) -> OrderIntent:
        return OrderIntent(cid=row.cid, leg=Leg(row.leg), side=row.side, qty=row.qty,
                           stop_price=row.stop_price, activation=row.activation,
                           callback_pct=row.callback_pct, attempt=row.attempt)
