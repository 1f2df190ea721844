"""Closed positions as trades: the realized P&L the database holds, and its totals.

One query serves the trade list, the totals and the per-wave sums, so `bin/trader trades`
always adds up to the realized figure of `status` and the run summary.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import Select, select

from persistence.db import Database
from persistence.models import PositionRow

CLOSED_PHASES = ("closed", "emergency_closed")
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


def by_wave(db: Database, wave_ids: list[str]) -> dict[str, Totals]:
    """Realized P&L of each wave's closed positions."""
    out: dict[str, list] = {}
    for r in closed_trades(db, wave_ids=wave_ids) if wave_ids else []:
        out.setdefault(r.wave_id, []).append(r)
    return {w: totals_of(rows) for w, rows in out.items()}
