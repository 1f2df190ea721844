"""The operator's money: realized P&L from the database, unrealized from the latest prices,
balance and equity from the venue.

Realized figures are what the venue's fills say (entry and exit prices, the fees it charged),
written when each position closes. Unrealized is each open position at the feed's latest price
(its last persisted price when the feed has none). Balance and equity are the venue's own
answer; the last good one is kept, so a venue that is down shows a stale figure marked as such
rather than none.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from loguru import logger
from sqlalchemy import select

from actors.market_data import MarketData
from core.pnl import gross
from core.types import Side
from exchange.gateway import Balance, Gateway
from persistence.db import Database
from persistence.models import PositionRow
from persistence.positions import OPEN_PHASES
from persistence.trades import RealizedBook, Totals

ZERO = Decimal(0)
CENT = Decimal("0.0001")


def day_start(tz: str, now: float | None = None) -> float:
    """Unix time of today's midnight in `tz` (the reporting day: UTC unless configured)."""
    local = datetime.fromtimestamp(time.time() if now is None else now, ZoneInfo(tz))
    return local.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()


def q(x: Decimal | None) -> Decimal | None:
    return None if x is None else x.quantize(CENT)


@dataclass(frozen=True, slots=True)
class MoneySnapshot:
    realized: Totals  # all time
    today: Totals  # since midnight in the reporting timezone
    unrealized: Decimal
    balance: Balance | None
    balance_age_s: float | None  # how old the venue's answer is (None: never had one)
    day_start: float

    @property
    def equity(self) -> Decimal | None:
        return self.balance.equity if self.balance else None

    def as_dict(self) -> dict:
        """The run summary's `pnl` object: strings, so the decimals stay exact in JSON."""
        b = self.balance
        return {"realized": str(q(self.realized.net)), "fees": str(q(self.realized.fees)),
                "gross": str(q(self.realized.gross)), "unrealized": str(q(self.unrealized)),
                "equity": None if b is None else str(q(b.equity)),
                "balance": None if b is None else str(q(b.wallet)),
                "realized_today": str(q(self.today.net)), "trades": self.realized.trades}


class Ledger:
    """Realized and unrealized P&L and the venue balance; `gateway` is the one the positions
    use (instrumented when the control plane is attached)."""

    def __init__(self, db: Database, market_data: MarketData, gateway: Gateway, venue_call_s: float,
                 timezone: str = "UTC") -> None:
        self.db, self.market_data, self.gateway = db, market_data, gateway
        self.venue_call_s, self.timezone = venue_call_s, timezone
        self.book = RealizedBook(db)
        self._balance: Balance | None = None
        self._balance_at: float | None = None
        self._stop = threading.Event()

    def unrealized(self) -> Decimal:
        with self.db.tx("db_read") as tx:
            rows = tx.execute(select(PositionRow.symbol, PositionRow.side, PositionRow.qty,
                                     PositionRow.entry_price, PositionRow.last_price)
                              .where(PositionRow.phase.in_(OPEN_PHASES))).all()
        latest = self.market_data.last_price
        total = ZERO
        for sym, side, qty, entry, last in rows:
            price = latest.get(sym) or last
            if qty and entry is not None and price is not None:
                total += gross(Side(side), qty, entry, price)
        return total

    def realized_since(self, since_ts: float) -> Decimal:
        return self.book.totals(since_ts).net

    def balance(self, timeout_s: float | None = None) -> Balance | None:
        """The venue's balance now, or the last good answer if the venue does not give one."""
        t = timeout_s or self.venue_call_s
        try:
            self._balance = self.gateway.balance(timeout=t)
            self._balance_at = time.monotonic()
        except Exception as e:  # the venue may be what is down; money figures must still show
            logger.debug("balance: venue did not answer ({}); keeping the last one", e)
        return self._balance

    def last_balance(self) -> Balance | None:
        return self._balance

    def start_refresh(self, interval_s: float) -> None:
        """Keep the balance fresh on a thread of its own (for sizing by equity)."""
        def run() -> None:
            while not self._stop.wait(interval_s):
                self.balance()
        threading.Thread(target=run, name="balance", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def snapshot(self, *, refresh_balance: bool = True, timeout_s: float | None = None) -> MoneySnapshot:
        start = day_start(self.timezone)
        b = self.balance(timeout_s) if refresh_balance else self._balance
        age = None if self._balance_at is None else round(time.monotonic() - self._balance_at, 3)
        return MoneySnapshot(self.book.totals(), self.book.totals(start), self.unrealized(), b, age, start)
