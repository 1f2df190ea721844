"""What became of each signal in a backtest or a rehearsal, and what that made."""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

BPS = Decimal(10000)


@dataclass
class Trade:
    """What became of one signal: the report's row."""

    line: int
    wave_id: str
    signal_id: str
    symbol: str
    side: str
    rank: int
    status: str  # closed, open (at the end of the data), failed, skipped, rejected, duplicate
    outcome: str | None = None
    reason: str | None = None
    position_id: str | None = None
    entry_ts: float | None = None
    entry_price: Decimal | None = None
    qty: Decimal | None = None
    exit_ts: float | None = None
    exit_price: Decimal | None = None
    exit_reason: str | None = None
    pnl: Decimal | None = None
    fees: Decimal | None = None
    net: Decimal | None = None

    @property
    def duration_s(self) -> float | None:
        if self.entry_ts is None or self.exit_ts is None:
            return None
        return self.exit_ts - self.entry_ts


@dataclass
class Result:
    trades: list[Trade]
    equity: list[tuple[float, Decimal]]  # realized net PnL after each exit
    start: float
    end: float
    candles: int  # records read: candles, or trades
    seconds: float
    levels: dict[str, list[tuple[float, Decimal, Decimal | None, Decimal | None]]]  # per position


def settle(t: Trade, exit_price: Decimal, fee: Decimal, *, closed: bool) -> Decimal:
    """PnL of a trade at `exit_price`; fees on both fills if it closed, on the entry if not
    (a position still open is marked, not closed). Returns the net PnL."""
    entry, qty = t.entry_price, t.qty
    assert entry is not None and qty is not None, f"{t.signal_id} settled before its entry filled"
    t.exit_price = exit_price
    sign = 1 if t.side == "long" else -1
    t.pnl = (exit_price - entry) * qty * sign
    t.fees = (entry + (exit_price if closed else 0)) * qty * fee
    t.net = t.pnl - t.fees
    return t.net
