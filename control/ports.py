"""What the control plane reads and does on the running service, and nothing more.

Control is the operator's plane on top of the service: the service hands it an object with
these members (service/app.py's `Service` is one), so nothing in control imports the service.
Everything here is read-only except the three actions: `pause`, `set_defaults` (sent to the
defaults' owner) and the supervisor's `child_failed` (an operator restart).
"""
from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Protocol

from actors.market_data import MarketData
from core.config import Config
from core.position_types import Params
from core.types import MarketSpec
from exchange.gateway import Gateway
from persistence.db import Database
from supervisor import Supervisor


class WaveCounts(Protocol):
    """The run's wave statistics."""

    @property
    def waves(self) -> list[Any]: ...
    @property
    def wave_ids(self) -> set[str]: ...
    @property
    def waves_rejected(self) -> int: ...


class LossLimits(Protocol):
    def status(self) -> dict[str, Any]: ...
    def lift(self, who: str) -> bool: ...


class Money(Protocol):
    @property
    def timezone(self) -> str: ...
    def snapshot(self, *, refresh_balance: bool = True, timeout_s: float | None = None) -> Any: ...


class Operated(Protocol):
    """The running service as the control plane sees it."""

    @property
    def cfg(self) -> Config: ...
    @property
    def db(self) -> Database: ...
    @property
    def markets(self) -> Mapping[str, MarketSpec]: ...
    @property
    def market_data(self) -> MarketData: ...
    @property
    def gateway(self) -> Gateway: ...
    @property
    def venue(self) -> Gateway: ...  # the venue as the positions see it (instrumented)
    @property
    def supervisor(self) -> Supervisor: ...
    @property
    def stats(self) -> WaveCounts: ...
    @property
    def guard(self) -> LossLimits: ...
    @property
    def money(self) -> Money: ...
    @property
    def paused(self) -> bool: ...
    @property
    def defaults(self) -> Params: ...
    def waves_state(self) -> str: ...
    def pause(self, paused: bool) -> None: ...
    def set_defaults(self, changes: dict[str, Decimal]) -> Params: ...
