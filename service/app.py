"""Wires the service together and runs its lifecycle: start, recover, trade, shut down.

Start-up order matters: the schema is checked before anything runs; the coordinator actor
starts first (restored positions report their outcomes to it), then positions left open by a
previous run are restored and reconciled under new epochs (service/recovery.py), and only then
does the coordinator resume unfinished waves and a signal source start.
"""
from __future__ import annotations

import dataclasses
import gc
import os
import threading
import time
from collections import Counter
from concurrent.futures import Future
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from loguru import logger
from sqlalchemy import func, select

from actors.coordinator import WaveCoordinator, WaveSummary
from actors.coordinator_port import CoordinatorDown, CoordinatorPort
from actors.market_data import MarketData
from actors.messages import Claim, OrderUpdate, Resume, SetPaused, SubmitWave
from actors.position import PositionContext
from actors.scheduler import Scheduler
from core import entry_protocol
from core.config import Config
from core.faults import FaultPlan, FaultRule, InjectedCrash
from core.position_types import Outcome, Params, Phase, TrailingMode, position_id_of
from exchange.factory import build_gateway, paper_state_path
from exchange.gateway import OrderState
from persistence.db import Database, masked_url
from persistence.lease import Lease, acquire as acquire_lease, acquire_file
from persistence.models import PositionRow, SignalRow
from persistence.positions import PositionStore
from persistence.schema import ensure_current
from persistence.waves import WaveStore
from signals.intake import IntakeResult
from signals.rejections import Rejections
from service.alerts import Alerts, urls_from_env
from service.limits import RiskGuard
from service.money import Ledger
from service.protection_gap import gap_stats, venue_gaps
from service.guardian import Guardian
from service.position_supervision import PositionSupervisor
from service.recovery import Recovery, RecoveryReport
from service.waves_without_coordinator import WavesWithoutCoordinator
from signals.sources import DemoSource, FileSource
from signals.ws_source import WsSource
from signals.wave import WaveRejected, parse_wave


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
                  callback_pct=p.trailing_callback_pct, trailing_mode=TrailingMode(p.trailing_mode),
                  notional=cfg.risk.position_notional_usdt, max_attempts=p.max_attempts,
                  retry_backoff_s=p.retry_backoff_s, replace_min_interval_s=p.replace_min_interval_s,
                  leverage=Decimal(cfg.exchange.leverage),
                  maint_margin_pct=cfg.exchange.maintenance_margin_pct)


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
        # The lease before anything reads or writes: a second owner is refused (LeaseHeld).
        self.lease = acquire_lease(cfg.database.url, run_dir=cfg.run_dir, timeout_s=cfg.deadlines.db_call_s)
        self.account_lease = Lease("no paper account file (a real venue's account cannot be locked here)")
        self.halted: str | None = None  # why trading stopped for good (the lease was lost)
        try:
            if (paper := paper_state_path(cfg)) is not None:  # the paper account is ours alone too
                paper = Path(os.path.realpath(paper))
                self.account_lease = acquire_file(paper.with_name(paper.name + ".owner"),
                                                  f"the paper account {paper}", cfg.run_dir)
            self._build(cfg)
        except BaseException:
            self.account_lease.release()
            self.lease.release()
            raise

    def _build(self, cfg: Config) -> None:
        self.db = Database(cfg.database.url, call_timeout_s=cfg.deadlines.db_call_s,
                           pool_size=cfg.database.pool_size,
                           pool_timeout_s=cfg.database.pool_timeout_s, faults=self.db_faults)
        schema = ensure_current(self.db.engine, auto_create=cfg.database.auto_create)
        if schema == "created":
            logger.info("database schema created at {}", masked_url(self.db.url))
        self.gateway = build_gateway(cfg, self.venue_faults)
        self.markets = self.gateway.markets()
        self.positions = PositionStore(self.db)
        self.waves = WaveStore(self.db)
        self.scheduler = Scheduler()
        self.market_data = MarketData()
        try:
            self.entry_mode = entry_protocol.resolve(cfg.protection.entry_mode, cfg.exchange.name,
                                                     getattr(self.gateway, "entry_modes", ()))
        except ValueError:
            self.gateway.close()
            raise
        self.defaults = dataclasses.replace(position_params(cfg), entry_mode=self.entry_mode)
        self.stats = RunStats()
        self.wave_done = threading.Event()
        self.stopping = threading.Event()
        self._coordinator = None
        self.coordinator_port = CoordinatorPort()
        self.ctx = PositionContext(
            gateway=self.gateway, store=self.positions, markets=self.markets,
            scheduler=self.scheduler, market_data=self.market_data, deadlines=cfg.deadlines,
            coordinator=lambda: self.coordinator_port, epochs={}, faults=self.actor_faults,
            on_final=lambda key, epoch: self.supervisor.finished(key, epoch), on_decision=self._on_decision)
        self.supervisor = PositionSupervisor(cfg.supervisor, cfg.deadlines, self.ctx, self.defaults,
                                             on_escalate=self._on_escalate)
        self.guardian = Guardian(self, cfg)
        self.health_notes: list[str] = []
        self.rejections = Rejections(burst=cfg.signals.reject_burst)
        self.paused = False  # operator pause; re-applied to a restarted coordinator
        self.source = None
        self._shut_down = False
        self.recovery = RecoveryReport()
        self._recovered = False  # the coordinator resumes waves only after recovery
        self._recovering: Recovery | None = None
        # orders a position took over from another id (recovery adopting a held position with
        # the stop that rests on it): client id -> owning position, for routing their updates
        self.order_owner: dict[str, str] = {}
        self.money = Ledger(self, cfg.report.timezone)
        self.alerts = Alerts(urls_from_env(cfg.alerts.urls_env), queue_size=cfg.alerts.queue_size)
        self.ctx.on_closed = self._on_closed
        self.guard = RiskGuard(self, cfg.risk, cfg.report.timezone)

    # ---- lifecycle -----------------------------------------------------------------------

    def start(self, *, with_source: bool = True) -> None:
        self.lease.watch(self._lease_lost, self.cfg.database.lease_check_s, self.cfg.deadlines.db_call_s)
        self.gateway.subscribe(self.market_data.on_tick, self._route_order)
        self.guard.restore()
        if self.money.balance() is None:  # the first equity, before the first wave is sized
            logger.warning("venue balance not available at start; equity unknown until it answers")
        if self.cfg.risk.sizing != "fixed":
            self.money.start_refresh(self.cfg.risk.balance_refresh_s)
        # The coordinator first, so that restored positions have someone to report to from
        # their first message on; it resumes unfinished waves once recovery is done.
        self.supervisor.start_singleton("coordinator", self._start_coordinator,
                                        on_retired=self.coordinator_port.retire)
        self.guardian.start()  # watching the venue through recovery, when stops are most at risk
        self.recover()
        self._recovered = True
        self._resume_waves()
        collect_then_freeze()  # start-up garbage, before trading begins
        if with_source:
            self.source = self._make_source()
            self.source.start()

    def recover(self) -> int:
        """Restore every position the database says is open, each under a raised epoch, and
        reconcile the account with the venue (service/recovery.py)."""
        self._recovering = Recovery(self)
        self.recovery = self._recovering.run()
        return self.recovery.restored

    def recovery_progress(self) -> str | None:
        """While start-up recovery runs, what it is doing ("recovering 3 of 10 positions
        (reconciling)"); None once waves may start."""
        if self._recovered:
            return None
        run = self._recovering
        if run is None:
            return "recovering: starting"
        stage, done, total = run.progress()
        return f"recovering {done} of {total} positions ({stage})"

    def _start_coordinator(self, handle):
        """Start a coordinator and queue its start-up; never blocks (it runs on the
        supervisor's restart thread): claiming the epoch and resuming run in the actor,
        under its deadline, so a failure there is a crash or an overrun like any other."""
        if (rule := self.actor_faults.pick("coordinator_start")) is not None and rule.kind == "crash":
            raise InjectedCrash("injected crash while starting the coordinator")
        ref = WaveCoordinator.start(self.cfg, self.waves, self.positions, self.supervisor,
                                    self.scheduler, self.defaults, handle, self._on_wave_done,
                                    guard=self.guard, faults=self.actor_faults)
        ref.tell(Claim())
        if self.paused:
            ref.tell(SetPaused(True))
        if self._recovered:  # a restarted coordinator picks up where its predecessor was
            ref.tell(Resume(self._resumed_future()))
        self._coordinator = ref
        self.coordinator_port.publish(ref)  # its mailbox runs Claim and Resume before anything sent now
        return ref

    def _resumed_future(self) -> Future:
        done: Future = Future()
        # a run waits for the waves it finishes, too
        done.add_done_callback(lambda f: f.exception() or self.stats.wave_ids.update(f.result() or []))
        return done

    def _resume_waves(self) -> None:
        """After recovery: the coordinator finishes unfinished waves before the source starts
        (sent again to a successor if it is replaced meanwhile; resuming twice is harmless)."""
        sup = self.cfg.supervisor
        try:
            ids = self.coordinator_port.request(lambda reply, _n: Resume(reply),
                                                self.cfg.deadlines.operation_s + sup.backoff_max_s * 1.5 + 1,
                                                attempts=sup.max_restarts + 1)
            self.stats.wave_ids.update(ids or [])
        except Exception as e:
            logger.error("coordinator: resuming waves failed: {!r}", e)

    def _make_source(self):
        s = self.cfg.signals
        if s.source == "demo":
            return DemoSource(list(self.markets), self.submit, interval_s=s.demo_interval_s,
                              size=s.demo_wave_size, seed=self.cfg.paper.seed)
        if s.source.startswith(("ws://", "wss://")):
            return WsSource(s.source, self.submit, self.reject, s)
        path = s.source.removeprefix("file:")
        return FileSource(path, self.submit, self.wave_done, wait_s=self.cfg.deadlines.wave_s,
                          restamp=s.file_clock == "now")

    def submit(self, raw: str | bytes, source: str, now: float | None = None) -> IntakeResult:
        """Parse a raw wave message and hand it to the coordinator; returns once the wave is
        persisted (so a fast source is slowed to the database's pace, never piled up in a
        mailbox). A bad message is recorded with its reason, never raised. `now` is the
        clock its age is judged by: a recorded wave replayed at its own time passes it."""
        s = self.cfg.signals
        try:
            wave = parse_wave(raw, markets=self.markets, source=source,
                              max_wave_size=s.max_wave_size, max_age_s=s.max_age_s, now=now)
            if now is not None:  # judged at its own time, but received now
                wave = dataclasses.replace(wave, received_at=time.time())
        except WaveRejected as e:
            return self.reject(e.reason, source, e.wave_id)
        except Exception as e:  # parse_wave raises only WaveRejected; this is the last guard
            logger.exception("wave parser failed on a message from {}", source)
            return self.reject(f"unreadable message ({type(e).__name__})", source)
        if self.stopping.is_set():
            logger.warning("wave {} arrived during shutdown; not taken", wave.id)
            return IntakeResult("not_taken", wave.id, "service is shutting down")
        # A stuck coordinator overruns at operation_s and is replaced after a backoff; the wave
        # then goes to the successor. Each attempt waits for that long, at most once per restart.
        sup = self.cfg.supervisor
        wait_s = self.cfg.deadlines.operation_s + sup.backoff_max_s * 1.5 + 1
        try:
            status = self.coordinator_port.request(lambda reply, n: SubmitWave(wave, reply, resent=n > 0),
                                                   wait_s, attempts=sup.max_restarts + 1)
        except CoordinatorDown as e:
            return self._not_taken(wave, source, f"coordinator down: {e}")
        except Exception as e:  # no coordinator answered: recorded, so no signal is left without an outcome
            return self._not_taken(wave, source, f"the coordinator did not take the wave ({e!r})"[:300])
        if status != "duplicate":
            self.stats.wave_ids.add(wave.id)
        return IntakeResult(status, wave.id)

    def _not_taken(self, wave, source: str, reason: str) -> IntakeResult:
        logger.error("wave {} from {} not taken: {}", wave.id, source, reason)
        try:
            recorded = self.waves.insert_not_taken(wave, reason)
        except Exception as e:
            logger.error("wave {}: recording it as not taken failed: {!r}", wave.id, e)
            return IntakeResult("not_taken", wave.id, reason)
        if not recorded:  # a coordinator stored it after all: it is its to finish
            self.stats.wave_ids.add(wave.id)
            return IntakeResult("opening", wave.id)
        return IntakeResult("not_taken", wave.id, reason)

    @property
    def coordinator_down(self) -> str | None:
        """Why no coordinator takes waves (escalated by the supervisor), or None."""
        return self.coordinator_port.down_reason

    def waves_state(self) -> str:
        """What `status` says about taking waves: the truth about the coordinator first."""
        if self.coordinator_down:
            return f"coordinator down: {self.coordinator_down}"
        h = self.supervisor.children.get("coordinator")
        if h is None or h.ref is None or h.retired:
            return "coordinator restarting: waves wait for it"
        return "PAUSED (not taking new waves)" if self.paused else "taking waves"

    def reject(self, reason: str, source: str, wave_id: str | None = None) -> IntakeResult:
        """Record a message that is not a usable wave (sources use it for frames they could not
        even read, e.g. too big); never raises."""
        self.stats.waves_rejected += 1
        record, summary = self.rejections.admit(reason)
        if summary:
            logger.warning("wave intake ({}): {}", source, summary)
        if not record:
            return IntakeResult("rejected", wave_id, reason)
        try:
            wid = self.waves.insert_rejected(wave_id, reason, source)
        except Exception as e:
            logger.error("wave rejected ({}): {}; recording it failed: {!r}", source, reason, e)
            return IntakeResult("rejected", wave_id, reason)
        logger.error("wave rejected ({}, recorded as {}): {}", source, wid, reason)
        return IntakeResult("rejected", wid, reason)

    def pause(self, paused: bool) -> None:
        self.paused = paused  # a coordinator not started yet (recovering) starts with it
        self.coordinator_port.tell(SetPaused(paused))

    def wait_for_waves(self, n: int | None, timeout_s: float | None = None) -> bool:
        end = None if timeout_s is None else time.monotonic() + timeout_s
        while not self.stopping.is_set():
            if n is not None and len(self.stats.waves) >= n:
                return True
            if self.halted:  # no wave can start or complete any more
                logger.critical("stopping the run: {}", self.halted)
                return False
            if n is not None and self.coordinator_down:  # no wave can complete any more
                logger.critical("stopping the run: coordinator down: {}", self.coordinator_down)
                return False
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
        ref = self.coordinator_port.ref
        try:
            if ref is None:
                raise RuntimeError("no coordinator running")
            # Asked, not told: once it answers, no fill pass of the coordinator is half done, so
            # every position it started is among the children waited for below.
            ref.ask(SetPaused(True, "shutdown"), timeout=max(0.1, deadline - time.monotonic() - 1))
        except Exception as e:  # none, hung or dead: held for a successor, which starts paused
            logger.info("shutdown: the coordinator did not acknowledge the pause ({})", type(e).__name__)
            self.coordinator_port.tell(SetPaused(True, "shutdown"))
        while time.monotonic() < deadline - 1 and any(
                bool(h.phase) and Phase(h.phase).in_flight
                for k, h in list(self.supervisor.children.items()) if k != "coordinator"):
            time.sleep(0.05)
        stuck = self.supervisor.stop_all(max(0.5, deadline - time.monotonic()))
        if stuck:
            logger.warning("shutdown: {} actors did not stop in time and were abandoned", len(stuck))
        self.gateway.close()
        self.scheduler.close()
        self.db.dispose()
        self.money.stop()
        self.alerts.close(max(0.5, deadline - time.monotonic()))
        self.account_lease.release()
        self.lease.release()
        return stuck

    # ---- callbacks -----------------------------------------------------------------------

    def _route_order(self, o: OrderState) -> None:
        pid = self.order_owner.get(o.cid) or position_id_of(o.cid)
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

    def _lease_lost(self, why: str) -> None:
        """Another process may own the database now: stop trading for good. No entry leaves
        this process any more and nothing new starts; positions already held keep (or still
        get) their protective stops, which the new owner's recovery finds on the venue."""
        self.supervisor.halt()  # first: whoever sees `halted` finds the process protect-only
        self.halted = f"database lease lost ({why}); trading halted"
        logger.critical("{}: no new entries from this process; held positions keep their stops. "
                        "Stop it and start again once the database is reachable", self.halted)
        if self.source is not None:
            self.source.stop()
        self.coordinator_port.tell(SetPaused(True, "lease lost"))

    def _on_escalate(self, key: str, msg: str) -> None:
        self.health_notes.append(f"{key}: {msg}")
        self.alerts.notify("needs_attention", f"wave-trader: {key} needs an operator", msg)
        if key == "coordinator":
            self._coordinator_down(msg)

    def _coordinator_down(self, reason: str) -> None:
        """Refuse new waves from now on, and finish the ones already taken without it."""
        try:
            sink = WavesWithoutCoordinator(self.waves, self.supervisor, reason)
        except Exception as e:
            logger.critical("coordinator down and its waves cannot be finished: {!r}", e)
            self.coordinator_port.down(reason)
            return
        self.coordinator_port.down(reason, sink)
        try:
            sink.settle()
        except Exception as e:
            logger.critical("coordinator down: settling its waves failed: {!r}", e)

    def _on_closed(self, s, pnl) -> None:
        """A traded position closed (its own thread: only queue, never wait)."""
        money = f"P&L {pnl.net:+.2f} USDT ({pnl.pct:+.2f}%)" if pnl else "P&L unknown"
        what = f"{s.symbol} {s.side}: {s.close_reason} at {s.exit_price} (entry {s.entry_price}); {money}"
        if s.phase is Phase.EMERGENCY_CLOSED:
            self.alerts.notify("emergency_close", f"EMERGENCY CLOSE {s.symbol}", what)
        elif s.close_reason and "stop" in s.close_reason:
            self.alerts.notify("stop_fired", f"stop fired: {s.symbol}", what)

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
            "rejections": self.rejections.as_dict(),
            "pnl": self._pnl(),
            "entry_mode": self.entry_mode,
            "protection_gap_s": gap_stats(venue_gaps(self.gateway)),
        } | ({"signal_source": h} if (h := self.signals_health()) else {})

    def _pnl(self) -> dict | None:
        try:
            return self.money.snapshot().as_dict()
        except Exception as e:  # a summary must not fail because the money could not be read
            logger.warning("run summary: P&L not available: {}", e)
            return None

    def signals_health(self) -> dict | None:
        """The signal source's own report (connected/reconnecting, counts), when it has one."""
        health = getattr(self.source, "health", None)
        return health() if callable(health) else None
