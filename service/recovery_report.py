"""What start-up recovery is given and what it hands back.

Apart from service/recovery.py so that the adoption of unknown venue positions, the
composition root and the recovery run all share them without importing one another.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from actors.market_data import MarketData
from actors.messages import VenueView
from core.config import RecoveryCfg
from core.position_types import Params, PositionState
from core.types import MarketSpec
from exchange.gateway import Gateway
from persistence.positions import PositionStore
from service.position_supervision import PositionSupervisor


@dataclass
class RecoveryReport:
    restored: int = 0
    reconciled: int = 0
    seconds: float = 0.0
    phases: Counter[str] = field(default_factory=Counter)  # of restored positions, after reconciling
    unknown_venue_positions: list[str] = field(default_factory=list)
    stray_orders_cancelled: list[str] = field(default_factory=list)
    stray_orders_kept: list[str] = field(default_factory=list)
    foreign_orders: int = 0
    still_reconciling: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"restored": self.restored, "reconciled": self.reconciled,
                "seconds": round(self.seconds, 3), "phases": dict(self.phases),
                "unknown_venue_positions": self.unknown_venue_positions,
                "stray_orders_cancelled": self.stray_orders_cancelled,
                "stray_orders_kept": self.stray_orders_kept,
                "foreign_orders": self.foreign_orders, "still_reconciling": self.still_reconciling}


class RecoveryHooks:
    """Where a restored position calls back into the recovery run. The positions' context is
    built (frozen) before any recovery exists, so it holds these two bound methods, and each
    run points them at itself; outside a run a view is None (restarts read the venue live)."""

    def __init__(self) -> None:
        self.recovered: Callable[[PositionState], None] = lambda _s: None
        self.views: Callable[[PositionState], VenueView | None] = lambda _s: None

    def on_recovered(self, s: PositionState) -> None:
        self.recovered(s)

    def view(self, s: PositionState) -> VenueView | None:
        return self.views(s)


@dataclass(frozen=True)
class RecoveryDeps:
    """Everything recovery reads or drives: the store and the venue, the supervisor that
    starts the restored actors, and the two tables it fills for the running service."""

    cfg: RecoveryCfg
    venue_call_s: float
    gateway: Gateway
    store: PositionStore
    market_data: MarketData
    supervisor: PositionSupervisor
    markets: Mapping[str, MarketSpec]
    defaults: Callable[[], Params]  # the operator defaults now: adopted positions start with them
    order_owner: dict[str, str]  # taken-over client id -> owning position, for routing updates
    notes: list[str]  # what the operator must hear about (health)
    hooks: RecoveryHooks
