"""Wires the service together and runs its lifecycle: start, recover, trade, shut down.

Start-up order matters: the schema is checked before anything runs; the coordinator actor
starts first (restored positions report their outcomes to it), then positions left open by a
previous run are restored and reconciled under new epochs (service/recovery.py), and only then
does the coordinator resume unfinished waves and a signal source start.
"""
from __future__ import annotations

import gc
import threading
import time
from collections import Counter
from concurrent.futures import Future
from dataclasses import dataclass, field

from loguru import logger
from sqlalchemy import func, select

from actors.coordinator import WaveCoordinator, WaveSummary
from actors.coordinator_port import CoordinatorPort
from actors.market_data import MarketData
from actors.messages import OrderUpdate, SetPaused, SubmitWave
from actors.position import PositionContext
from actors.scheduler import Scheduler
from core.config import Config
from core.faults import FaultPlan, FaultRule
from core.position_types import Outcome, Params, Phase, position_id_of
from exchange.factory import build_gateway
from exchange.gateway import OrderState
from persistence.db import Database
from persistence.models import PositionRow, SignalRow
from persistence.positions import PositionStore
from persistence.schema import ensure_current
from persistence.waves import WaveStore
from signals.intake import IntakeResult
from service.guardian import Guardian
from service.recovery import Recovery, RecoveryReport
from signals.sources import DemoSource, FileSource
from signals.ws_source import WsSource
from signals.wave import WaveRejected, parse_wave
from supervisor import Supervisor


def fault_plan(rules, seed: int) -> FaultPlan:
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
                  callback_pct=p.trailing_callback_pct, trailing_mode=p.trailing_mode,
                  notional=cfg.risk.position_notional_usdt, max_attempts=p.max_attempts,
                  retry_backoff_s=p.retry_backoff_s, replace_min_interval_s=p.replace_min_interval_s)


@dataclass
class RunStats:
    started: float = field(default_factory=time.time)
    waves: list[WaveSummary] = field(default_factory=list)
    wave_ids: set[str] = field(default_factory=set)
    waves_rejected: int = 0
    decisions: int = 0
    decision_s_total: float = 0.0


