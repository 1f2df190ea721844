"""The composition root: every part of a running service built once, each with the
collaborators it uses and nothing more.

Order of construction follows who needs whom: the database and the venue first, then the
stores, the positions' shared (frozen) context, the supervisor that starts positions with it,
and what watches them (guardian, ledger, loss limits). Two genuine cycles are closed with
late-bound callables instead of assignments after construction: the context's `on_final`
reaches the supervisor built with that context, and escalations settle waves through the
same supervisor. Recovery reaches the context through `RecoveryHooks`, the coordinator
through `CoordinatorPort`.

`Service` (service/app.py) keeps the lifecycle; it is handed the `Parts` built here.
"""
from __future__ import annotations

import dataclasses
import gc
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import cast

from loguru import logger

from actors.coordinator import WaveSummary
from actors.coordinator_port import CoordinatorPort
from actors.market_data import MarketData
from actors.position import PositionContext
from actors.scheduler import Scheduler
from core import entry_protocol
from core.config import Config, FaultCfg
from core.faults import FaultPlan, FaultRule
from core.pnl import Realized
from core.position_types import Params, Phase, PositionState, TrailingMode
from core.types import MarketSpec
from exchange.factory import build_gateway
from exchange.gateway import Gateway
from persistence.db import Database, masked_url
from persistence.positions import PositionStore
from persistence.schema import ensure_current
from persistence.waves import WaveStore
from service.alerts import Alerts, urls_from_env
from service.defaults import OperatorDefaults
from service.guardian import Guardian
from service.limits import RiskGuard
from service.metrics import InstrumentedGateway, Metrics
from service.money import Ledger
from service.position_supervision import PositionSupervisor
from service.recovery_report import RecoveryDeps, RecoveryHooks
from service.waves_without_coordinator import WavesWithoutCoordinator
from signals.rejections import Rejections

GatewayWrap = Callable[[Gateway], Gateway]


def fault_plan(rules: Iterable[FaultCfg], seed: int) -> FaultPlan:
    return FaultPlan([FaultRule(**r.model_dump()) for r in rules], seed=seed)


def collect_then_freeze() -> None:
    """Run the cyclic garbage collector now, at a quiet moment, then move every survivor out
    of its reach (gc.freeze). Otherwise its full passes come at random, each scanning every
    object of every open position: 50-120 ms with the whole process stopped, the worst
    tick-to-decision latencies of the benchmarks. Unfreezing first lets what died since the
    last call (closed positions) be collected, so nothing leaks."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def position_params(cfg: Config) -> Params:
    p = cfg.protection
    return Params(stop_loss_pct=p.stop_loss_pct, activation_pct=p.trailing_activation_pct,
                  callback_pct=p.trailing_callback_pct, trailing_mode=TrailingMode(p.trailing_mode),
                  notional=cfg.risk.position_notional_usdt, max_attempts=p.max_attempts,
                  retry_backoff_s=p.retry_backoff_s, replace_min_interval_s=p.replace_min_interval_s,
                  leverage=Decimal(cfg.exchange.leverage),
                  maint_margin_pct=cfg.exchange.maintenance_margin_pct)


@dataclass(frozen=True)
class FaultPlans:
    """The injected-fault plans of one run: venue calls, database calls, actor steps."""

    venue: FaultPlan
    db: FaultPlan
    actor: FaultPlan

    @classmethod
    def of(cls, cfg: Config) -> FaultPlans:
        f = cfg.faults
        return cls(fault_plan(f.venue, f.seed), fault_plan(f.db, f.seed + 1), fault_plan(f.actor, f.seed + 2))

    def counts(self) -> dict[str, int]:
        """How often each injected fault fired, by plan and kind (chaos reports, health)."""
        out: Counter[str] = Counter()
        for name, plan in (("venue", self.venue), ("db", self.db), ("actor", self.actor)):
            for rule in plan.rules:
                if rule.fired:
                    out[f"{name}.{rule.kind}:{rule.op}"] += rule.fired
        return dict(out)


@dataclass
class RunStats:
    started: float = field(default_factory=time.time)
    waves: list[WaveSummary] = field(default_factory=list)
    wave_ids: set[str] = field(default_factory=set)
    waves_rejected: int = 0
    decisions: int = 0
    decision_s_total: float = 0.0


class Decisions:
    """Where every position reports each decision's tick-to-decision latency: counted in the
    run's statistics, unless a measurement (the tick benchmark) takes the stream for itself."""

    def __init__(self, stats: RunStats) -> None:
        self.stats = stats
        self.sink: Callable[[float], None] | None = None

    def __call__(self, seconds: float) -> None:
        sink = self.sink
        if sink is not None:
            sink(seconds)
            return
        self.stats.decisions += 1
        self.stats.decision_s_total += seconds


@dataclass(frozen=True)
class Parts:
    """Every part of one service, built once (see `build`)."""

    cfg: Config
    faults: FaultPlans
    db: Database
    gateway: Gateway  # the venue as built (fault plan inside)
    markets: dict[str, MarketSpec]
    positions: PositionStore
    waves: WaveStore
    scheduler: Scheduler
    market_data: MarketData
    entry_mode: str
    stats: RunStats
    decisions: Decisions
    coordinator_port: CoordinatorPort
    recovery_hooks: RecoveryHooks
    order_owner: dict[str, str]  # orders a position took over from another id -> owning position
    notes: list[str]  # what the operator must hear about (health)
    alerts: Alerts
    ctx: PositionContext
    supervisor: PositionSupervisor
    defaults: OperatorDefaults
    guardian: Guardian
    money: Ledger
    guard: RiskGuard
    rejections: Rejections

    def recovery_deps(self) -> RecoveryDeps:
        return RecoveryDeps(
            cfg=self.cfg.recovery, venue_call_s=self.cfg.deadlines.venue_call_s, gateway=self.gateway,
            store=self.positions, market_data=self.market_data, supervisor=self.supervisor,
            markets=self.markets, defaults=lambda: self.defaults.current, order_owner=self.order_owner,
            notes=self.notes, hooks=self.recovery_hooks)


