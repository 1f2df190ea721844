"""The running service: its lifecycle (start, recover, trade, shut down) and the intake of waves.

Every part is built once in service/compose.py; the service holds them and runs them in order.
Start-up order matters: the schema is checked before anything runs; the coordinator actor
starts first (restored positions report their outcomes to it), then positions left open by a
previous run are restored and reconciled under new epochs (service/recovery.py), and only then
does the coordinator resume unfinished waves and a signal source start.
"""
from __future__ import annotations

import os
import threading
import time
from collections import Counter
from concurrent.futures import Future
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

from loguru import logger

from actors.coordinator import WaveCoordinator, WaveSummary
from actors.messages import Claim, OrderUpdate, Resume, SetPaused
from core.config import Config
from core.faults import InjectedCrash
from core.position_types import Params, Phase, position_id_of
from exchange.factory import paper_state_path
from exchange.gateway import Gateway, OrderState
from persistence.lease import Lease, acquire_file
from persistence.lease import acquire as acquire_lease
from service.compose import (
    FaultPlans,
    GatewayWrap,
    Parts,
    RunStats,
    build,
    collect_then_freeze,
    fault_plan,
    position_params,
)
from service.intake import WaveIntake, WaveSubmit
from service.metrics import Metrics
from service.position_supervision import PositionHandle
from service.recovery import Recovery, RecoveryReport
from service.summary import run_summary
from signals.intake import IntakeResult
from signals.sources import DemoSource, FileSource
from signals.ws_source import WsSource
from supervisor import ChildHandle

__all__ = ["RunStats", "Service", "collect_then_freeze", "fault_plan", "position_params"]


