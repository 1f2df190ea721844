"""The run's summary: what `bin/trader run --json` prints last, and what replay and chaos report.

It reads the database for the outcomes of this run's waves and the positions still open, and
the parts of the service for the rest; `RunView` lists exactly what it reads.
"""
from __future__ import annotations

from typing import Any, Protocol

from loguru import logger
from sqlalchemy import func, select

from core.position_types import Outcome, Phase
from exchange.gateway import Gateway
from persistence.db import Database
from persistence.models import PositionRow, SignalRow
from service.compose import RunStats
from service.money import Ledger
from service.position_supervision import PositionSupervisor
from service.protection_gap import gap_stats, venue_gaps
from service.recovery_report import RecoveryReport
from signals.rejections import Rejections


class RunView(Protocol):
    @property
    def stats(self) -> RunStats: ...
    @property
    def db(self) -> Database: ...
    @property
    def gateway(self) -> Gateway: ...
    @property
    def supervisor(self) -> PositionSupervisor: ...
    @property
    def recovery(self) -> RecoveryReport: ...
    @property
    def rejections(self) -> Rejections: ...
    @property
    def money(self) -> Ledger: ...
    @property
    def entry_mode(self) -> str: ...
    def signals_health(self) -> dict[str, Any] | None: ...


def run_summary(svc: RunView) -> dict[str, Any]:
    ids = list(svc.stats.wave_ids)
    with svc.db.tx("db_read") as tx:
        rows = tx.execute(select(SignalRow.outcome, func.count()).where(SignalRow.wave_id.in_(ids))
                          .group_by(SignalRow.outcome)).all() if ids else []
        open_rows = tx.execute(select(PositionRow.phase, func.count())
                               .where(PositionRow.phase.in_([p.value for p in Phase if not p.final]))
                               .group_by(PositionRow.phase)).all()
    outcomes = {(k or "pending"): v for k, v in rows}
    opened = sum(n for k, n in outcomes.items() if k in {o.value for o in Outcome if o.opened})
    protected = outcomes.get(Outcome.PROTECTED.value, 0)
    open_now: dict[str, int] = dict(open_rows)  # type: ignore[arg-type]
    return {
        "waves_completed": len(svc.stats.waves),
        "waves_rejected": svc.stats.waves_rejected,
        "signals": sum(outcomes.values()),
        "positions_opened": opened,
        "positions_protected": protected,
        "ts_coverage": round(protected / opened, 4) if opened else 1.0,
        "outcomes": outcomes,
        "wave_seconds": [round(w.seconds, 3) for w in svc.stats.waves],
        "open_positions": sum(open_now.values()),
        "open_by_phase": open_now,
        "restarts": svc.supervisor.stats.restarts,
        "escalations": svc.supervisor.stats.escalations,
        "abandoned_threads": svc.supervisor.abandoned_alive(),
        "recovery": svc.recovery.as_dict(),
        "rejections": svc.rejections.as_dict(),
        "pnl": _pnl(svc.money),
        "entry_mode": svc.entry_mode,
        "protection_gap_s": gap_stats(venue_gaps(svc.gateway)),
    } | ({"signal_source": h} if (h := svc.signals_health()) else {})


def _pnl(money: Ledger) -> dict[str, Any] | None:
    try:
        return money.snapshot().as_dict()
    except Exception as e:  # a summary must not fail because the money could not be read
        logger.warning("run summary: P&L not available: {}", e)
        return None
