"""Narrow, read-only views of the running service for what watches it: health and the
status line (the metrics scrape has its own, beside it in service/metrics.py). Each lists exactly what its reader reads; `Service` satisfies all
of them, and a test can hand in anything that does."""
from __future__ import annotations

from collections import Counter
from typing import Any, Protocol

from core.phases import Phase
from persistence.db import Database
from service.alerts import Alerts
from service.compose import RunStats
from service.guardian import Guardian
from service.limits import RiskGuard
from service.money import Ledger
from service.position_supervision import PositionSupervisor


class HealthSource(Protocol):
    """What service/health.py judges health by."""

    @property
    def supervisor(self) -> PositionSupervisor: ...
    @property
    def guardian(self) -> Guardian: ...
    @property
    def guard(self) -> RiskGuard: ...
    @property
    def alerts(self) -> Alerts: ...
    @property
    def db(self) -> Database: ...
    @property
    def paused(self) -> bool: ...
    @property
    def halted(self) -> str | None: ...
    @property
    def health_notes(self) -> list[str]: ...
    def recovery_progress(self) -> str | None: ...
    def signals_health(self) -> dict[str, Any] | None: ...


class StatusSource(Protocol):
    """What the periodic status line shows."""

    @property
    def supervisor(self) -> PositionSupervisor: ...
    @property
    def stats(self) -> RunStats: ...
    @property
    def money(self) -> Ledger: ...
    def positions_view(self) -> Counter[Phase | None]: ...
    def signals_health(self) -> dict[str, Any] | None: ...
