"""Loss limits: a daily loss limit that stops new waves, and a cooldown per symbol after a
stop-out. Neither touches an open position: its stops stay resting, it keeps trailing.

The daily limit compares today's P&L (realized since midnight in `report.timezone` plus the
open positions' unrealized) with `-risk.daily_loss_limit_usdt`. Once hit, every new wave is
skipped with the reason until the next day begins, or until an operator resumes (`bin/trader
resume`): that lifts the limit for the rest of the day, and is recorded in the event log so a
restart keeps it. The coordinator asks before each wave; the figures are the database's and
the feed's, never a venue call on its path.
"""
from __future__ import annotations

import threading
import time
from decimal import Decimal

from loguru import logger
from sqlalchemy import select

from core.config import RiskCfg
from persistence.db import Database
from persistence.models import EventRow, PositionRow
from service.alerts import Alerts
from service.money import Ledger, day_start

LOSS_LIMIT_HIT = "loss_limit_hit"
LOSS_LIMIT_RESUMED = "loss_limit_resumed"


def is_stop_out(reason: str | None) -> bool:
    """The position was closed by its stop-loss or trailing stop (not by an operator)."""
    r = reason or ""
    return ("stop" in r and "triggered" in r) or "filled while down" in r


class RiskGuard:
    """Loss limits and cool-downs, judged from the ledger and recorded in the database."""

    def __init__(self, db: Database, money: Ledger, alerts: Alerts, risk: RiskCfg, timezone: str) -> None:
        self.db, self.money, self.alerts = db, money, alerts
        self.risk, self.timezone = risk, timezone
        self._lock = threading.Lock()  # the dicts below, for microseconds; never held over I/O
        self._cooldown_until: dict[str, float] = {}
        self.halted_day: float | None = None  # day_start of the day the limit was hit
        self.halt_reason_text: str | None = None
        self.lifted_day: float | None = None  # an operator lifted the limit for this day

    # ---- start-up ------------------------------------------------------------------------

    def restore(self) -> None:
        """What a restart must not forget: recent stop-outs, and an operator's lift for today."""
        now, today = time.time(), day_start(self.timezone)
        cool = self.risk.cooldown_after_stop_s
        with self.db.tx("db_read") as tx:
            if cool > 0:
                for sym, reason, ts in tx.execute(select(PositionRow.symbol, PositionRow.close_reason,
                                                         PositionRow.closed_ts)
                                                  .where(PositionRow.closed_ts >= now - cool)):
                    if is_stop_out(reason):
                        self.note_closed(sym, reason, ts)
            lifted = tx.scalars(select(EventRow.data).where(EventRow.kind == LOSS_LIMIT_RESUMED,
                                                            EventRow.ts >= today)).first()
        if lifted is not None:
            self.lifted_day = today

    # ---- cooldown ------------------------------------------------------------------------

    def note_closed(self, symbol: str, reason: str | None, ts: float | None = None) -> None:
        cool = self.risk.cooldown_after_stop_s
        if cool > 0 and is_stop_out(reason):
            with self._lock:
                self._cooldown_until[symbol] = (ts or time.time()) + cool

    def cooldown_left(self, symbol: str, now: float | None = None) -> float:
        now = time.time() if now is None else now
        with self._lock:
            until = self._cooldown_until.get(symbol)
            if until is not None and until <= now:
                del self._cooldown_until[symbol]
                return 0.0
        return 0.0 if until is None else until - now

    def cooldowns(self) -> dict[str, float]:
        now = time.time()
        with self._lock:
            return {s: round(u - now, 1) for s, u in sorted(self._cooldown_until.items()) if u > now}

    # ---- daily loss limit ----------------------------------------------------------------

    def halt_reason(self) -> str | None:
        """Why no new wave may open now (None: it may). Called by the coordinator per wave."""
        limit = self.risk.daily_loss_limit_usdt
        if not limit:
            return None
        today = day_start(self.timezone)
        if self.lifted_day == today:
            return None
        if self.halted_day == today:
            return self.halt_reason_text
        m = self.money
        realized = m.realized_since(today)
        unrealized = m.unrealized()
        pnl = realized + unrealized
        if pnl > -limit:
            self.halted_day = None  # a new day
            return None
        self.halted_day = today
        self.halt_reason_text = (f"daily loss limit hit: today's P&L {pnl:+.2f} USDT (realized {realized:+.2f}, "
                                 f"unrealized {unrealized:+.2f}) is past -{limit} "
                                 f"(risk.daily_loss_limit_usdt); open positions stay protected; "
                                 f"resumes tomorrow ({self.timezone}) or on `bin/trader resume`")
        logger.warning("{}", self.halt_reason_text)
        self._record(LOSS_LIMIT_HIT, {"pnl": str(pnl), "limit": str(limit)})
        self.alerts.notify("loss_limit", "wave-trader: daily loss limit hit", self.halt_reason_text)
        return self.halt_reason_text

    def lift(self, who: str) -> bool:
        """The operator resumes: the limit is lifted for the rest of today. True if it was hit."""
        today = day_start(self.timezone)
        was = self.halted_day == today
        self.lifted_day, self.halted_day = today, None
        if was:
            self._record(LOSS_LIMIT_RESUMED, {"by": who})
            logger.warning("daily loss limit lifted by the {} for the rest of today", who)
        return was

    def equity(self) -> Decimal | None:
        """The venue's last reported equity (kept fresh by the ledger's refresher): sizing
        must not put a venue round trip on the coordinator's path."""
        b = self.money.last_balance()
        return None if b is None else b.equity

    def status(self) -> dict:
        today = day_start(self.timezone)
        return {"daily_loss_limit_usdt": self.risk.daily_loss_limit_usdt or None,
                "halted": self.halted_day == today and self.lifted_day != today,
                "reason": self.halt_reason_text if self.halted_day == today else None,
                "lifted_today": self.lifted_day == today,
                "cooldown_after_stop_s": self.risk.cooldown_after_stop_s, "cooldowns": self.cooldowns()}

    def _record(self, kind: str, data: dict) -> None:
        try:
            with self.db.tx("db_write") as tx:
                tx.add(EventRow(ts=time.time(), kind=kind, data=data))
        except Exception as e:  # the limit holds in memory even if the log write fails
            logger.error("could not record {}: {!r}", kind, e)
