"""What every position actor is given: its ports to the service, and the fence they share.

Built once by the composition root (`service/compose.py`) and shared read-only by all
positions; the epochs map and the halt flag are the only parts that change, and they are
changed by the supervisor, never by a position.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable

from actors.market_data import MarketData
from actors.messages import VenueView
from actors.scheduler import Scheduler
from core.config import DeadlinesCfg
from core.faults import FaultPlan
from core.pnl import Realized
from core.position_types import PositionState
from core.types import MarketSpec
from exchange.gateway import Fenced, Gateway
from persistence.positions import PositionStore


@dataclass(frozen=True)
class PositionContext:
    """Everything a position needs from the service, shared read-only by all positions."""

    gateway: Gateway
    store: PositionStore
    markets: dict[str, MarketSpec]
    scheduler: Scheduler
    market_data: MarketData
    deadlines: DeadlinesCfg
    coordinator: Callable[[], Any]  # the current coordinator ref (it may be replaced)
    epochs: dict[str, int]  # the supervisor's current epoch per position: the venue fence
    faults: FaultPlan
    on_final: Callable[[str, int], None]  # supervisor: this child is done
    on_decision: Callable[[float], None] = lambda _s: None  # tick-to-decision latency sink
    on_recovered: Callable[[PositionState], None] = lambda _s: None  # reconciled after a restart
    recovery_view: Callable[[PositionState], VenueView | None] = lambda _s: None  # cold start
    # a position that traded has closed: P&L known (None if it could not be computed); must
    # not block (the service queues alerts and logs on its own threads)
    on_closed: Callable[[PositionState, Realized | None], None] = lambda _s, _p: None
    # set once the database lease is lost: protect-only, no entry leaves the process any more,
    # while stops, trailing stops and closes of positions already held still do
    halted: threading.Event = field(default_factory=threading.Event)


def check_fence(ctx: PositionContext, s: PositionState, entry: bool = False) -> None:
    """Raise Fenced unless `s` is still the current epoch of its position (and, for an entry,
    unless trading is halted): checked before every write to the store or the venue."""
    if ctx.epochs.get(s.id) != s.epoch:
        raise Fenced(f"epoch {s.epoch} of {s.id} is stale")
    if entry and ctx.halted.is_set():
        raise Fenced(f"trading is halted: no entry for {s.id}")