class Service:
    def __init__(self, cfg: Config, *, metrics: Metrics | None = None,
                 wrap_gateway: GatewayWrap | None = None) -> None:
        """`metrics`: the control plane's, so the positions' venue calls are timed;
        `wrap_gateway`: what the positions see of the venue (tests)."""
        self.cfg = cfg
        self.faults = FaultPlans.of(cfg)
        self.metrics = metrics
        # The lease before anything reads or writes: a second owner is refused (LeaseHeld).
        self.lease = acquire_lease(cast(str, cfg.database.url), run_dir=cfg.run_dir, timeout_s=cfg.deadlines.db_call_s)
        self.account_lease = Lease("no paper account file (a real venue's account cannot be locked here)")
        self.halted: str | None = None  # why trading stopped for good (the lease was lost)
        try:
            if (paper := paper_state_path(cfg)) is not None:  # the paper account is ours alone too
                paper = Path(os.path.realpath(paper))
                self.account_lease = acquire_file(paper.with_name(paper.name + ".owner"),
                                                  f"the paper account {paper}", cfg.run_dir)
            self.parts: Parts = build(cfg, self.faults, metrics=metrics, wrap_gateway=wrap_gateway)
        except BaseException:
            self.account_lease.release()
            self.lease.release()
            raise
        parts = self.parts
        self.db, self.gateway, self.markets = parts.db, parts.gateway, parts.markets
        self.positions, self.waves, self.scheduler = parts.positions, parts.waves, parts.scheduler
        self.market_data, self.entry_mode, self.stats = parts.market_data, parts.entry_mode, parts.stats
        self.coordinator_port, self.ctx, self.supervisor = parts.coordinator_port, parts.ctx, parts.supervisor
        self.guardian, self.money, self.guard = parts.guardian, parts.money, parts.guard
        self.alerts, self.rejections, self.order_owner = parts.alerts, parts.rejections, parts.order_owner
        self.health_notes = parts.notes
        self.wave_done = threading.Event()
        self.stopping = threading.Event()
        self._coordinator: Any = None  # the coordinator ref last started (tests and tools)
        self.paused = False  # operator pause; re-applied to a restarted coordinator
        self.source: Any = None
        self._shut_down = False
        self.recovery = RecoveryReport()
        self._recovered = False  # the coordinator resumes waves only after recovery
        self._recovering: Recovery | None = None
        self.intake = WaveIntake(cfg, parts.markets, parts.coordinator_port, parts.waves, parts.stats,
                                 parts.rejections, self.stopping)

    # the injected-fault plans, by what they act on (tests and chaos add rules to them)
    venue_faults = property(lambda self: self.faults.venue)
    db_faults = property(lambda self: self.faults.db)
    actor_faults = property(lambda self: self.faults.actor)

    @property
    def venue(self) -> Gateway:
        """The venue as the positions see it (instrumented under the control plane)."""
        return self.ctx.gateway

    @property
    def defaults(self) -> Params:
        """The default Params new positions start with (owned by `parts.defaults`)."""
        return self.parts.defaults.current

    def set_defaults(self, changes: dict[str, Decimal]) -> Params:
        """An operator's change of the defaults, sent to their owner; returns the new defaults."""
        return self.parts.defaults.change(changes)

    def restore_paused(self) -> None:
        """Before `start()`: an operator paused a previous run; the coordinator starts paused."""
        self.paused = True

    # ---- lifecycle -----------------------------------------------------------------------

    def start(self, *, with_source: bool = True,
              submit: WaveSubmit | None = None) -> None:
        """`submit`: what the source hands its waves to (the service's own intake if None)."""
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
            self.source = self._make_source(submit)
            self.source.start()

    def recover(self) -> int:
        """Restore every position the database says is open, each under a raised epoch, and
        reconcile the account with the venue (service/recovery.py)."""
        self._recovering = Recovery(self.parts.recovery_deps())
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

    def _start_coordinator(self, handle: ChildHandle) -> Any:
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

    def _resumed_future(self) -> Future[list[str] | None]:
        done: Future[list[str] | None] = Future()

        def finished(f: Future[list[str] | None]) -> None:  # a run waits for the waves it finishes, too
            if f.exception() is None:
                self.stats.wave_ids.update(f.result() or [])
        done.add_done_callback(finished)
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

    def _make_source(self, submit: WaveSubmit | None = None) -> Any:
        s, take = self.cfg.signals, submit or self.submit
        if s.source == "demo":
            return DemoSource(list(self.markets), take, interval_s=s.demo_interval_s,
                              size=s.demo_wave_size, seed=self.cfg.paper.seed)
        if s.source.startswith(("ws://", "wss://")):
            return WsSource(s.source, take, self.reject, s)
        path = s.source.removeprefix("file:")
        return FileSource(path, take, self.wave_done, wait_s=self.cfg.deadlines.wave_s,
                          restamp=s.file_clock == "now")

    def submit(self, raw: str | bytes, source: str, now: float | None = None) -> IntakeResult:
        """One raw wave message from a source, to the coordinator (service/intake.py)."""
        return self.intake.submit(raw, source, now)

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
        """Record a message that is not a usable wave; never raises (service/intake.py)."""
        return self.intake.reject(reason, source, wave_id)

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
            ask = getattr(ref, "ask", None)  # a coordinator's ref, not the sink of a coordinator down
            if ask is None:
                raise RuntimeError("no coordinator running")
            # Asked, not told: once it answers, no fill pass of the coordinator is half done, so
            # every position it started is among the children waited for below.
            ask(SetPaused(True, "shutdown"), timeout=max(0.1, deadline - time.monotonic() - 1))
        except Exception as e:  # none, hung or dead: held for a successor, which starts paused
            logger.info("shutdown: the coordinator did not acknowledge the pause ({})", type(e).__name__)
            self.coordinator_port.tell(SetPaused(True, "shutdown"))
        while time.monotonic() < deadline - 1 and any(
                isinstance(h, PositionHandle) and h.phase is not None and h.phase.in_flight
                for h in list(self.supervisor.children.values())):
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

    # ---- reporting -----------------------------------------------------------------------

    def fault_counts(self) -> dict[str, int]:
        """How often each injected fault fired, by plan and kind (chaos reports, health)."""
        return self.faults.counts()

    def positions_view(self) -> Counter[Phase | None]:
        """Open positions by phase (None: a child that has not reported one yet)."""
        return Counter(h.phase for h in list(self.supervisor.children.values()) if isinstance(h, PositionHandle))

    def summary(self) -> dict[str, Any]:
        """The run's summary (the last line of `bin/trader run --json`): service/summary.py."""
        return run_summary(self)

    def signals_health(self) -> dict[str, Any] | None:
        """The signal source's own report (connected/reconnecting, counts), when it has one."""
        health = getattr(self.source, "health", None)
        return health() if callable(health) else None