def build(cfg: Config, faults: FaultPlans, *, metrics: Metrics | None = None,
          wrap_gateway: GatewayWrap | None = None) -> Parts:
    """Build every part. `metrics`: time the positions' venue calls (the control plane's);
    `wrap_gateway`: what the positions, the guardian and the ledger see of the venue (tests
    put gates and barriers there). On failure nothing built here is left open."""
    db = Database(cast(str, cfg.database.url), call_timeout_s=cfg.deadlines.db_call_s,
                  pool_size=cfg.database.pool_size, pool_timeout_s=cfg.database.pool_timeout_s,
                  faults=faults.db)
    schema = ensure_current(db.engine, auto_create=cfg.database.auto_create)
    if schema == "created":
        logger.info("database schema created at {}", masked_url(db.url))
    gateway = build_gateway(cfg, faults.venue)
    markets = gateway.markets()
    try:
        entry_mode = entry_protocol.resolve(cfg.protection.entry_mode, cfg.exchange.name,
                                            getattr(gateway, "entry_modes", ()))
    except ValueError:
        gateway.close()
        raise
    venue: Gateway = gateway if metrics is None else InstrumentedGateway(gateway, metrics)
    if wrap_gateway is not None:
        venue = wrap_gateway(venue)
    positions, waves = PositionStore(db), WaveStore(db)
    scheduler, market_data = Scheduler(), MarketData()
    stats = RunStats()
    decisions = Decisions(stats)
    port, hooks = CoordinatorPort(), RecoveryHooks()
    notes: list[str] = []
    alerts = Alerts(urls_from_env(cfg.alerts.urls_env), queue_size=cfg.alerts.queue_size)
    sup: PositionSupervisor | None = None  # bound below: the supervisor is built with the context

    def on_final(key: str, epoch: int) -> None:
        assert sup is not None
        sup.finished(key, epoch)

    def on_escalate(key: str, msg: str) -> None:
        assert sup is not None
        escalated(key, msg, notes, alerts, port, waves, sup)

    ctx = PositionContext(
        gateway=venue, store=positions, markets=markets, scheduler=scheduler, market_data=market_data,
        deadlines=cfg.deadlines, coordinator=lambda: port, epochs={}, faults=faults.actor,
        on_final=on_final, on_decision=decisions, on_recovered=hooks.on_recovered,
        recovery_view=hooks.view, on_closed=lambda s, pnl: closed_alert(alerts, s, pnl))
    params = dataclasses.replace(position_params(cfg), entry_mode=entry_mode)
    sup = PositionSupervisor(cfg.supervisor, cfg.deadlines, ctx, params, on_escalate=on_escalate)
    money = Ledger(db, market_data, venue, cfg.deadlines.venue_call_s, cfg.report.timezone)
    return Parts(
        cfg=cfg, faults=faults, db=db, gateway=gateway, markets=markets, positions=positions, waves=waves,
        scheduler=scheduler, market_data=market_data, entry_mode=entry_mode, stats=stats,
        decisions=decisions, coordinator_port=port, recovery_hooks=hooks, order_owner={}, notes=notes,
        alerts=alerts, ctx=ctx, supervisor=sup, defaults=OperatorDefaults(params, sup, port),
        guardian=Guardian(cfg, venue, sup, markets, db), money=money,
        guard=RiskGuard(db, money, alerts, cfg.risk, cfg.report.timezone),
        rejections=Rejections(burst=cfg.signals.reject_burst))


def escalated(key: str, msg: str, notes: list[str], alerts: Alerts, port: CoordinatorPort,
              waves: WaveStore, supervisor: PositionSupervisor) -> None:
    """The supervisor gave up on a child: the operator hears of it; a coordinator given up
    on refuses new waves from now on, and the ones already taken are finished without it."""
    notes.append(f"{key}: {msg}")
    alerts.notify("needs_attention", f"wave-trader: {key} needs an operator", msg)
    if key != "coordinator":
        return
    try:
        sink = WavesWithoutCoordinator(waves, supervisor, msg)
    except Exception as e:
        logger.critical("coordinator down and its waves cannot be finished: {!r}", e)
        port.down(msg)
        return
    port.down(msg, sink)
    try:
        sink.settle()
    except Exception as e:
        logger.critical("coordinator down: settling its waves failed: {!r}", e)


def closed_alert(alerts: Alerts, s: PositionState, pnl: Realized | None) -> None:
    """A traded position closed (its own thread: only queue, never wait)."""
    money = f"P&L {pnl.net:+.2f} USDT ({pnl.pct:+.2f}%)" if pnl else "P&L unknown"
    what = f"{s.symbol} {s.side}: {s.close_reason} at {s.exit_price} (entry {s.entry_price}); {money}"
    if s.phase is Phase.EMERGENCY_CLOSED:
        alerts.notify("emergency_close", f"EMERGENCY CLOSE {s.symbol}", what)
    elif s.close_reason and "stop" in s.close_reason:
        alerts.notify("stop_fired", f"stop fired: {s.symbol}", what)
