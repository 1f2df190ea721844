"""Health: is every open position protected, and is the machinery that protects it working?

Status and thresholds (all in `[health]`, README "Health and metrics"):

critical — a position unprotected (no resting stop) longer than `unprotected_critical_s`;
  trailing coverage below `coverage_critical_below`; the coordinator escalated, or an
  escalated position whose emergency close failed; `abandoned_critical` or more abandoned
  threads alive; the database failing every recent call.
degraded — a position unprotected longer than `unprotected_degraded_s`; coverage below
  `coverage_degraded_below`; any escalation; a restart within the supervisor's restart
  window; any abandoned thread alive; venue or DB p99 latency above its threshold; half or
  more of the recent venue calls failing on the network.
healthy — none of the above. Pausing is deliberate and reported, but does not degrade.

Coverage counts a position only once it is older than `grace_s` in a non-trailing phase, so
the second or two between an entry fill and its trailing stop does not flap the status.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from loguru import logger
from sqlalchemy import func, select

from control.replies import HealthReply, UnprotectedOut
from core.config import HealthCfg
from core.phases import HOLDS_POSITION, Phase
from persistence.models import SignalRow
from service.metrics import Metrics
from service.position_supervision import PositionSupervisor
from service.views import HealthSource

class HealthMonitor:
    def __init__(self, svc: HealthSource, cfg: HealthCfg, metrics: Metrics, restart_window_s: float) -> None:
        self.svc, self.cfg, self.metrics = svc, cfg, metrics
        self.restart_window_s = restart_window_s
        self._lock = threading.Lock()  # guards the trackers below; held for microseconds
        self._not_trailing_since: dict[str, float] = {}
        self._restart_times: deque[float] = deque()
        self._restarts_seen = 0
        self._last_status = "healthy"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="health", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def report(self, now: float | None = None) -> HealthReply:
        now = time.monotonic() if now is None else now
        sup = self.svc.supervisor
        guardian = getattr(self.svc, "guardian", None)
        venue_view = guardian is not None and guardian.fresh(now)
        if venue_view:
            holding, trailing_keys, unprotected = self._venue_view(guardian, now)
        else:  # no guardian, or it cannot read the venue: the actors' own account
            holding, trailing_keys, unprotected = self._actors_view(sup, now)
        with self._lock:
            live = set(holding)
            for k in holding:
                if k in trailing_keys:
                    self._not_trailing_since.pop(k, None)
                else:
                    self._not_trailing_since.setdefault(k, now)
            for k in set(self._not_trailing_since) - live:
                del self._not_trailing_since[k]
            overdue = sum(1 for t in self._not_trailing_since.values() if now - t > self.cfg.grace_s)
            restarts = sup.stats.restarts
            self._restart_times.extend([now] * max(0, restarts - self._restarts_seen))
            self._restarts_seen = max(self._restarts_seen, restarts)
            while self._restart_times and now - self._restart_times[0] > self.restart_window_s:
                self._restart_times.popleft()
            recent = len(self._restart_times)
        trailing = len(trailing_keys)
        counted = trailing + overdue
        effective = trailing / counted if counted else 1.0
        abandoned = sup.abandoned_alive()
        crit, degr = self._rules(unprotected, effective, recent, abandoned)
        if guardian is not None:
            self._guardian_rules(guardian, venue_view, unprotected, crit, degr)
        m = self.metrics
        db_n, db_err = m.db.error_ratio()
        return HealthReply(
            status="critical" if crit else "degraded" if degr else "healthy",
            reasons=crit + degr, open=len(holding), protected=len(holding) - len(unprotected),
            trailing=trailing, coverage=round(trailing / len(holding), 4) if holding else 1.0,
            unprotected=sorted(unprotected, key=lambda u: -u.seconds), restarts=restarts,
            recent_restarts=recent, escalations=sup.stats.escalations, abandoned_alive=abandoned,
            venue_p50_ms=_ms(m.venue.quantile(0.5)), venue_p99_ms=_ms(m.venue.quantile(0.99)),
            venue_calls=m.venue.calls, venue_errors=m.venue.errors,
            db_p50_ms=_ms(m.db.quantile(0.5)), db_p99_ms=_ms(m.db.quantile(0.99)),
            db_ok=not (db_n >= 3 and db_err == 1.0), paused=bool(getattr(self.svc, "paused", False)),
            recovering=self.svc.recovery_progress(), halted=getattr(self.svc, "halted", None),
            loss_limit_hit=bool((guard := getattr(self.svc, "guard", None)) and guard.status()["halted"]))

    @staticmethod
    def _actors_view(sup, now: float) -> tuple[list[str], set[str], list[UnprotectedOut]]:
        kids = [(k, h) for k, h in list(sup.children.items()) if k != "coordinator"]
        holding = [(k, h) for k, h in kids if h.phase in HOLDS_POSITION]
        unprotected = [UnprotectedOut(id=k, symbol=h.symbol, seconds=round(now - since, 3))
                       for k, h in holding if (since := h.unprotected_since) is not None]
        return [k for k, _ in holding], {k for k, h in holding if h.phase == Phase.TRAILING}, unprotected

    @staticmethod
    def _venue_view(guardian, now: float) -> tuple[list[str], set[str], list[UnprotectedOut]]:
        """Positions as the venue holds them, keyed by symbol: a stop counts only if the venue
        rests it; trailing is a resting native trailing stop, or (emulated) a trailing actor."""
        covers = dict(guardian.covers)
        owners = guardian.owners()
        trailing = set()
        for sym, c in covers.items():
            h = owners.get(sym)
            emulated = h is not None and h.phase == Phase.TRAILING and getattr(h, "trailing_mode", "") == "emulated"
            if c.protected and (c.trailing is not None or emulated):
                trailing.add(sym)
        unprotected = [UnprotectedOut(id=n.position_id, symbol=n.symbol, seconds=n.seconds)
                       for n in guardian.naked(now) if n.symbol in covers]
        return list(covers), trailing, unprotected

    def _guardian_rules(self, guardian, venue_view: bool, unprotected: list[UnprotectedOut],
                        crit: list[str], degr: list[str]) -> None:
        grace = guardian.gcfg.grace_s
        over = [u for u in unprotected if u.seconds > grace] if venue_view else []
        if over:
            crit.append(f"{len(over)} position(s) without a resting stop at the venue for more than "
                        f"guardian.grace_s={grace:g}s ({', '.join(u.symbol for u in over[:5])})")
        g = guardian.stats
        if g.failing_rounds:
            degr.append(f"guardian: {g.failing_rounds} venue read(s) in a row failed ({g.last_error})")
        elif not venue_view and guardian.last_ok is not None:
            degr.append("guardian: its view of the venue is stale")

    def _rules(self, unprotected: list[UnprotectedOut], coverage: float, recent: int,
               abandoned: int) -> tuple[list[str], list[str]]:
        facts = _Facts(cfg=self.cfg, svc=self.svc, sup=self.svc.supervisor, metrics=self.metrics,
                       unprotected=unprotected, coverage=coverage, recent=recent, abandoned=abandoned,
                       restart_window_s=self.restart_window_s,
                       notes=tuple(getattr(self.svc, "health_notes", [])))
        verdict = _Verdict()
        for rule in RULES:
            rule(facts, verdict)
        return verdict.crit, verdict.degr

    def outcomes(self) -> dict[str, int]:
        """Signals by outcome, all time. Straight on the engine: bounded by the DB timeouts,
        and outside the fault hooks that rehearse hangs for the actors."""
        with self.svc.db.engine.connect() as conn:
            rows = conn.execute(select(SignalRow.outcome, func.count()).group_by(SignalRow.outcome)).all()
        return {(k or "pending"): v for k, v in rows}

    def line(self, h: HealthReply) -> str:
        def ms(v: float | None) -> str:
            return "-" if v is None else f"{v:.0f}ms"
        return (f"{h.status} | coverage {h.trailing}/{h.open} trailing, {len(h.unprotected)} unprotected"
                f" | restarts {h.restarts} ({h.recent_restarts} recent), escalations {h.escalations},"
                f" abandoned {h.abandoned_alive} | venue p99 {ms(h.venue_p99_ms)}, db p99 {ms(h.db_p99_ms)}"
                f"{' | PAUSED' if h.paused else ''}"
                f"{' | ' + '; '.join(h.reasons) if h.reasons else ''}")

    def _run(self) -> None:
        last_log = time.monotonic()
        while not self._stop.wait(self.cfg.sample_interval_s):
            try:
                h = self.report()
                now = time.monotonic()
                if h.status != self._last_status:
                    level = {"healthy": "INFO", "degraded": "WARNING", "critical": "CRITICAL"}[h.status]
                    logger.log(level, "health: {} -> {}", self._last_status, self.line(h))
                    alerts = getattr(self.svc, "alerts", None)
                    if h.status == "critical" and alerts is not None:
                        alerts.notify("health_critical", "wave-trader health CRITICAL", "; ".join(h.reasons))
                    self._last_status = h.status
                    last_log = now
                elif self.cfg.log_interval_s and now - last_log >= self.cfg.log_interval_s:
                    logger.info("health: {}", self.line(h))
                    last_log = now
            except Exception:
                logger.exception("health sampling failed")


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


# ---- the rules ---------------------------------------------------------------------------
# Each rule reads the facts of one report and adds its reasons, critical or degraded; they run
# in the order listed, which is the order of the reasons in a report.


@dataclass(frozen=True)
class _Facts:
    cfg: HealthCfg
    svc: HealthSource
    sup: PositionSupervisor
    metrics: Metrics
    unprotected: list[UnprotectedOut]
    coverage: float
    recent: int
    abandoned: int
    restart_window_s: float
    notes: tuple[str, ...]

    def failed_closes(self) -> list[str]:
        """Escalated positions whose emergency close failed (the note names the position)."""
        return [n.split(":", 1)[0] for n in self.notes if "close failed" in n]


@dataclass
class _Verdict:
    crit: list[str] = field(default_factory=list)
    degr: list[str] = field(default_factory=list)


def stuck_withdrawals(f: _Facts, v: _Verdict) -> None:
    """Degraded: a close-position stop of ours that will not cancel (its symbol stays held)."""
    stuck = sum(1 for k, h in list(f.sup.children.items())
                if k != "coordinator" and getattr(h, "withdraw_stuck", False))
    if stuck:
        v.degr.append(f"{stuck} close-position stop(s) of ours will not cancel (symbol held until gone)")


def unprotected_too_long(f: _Facts, v: _Verdict) -> None:
    """Critical past `unprotected_critical_s` without a resting stop, degraded past
    `unprotected_degraded_s`."""
    c, worst = f.cfg, max((u.seconds for u in f.unprotected), default=0.0)
    if worst > c.unprotected_critical_s:
        v.crit.append(f"{sum(u.seconds > c.unprotected_critical_s for u in f.unprotected)} position(s) "
                      f"unprotected for more than {c.unprotected_critical_s:g}s (longest {worst:.1f}s)")
    elif worst > c.unprotected_degraded_s:
        v.degr.append(f"{sum(u.seconds > c.unprotected_degraded_s for u in f.unprotected)} position(s) "
                      f"unprotected for more than {c.unprotected_degraded_s:g}s (longest {worst:.1f}s)")


def trailing_coverage(f: _Facts, v: _Verdict) -> None:
    """Critical below `coverage_critical_below`, degraded below `coverage_degraded_below`."""
    c = f.cfg
    if f.coverage < c.coverage_critical_below:
        v.crit.append(f"trailing-stop coverage {f.coverage:.0%} is below {c.coverage_critical_below:.0%}")
    elif f.coverage < c.coverage_degraded_below:
        v.degr.append(f"trailing-stop coverage {f.coverage:.0%} is below {c.coverage_degraded_below:.0%}")


def halted(f: _Facts, v: _Verdict) -> None:
    """Critical: the service halted itself (the reason is its own)."""
    if reason := getattr(f.svc, "halted", None):
        v.crit.append(reason)


def recovering(f: _Facts, v: _Verdict) -> None:
    """Degraded while start-up recovery runs: no waves until it is done."""
    if progress := f.svc.recovery_progress():
        v.degr.append(f"{progress}: waves start once it is done")


def coordinator_escalated(f: _Facts, v: _Verdict) -> None:
    """Critical: the wave coordinator was escalated, so no waves are processed."""
    if "coordinator" in f.sup.escalated:
        v.crit.append("the wave coordinator was escalated: no waves are being processed")


def failed_emergency_closes(f: _Facts, v: _Verdict) -> None:
    """Critical: an escalated position is still open because its emergency close failed."""
    if failed := f.failed_closes():
        v.crit.append(f"escalated position(s) left open after a failed close: {', '.join(failed)}")


def escalations(f: _Facts, v: _Verdict) -> None:
    """Degraded: positions escalated and closed by the supervisor (when no rule above already
    made an escalation critical)."""
    if f.sup.stats.escalations and not f.failed_closes() and "coordinator" not in f.sup.escalated:
        v.degr.append(f"{f.sup.stats.escalations} escalation(s): positions closed by the supervisor")


def setting_notes(f: _Facts, v: _Verdict) -> None:
    """Degraded: an operator setting that could not be applied as asked."""
    v.degr.extend(n for n in f.notes if n.startswith("setting "))


def abandoned_threads(f: _Facts, v: _Verdict) -> None:
    """Critical at `abandoned_critical` or more abandoned actor threads alive, degraded at any."""
    if f.abandoned >= f.cfg.abandoned_critical:
        v.crit.append(f"{f.abandoned} abandoned actor threads alive (limit {f.cfg.abandoned_critical})")
    elif f.abandoned:
        v.degr.append(f"{f.abandoned} abandoned actor thread(s) alive")


def recent_restarts(f: _Facts, v: _Verdict) -> None:
    """Degraded: a restart within the supervisor's restart window."""
    if f.recent:
        v.degr.append(f"{f.recent} restart(s) in the last {f.restart_window_s:g}s")