class Service:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        f = cfg.faults
        self.venue_faults = fault_plan(f.venue, f.seed)
        self.db_faults = fault_plan(f.db, f.seed + 1)
        self.actor_faults = fault_plan(f.actor, f.seed + 2)
        self.db = Database(cfg.database.url, call_timeout_s=cfg.deadlines.db_call_s,
                           pool_size=cfg.database.pool_size,
                           pool_timeout_s=cfg.database.pool_timeout_s, faults=self.db_faults)
        schema = ensure_current(self.db.engine, auto_create=cfg.database.auto_create)
        if schema == "created":
            logger.info("database schema created at {}", self.db.url.split("@")[-1])
        self.gateway = build_gateway(cfg, self.venue_faults)
        self.markets = self.gateway.markets()
        self.positions = PositionStore(self.db)
        self.waves = WaveStore(self.db)
        self.scheduler = Scheduler()
        self.market_data = MarketData()
        self.defaults = position_params(cfg)
        self.stats = RunStats()
        self.wave_done = threading.Event()
        self.stopping = threading.Event()
        self._coordinator = None
        self.coordinator_port = CoordinatorPort()
        self.ctx = PositionContext(
            gateway=self.gateway, store=self.positions, markets=self.markets,
            scheduler=self.scheduler, market_data=self.market_data, deadlines=cfg.deadlines,
            coordinator=lambda: self.coordinator_port, epochs={}, faults=self.actor_faults,
            on_final=lambda *_: None, on_decision=self._on_decision)
        self.supervisor = Supervisor(cfg.supervisor, cfg.deadlines, self.ctx, self.defaults,
                                     on_escalate=self._on_escalate)
        self.guardian = Guardian(self, cfg)
        self.health_notes: list[str] = []
        self.paused = False  # operator pause; re-applied to a restarted coordinator
        self.source = None
        self._shut_down = False
        self.recovery = RecoveryReport()
        self._recovered = False  # the coordinator resumes waves only after recovery

    # ---- lifecycle -----------------------------------------------------------------------

    def start(self, *, with_source: bool = True) -> None:
        self.gateway.subscribe(self.market_data.on_tick, self._route_order)
        # The coordinator first, so that restored positions have someone to report to from
        # their first message on; it resumes unfinished waves once recovery is done.
        self.supervisor.start_singleton("coordinator", self._start_coordinator)
        self.guardian.start()  # watching the venue through recovery, when stops are most at risk
        self.recover()
        self._recovered = True
        self._resume_waves(self._coordinator)
        collect_then_freeze()  # start-up garbage, before trading begins
        if with_source:
            self.source = self._make_source()
            self.source.start()

    def recover(self) -> int:
        """Restore every position the database says is open, each under a raised epoch, and
        reconcile the account with the venue (service/recovery.py)."""
        self.recovery = Recovery(self).run()
        return self.recovery.restored

    def _start_coordinator(self, handle):
        ref = WaveCoordinator.start(self.cfg, self.waves, self.positions, self.supervisor,
                                    self.scheduler, self.defaults, handle, self._on_wave_done)
        if self.paused:
            ref.tell(SetPaused(True))
        if self._recovered:  # a restarted coordinator picks up where its predecessor was
            self._resume_waves(ref)
        self._coordinator = ref  # published only once resumed: callers see a ready one
        self.coordinator_port.publish(ref)
        return ref

    def _resume_waves(self, ref) -> None:
        held = self.positions.open_symbols()
        ids = ref.proxy().resume(held).get(timeout=self.cfg.deadlines.operation_s * 4)
        self.stats.wave_ids.update(ids or [])  # a run waits for the waves it finishes, too

    def _make_source(self):
        s = self.cfg.signals
        if s.source == "demo":
            return DemoSource(list(self.markets), self.submit, interval_s=s.demo_interval_s,
                              size=s.demo_wave_size, seed=self.cfg.paper.seed)
        if s.source.startswith(("ws://", "wss://")):
            return WsSource(s.source, self.submit, self.reject, s)
        path = s.source.removeprefix("file:")
        return FileSource(path, self.submit, self.wave_done, wait_s=self.cfg.deadlines.wave_s)

    def submit(self, raw: str | bytes, source: str) -> IntakeResult:
        """Parse a raw wave message and hand it to the coordinator; returns once the wave is
        persisted (so a fast source is slowed to the database's pace, never piled up in a
        mailbox). A bad message is recorded with its reason, never raised."""
        s = self.cfg.signals
        try:
            wave = parse_wave(raw, markets=self.markets, source=source,
                              max_wave_size=s.max_wave_size, max_age_s=s.max_age_s)
        except WaveRejected as e:
            return self.reject(e.reason, source, e.wave_id)
        except Exception as e:  # parse_wave raises only WaveRejected; this is the last guard
            logger.exception("wave parser failed on a message from {}", source)
            return self.reject(f"unreadable message ({type(e).__name__})", source)
        if self.stopping.is_set():
            logger.warning("wave {} arrived during shutdown; not taken", wave.id)
            return IntakeResult("not_taken", wave.id, "service is shutting down")
        reply: Future[str] = Future()
        wait_s = self.cfg.deadlines.operation_s + 1
        try:
            self._coordinator.tell(SubmitWave(wave, reply))
            status = reply.result(timeout=wait_s)
        except Exception as e:  # a crashed or stuck coordinator: the wave was not persisted
            reason = f"coordinator did not take the wave within {wait_s:g}s ({type(e).__name__})"
            logger.error("wave {} from {} not taken: {}", wave.id, source, reason)
            return IntakeResult("not_taken", wave.id, reason)
        if status != "duplicate":
            self.stats.wave_ids.add(wave.id)
        return IntakeResult(status, wave.id)

    def reject(self, reason: str, source: str, wave_id: str | None = None) -> IntakeResult:
        """Record a message that is not a usable wave (sources use it for frames they could not
        even read, e.g. too big); never raises."""
        self.stats.waves_rejected += 1
        try:
            wid = self.waves.insert_rejected(wave_id, reason, source)
        except Exception as e:
            logger.error("wave rejected ({}): {}; recording it failed: {!r}", source, reason, e)
            return IntakeResult("rejected", wave_id, reason)
        logger.error("wave rejected ({}, recorded as {}): {}", source, wid, reason)
        return IntakeResult("rejected", wid, reason)

    def pause(self, paused: bool) -> None:
        self.paused = paused
        self._coordinator.tell(SetPaused(paused))

    def wait_for_waves(self, n: int | None, timeout_s: float | None = None) -> bool:
        end = None if timeout_s is None else time.monotonic() + timeout_s
        while not self.stopping.is_set():
            if n is not None and len(self.stats.waves) >= n:
                return True
            if isinstance(self.source, FileSource) and self.source.finished.is_set() and not self._busy():
                return n is None or len(self.stats.waves) >= n
            if end is not None and time.monotonic() > end:
                return False
            self.stopping.wait(0.05)
        return False

    def _busy(self) -> bool:
        return len(self.stats.waves) < len(self.stats.wave_ids)

    def shutdown(self) -> list[str]:
        """Stop taking waves, let in-flight work finish within the deadline, stop every actor.
        Resting stops stay on the venue: the positions are protected while we are down."""
        if self._shut_down:
            return []
        self._shut_down = True
        deadline = time.monotonic() + self.cfg.deadlines.shutdown_s
        self.stopping.set()
        self.guardian.stop()
        if self.source is not None:
            self.source.stop()
        if self._coordinator is not None:
            self._coordinator.tell(SetPaused(True))
        while time.monotonic() < deadline - 1 and any(
                h.phase in ("new", "entering", "open", "protected", "closing")
                for k, h in list(self.supervisor.children.items()) if k != "coordinator"):
            time.sleep(0.05)
        stuck = self.supervisor.stop_all(max(0.5, deadline - time.monotonic()))
        if stuck:
            logger.warning("shutdown: {} actors did not stop in time and were abandoned", len(stuck))
        self.gateway.close()
        self.scheduler.close()
        self.db.dispose()
        return stuck

    # ---- callbacks -----------------------------------------------------------------------

    def _route_order(self, o: OrderState) -> None:
        pid = position_id_of(o.cid)
        h = self.supervisor.children.get(pid) if pid else None
        if h is not None and h.ref is not None and not h.retired:
            h.ref.tell(OrderUpdate(o))

    def _on_wave_done(self, w: WaveSummary) -> None:
        self.stats.waves.append(w)
        self.wave_done.set()
        collect_then_freeze()  # a wave just settled: the quiet moment between waves

    def _on_decision(self, seconds: float) -> None:
        self.stats.decisions += 1
        self.stats.decision_s_total += seconds

    def _on_escalate(self, key: str, msg: str) -> None:
        self.health_notes.append(f"{key}: {msg}")

    # ---- reporting -----------------------------------------------------------------------

    def fault_counts(self) -> dict[str, int]:
        """How often each injected fault fired, by plan and kind (chaos reports, health)."""
        out: Counter = Counter()
        for name, plan in (("venue", self.venue_faults), ("db", self.db_faults), ("actor", self.actor_faults)):
            for rule in plan.rules:
                if rule.fired:
                    out[f"{name}.{rule.kind}:{rule.op}"] += rule.fired
        return dict(out)

    def positions_view(self) -> Counter:
        return Counter(h.phase for k, h in self.supervisor.children.items() if k != "coordinator")

    def summary(self) -> dict:
        ids = list(self.stats.wave_ids)
        with self.db.tx("db_read") as tx:
            rows = tx.execute(select(SignalRow.outcome, func.count()).where(SignalRow.wave_id.in_(ids))
                              .group_by(SignalRow.outcome)).all() if ids else []
            open_rows = tx.execute(select(PositionRow.phase, func.count())
                                   .where(PositionRow.phase.in_([p.value for p in Phase if not p.final]))
                                   .group_by(PositionRow.phase)).all()
        outcomes = {(k or "pending"): v for k, v in rows}
        opened = sum(n for k, n in outcomes.items() if k in {o.value for o in Outcome if o.opened})
        protected = outcomes.get(Outcome.PROTECTED.value, 0)
        open_now = dict(open_rows)
        return {
            "waves_completed": len(self.stats.waves),
            "waves_rejected": self.stats.waves_rejected,
            "signals": sum(outcomes.values()),
            "positions_opened": opened,
            "positions_protected": protected,
            "ts_coverage": round(protected / opened, 4) if opened else 1.0,
            "outcomes": outcomes,
            "wave_seconds": [round(w.seconds, 3) for w in self.stats.waves],
            "open_positions": sum(open_now.values()),
            "open_by_phase": open_now,
            "restarts": self.supervisor.stats.restarts,
            "escalations": self.supervisor.stats.escalations,
            "abandoned_threads": self.supervisor.abandoned_alive(),
            "recovery": self.recovery.as_dict(),
        } | ({"signal_source": h} if (h := self.signals_health()) else {})

    def signals_health(self) -> dict | None:
        """The signal source's own report (connected/reconnecting, counts), when it has one."""
        health = getattr(self.source, "health", None)
        return health() if callable(health) else None
