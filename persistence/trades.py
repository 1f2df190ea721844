"""Closed positions as trades: the realized P&L the database holds, and its totals.

One query serves the trade list, the totals and the per-wave sums, so `bin/trader trades`
always adds up to the realized figure of `status` and the run summary.
"""
from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import Select, select

from core.phases import CLOSED_TRADE, values
from persistence.db import Database
from persistence.models import PositionRow

CLOSED_PHASES = values(CLOSED_TRADE)
REREAD_S = 120.0  # far past any database call timeout
ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Totals:
    trades: int = 0
    gross: Decimal = ZERO
    fees: Decimal = ZERO
    net: Decimal = ZERO
    wins: int = 0


def closed_query(since_ts: float | None = None, symbol: str | None = None,
                 wave_ids: list[str] | None = None) -> Select:
    """Positions that opened and closed (a failed entry never traded), oldest close first."""
    q = (select(PositionRow).where(PositionRow.phase.in_(CLOSED_PHASES),
                                   PositionRow.entry_price.is_not(None))
         .order_by(PositionRow.closed_ts, PositionRow.id))
    if since_ts is not None:
        q = q.where(PositionRow.closed_ts >= since_ts)
    if symbol is not None:
        q = q.where(PositionRow.symbol == symbol)
    if wave_ids is not None:
        q = q.where(PositionRow.wave_id.in_(wave_ids))
    return q


def totals_of(rows) -> Totals:
    """Summed in Python: SQLite would add the text-stored decimals as floats."""
    gross = fees = net = ZERO
    wins = 0
    for r in rows:
        gross += r.gross_pnl or ZERO
        fees += r.fees or ZERO
        net += r.net_pnl or ZERO
        wins += 1 if (r.net_pnl or ZERO) > 0 else 0
    return Totals(len(rows), gross, fees, net, wins)


def closed_trades(db: Database, since_ts: float | None = None, symbol: str | None = None,
                  wave_ids: list[str] | None = None) -> list[PositionRow]:
    with db.tx("db_read") as tx:
        rows = list(tx.scalars(closed_query(since_ts, symbol, wave_ids)).all())
        tx.expunge_all()
        return rows


def totals(db: Database, since_ts: float | None = None) -> Totals:
    return totals_of(closed_trades(db, since_ts))


class RealizedBook:
    """Realized totals for the live view, /metrics and the loss limit, read incrementally:
    each call fetches only the positions closed since the last one (a closed position's P&L
    does not change), so the cost does not grow with the length of the history."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._lock = threading.Lock()  # one reader updates the book at a time
        self._ts: list[float] = []  # closed_ts, ascending, with the same index as _rows
        self._rows: list[tuple[Decimal, Decimal, Decimal]] = []  # (gross, fees, net)
        self._ids: set[str] = set()

    def totals(self, since_ts: float | None = None) -> Totals:
        with self._lock:
            self._catch_up()
            start = 0 if since_ts is None else bisect.bisect_left(self._ts, since_ts)
            rows = self._rows[start:]
        return Totals(len(rows), sum((r[0] for r in rows), ZERO), sum((r[1] for r in rows), ZERO),
                      sum((r[2] for r in rows), ZERO), sum(1 for r in rows if r[2] > 0))

    def _catch_up(self) -> None:
        last = self._ts[-1] if self._ts else None
        q = (select(PositionRow.id, PositionRow.closed_ts, PositionRow.gross_pnl, PositionRow.fees,
                    PositionRow.net_pnl)
             .where(PositionRow.phase.in_(CLOSED_PHASES), PositionRow.entry_price.is_not(None),
                    PositionRow.closed_ts.is_not(None))
             .order_by(PositionRow.closed_ts, PositionRow.id))
        if last is not None:
            # a row's closed_ts is taken before its commit waits for the database: one may
            # appear later with an older time, so a recent window is read again (seen ids skip)
            q = q.where(PositionRow.closed_ts >= last - REREAD_S)
        with self.db.tx("db_read") as tx:
            new = tx.execute(q).all()
        for pid, ts, g, f, n in new:
            if pid in self._ids:
                continue
            assert ts is not None  # the query reads closed positions only
            self._ids.add(pid)
            i = bisect.bisect_right(self._ts, ts)
            self._ts.insert(i, ts)
            self._rows.insert(i, (g or ZERO, f or ZERO, n or ZERO))


def by_wave(db: Database, wave_ids: list[str]) -> dict[str, Totals]:
    """Realized P&L of each wave's closed positions."""
    out: dict[str, list] = {}
    for r in closed_trades(db, wave_ids=wave_ids) if wave_ids else []:
        out.setdefault(r.wave_id, []).append(r)
    return {w: totals_of(rows) for w, rows in out.items()}