def database_errors(f: _Facts, v: _Verdict) -> None:
    """Critical when the database fails every recent call (three at least), degraded at any failure."""
    db_n, db_err = f.metrics.db.error_ratio()
    if db_n >= 3 and db_err == 1.0:
        v.crit.append(f"database: the last {db_n} calls all failed")
    elif db_err > 0:
        v.degr.append(f"database: {db_err:.0%} of the last {db_n} calls failed")


def signal_source(f: _Facts, v: _Verdict) -> None:
    """Degraded: the signal source is not connected and says why."""
    src = f.svc.signals_health() if hasattr(f.svc, "signals_health") else None
    if src and src.get("state") != "connected" and src.get("last_error"):
        v.degr.append(f"signal source {src.get('source')} is {src['state']}: {src['last_error']}")


def venue_errors(f: _Facts, v: _Verdict) -> None:
    """Degraded: half or more of the recent venue calls (four at least) failed on the network."""
    v_n, v_err = f.metrics.venue.error_ratio()
    if v_n >= 4 and v_err >= 0.5:
        v.degr.append(f"venue: {v_err:.0%} of the last {v_n} calls failed on the network")


def slow_calls(f: _Facts, v: _Verdict) -> None:
    """Degraded: venue or database p99 latency above its threshold."""
    m, c = f.metrics, f.cfg
    for name, win, limit in (("venue", m.venue, c.venue_p99_degraded_s), ("database", m.db, c.db_p99_degraded_s)):
        p99 = win.quantile(0.99)
        if p99 is not None and p99 > limit:
            v.degr.append(f"{name} p99 latency {p99 * 1000:.0f} ms is above {limit * 1000:.0f} ms")


RULES: tuple[Callable[[_Facts, _Verdict], None], ...] = (
    stuck_withdrawals, unprotected_too_long, trailing_coverage, halted, recovering,
    coordinator_escalated, failed_emergency_closes, escalations, setting_notes, abandoned_threads,
    recent_restarts, database_errors, signal_source, venue_errors, slow_calls,
)
