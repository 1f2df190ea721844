"""`bin/trader chaos`: paper waves under a fault mix, then every invariant checked.

Operators rehearse failures with it; CI runs it too. The fault mixes are ordinary `[faults]`
config (so a mix can also be written by hand in a TOML file); the report says what was
injected, what the supervisor did about it, and whether the invariants held.
"""
from __future__ import annotations

import json
import shutil
import statistics
import sys
import threading
import time
from argparse import Namespace
from collections import Counter
from typing import TYPE_CHECKING, Any, cast

from loguru import logger
from sqlalchemy import func, select

from core.config import ConfigError
from core.position_types import Outcome
from persistence.models import EventRow, SignalRow
from service.invariants import check_invariants, settle
from service.logs import setup_logging
from service.replay import rehearsal_config
from signals.intake import IntakeResult

if TYPE_CHECKING:
    from service.app import Service

# Each mix: config overrides (TOML literals) applied on top of the rehearsal defaults.
BASE = [
    "signals.source=demo", "signals.demo_interval_s=0.4", "signals.demo_wave_size=6",
    "signals.inbox_size=2", "paper.extra_symbols=60", "paper.tick_interval_ms=100",
    "paper.volatility=0.004", "paper.jitter_ms=40", "risk.max_open_positions=40",
    "protection.trailing_mode=emulated", "protection.trailing_activation_pct=0.4",
    "protection.trailing_callback_pct=0.5", "protection.replace_min_interval_s=0.2",
    "protection.retry_backoff_s=0.05", "deadlines.venue_call_s=1", "deadlines.db_call_s=1",
    "deadlines.operation_s=2", "deadlines.protect_s=6", "deadlines.wave_s=20",
    "supervisor.backoff_base_s=0.05", "supervisor.backoff_max_s=0.5", "log.status_interval_s=0",
    "guardian.interval_s=0.5",
]


def _rules(section: str, *rules: str) -> str:
    return f"faults.{section}=[{', '.join(rules)}]"


MIXES: dict[str, list[str]] = {
    "default": [
        _rules("venue",
               '{kind="unavailable", op="place_order", leg="stop", probability=0.08}',
               '{kind="timeout_accepted", op="place_order", leg="entry", probability=0.05}',
               '{kind="timeout_lost", op="place_order", leg="stop", probability=0.03}',
               '{kind="invalid", op="place_order", leg="entry", probability=0.03}',
               '{kind="hang", op="place_order", leg="stop", probability=0.02, times=2}',
               '{kind="latency", op="*", probability=0.05, latency_ms=300}'),
        _rules("db",
               '{kind="latency", op="db_write", probability=0.05, latency_ms=50}',
               '{kind="hang", op="db_write", probability=0.003, times=1}'),
        _rules("actor",
               '{kind="crash", op="tick", probability=0.002}',
               '{kind="crash", op="recover", probability=0.05}'),
    ],
    "calm": [],
    "venue-down": [_rules("venue", '{kind="unavailable", op="*", probability=0.3}')],
    "hangs": [_rules("venue", '{kind="hang", op="place_order", probability=0.05, times=4}'),
              _rules("db", '{kind="hang", op="db_write", probability=0.01, times=2}')],
    "crashy": [_rules("actor", '{kind="crash", op="tick", probability=0.01}',
                      '{kind="crash", op="recover", probability=0.2}')],
}


class _Intake:
    """Stands between the demo source and the service: takes exactly the waves the run asks
    for (or, in a soak, waves until it is closed), so the count of waves taken is known and
    every one of them can be waited for before the run is judged."""

    def __init__(self, svc: "Service", limit: int | None) -> None:
        self.svc, self.limit = svc, limit
        self.inner = svc.submit
        self.taken = 0
        self.closed = False
        self._lock = threading.Lock()

    def submit(self, raw: str | bytes, source: str, now: float | None = None) -> IntakeResult:
        with self._lock:
            if self.closed:
                return IntakeResult("not_taken", None, "chaos run: no more waves taken")
            res = self.inner(raw, source, now)
            if res:
                self.taken += 1
                if self.limit is not None and self.taken >= self.limit:
                    self._close()
            return res

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        self.closed = True
        if self.svc.source is not None:
            self.svc.source.stop()


def _opened(svc: "Service") -> int:
    """Positions opened so far (signals whose outcome says the venue filled their entry)."""
    opened = [o.value for o in Outcome if o.opened]
    with svc.db.tx("db_read") as tx:
        return tx.scalar(select(func.count()).select_from(SignalRow).where(SignalRow.outcome.in_(opened))) or 0


def _until_positions(svc: "Service", n: int, end: float) -> bool:
    while time.monotonic() < end and not svc.stopping.is_set():
        try:
            if _opened(svc) >= n:
                return True
        except Exception as e:  # an injected database fault; the run goes on
            logger.warning("chaos: could not count opened positions: {!r}", e)
        svc.stopping.wait(1.0)
    return False


def chaos(args: Namespace) -> int:
    from service.app import Service

    if args.mix not in MIXES:
        print(f"bin/trader chaos: unknown mix {args.mix!r}; choose from {', '.join(MIXES)}", file=sys.stderr)
        return 2
    try:
        cfg, tmp = rehearsal_config(args.config, [*BASE, *MIXES[args.mix], *args.overrides], [], "chaos")
    except ConfigError as e:
        print(f"bin/trader: {e}", file=sys.stderr)
        return 2
    setup_logging(cfg.log.level, cfg.log.file, quiet=args.quiet)
    soak = getattr(args, "positions", None)
    timeout = args.timeout if args.timeout is not None else (max(300.0, soak * 0.5) if soak else 300.0)
    logger.info("chaos: {} under the {!r} fault mix", f"until {soak} positions opened" if soak
                else f"{args.waves} waves", args.mix)
    t0 = time.monotonic()
    end = t0 + timeout
    svc = Service(cfg)
    intake = _Intake(svc, None if soak else args.waves)
    try:
        svc.start(submit=intake.submit)  # the demo source submits through it
        if soak:
            reached = _until_positions(svc, soak, end)
        else:
            reached = svc.wait_for_waves(args.waves, timeout_s=max(0.0, end - time.monotonic()))
        intake.close()
        # every wave taken completes before the storm is called off: none is left pending (the
        # one opening and those in the inbox each have their deadline; past that it is a failure)
        drain_s = svc.cfg.deadlines.wave_s * (svc.cfg.signals.inbox_size + 2)
        drained = svc.wait_for_waves(intake.taken, timeout_s=drain_s)
        svc.pause(True)
        fired = svc.fault_counts()
        for plan in (svc.venue_faults, svc.db_faults, svc.actor_faults):
            plan.rules.clear()  # the storm is over: now everything must come right
            plan.release()  # wake the hung calls: they must be fenced, not obeyed
        cast(Any, svc.gateway).stop_feed()  # paper only; a moving market would race the DB and venue snapshots
        settled = settle(svc, timeout_s=30)
        svc.guardian.stop()
        violations = check_invariants(svc)
        report = _report(svc, args, (reached, drained), settled, violations, time.monotonic() - t0, fired,
                         intake.taken, soak)
    finally:
        svc.shutdown()
        svc.db.dispose()
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(report, sort_keys=True) if args.json else _render(report), flush=True)
    return 0 if report["ok"] else 1


def _protection_gap(svc: "Service") -> dict:
    """Entry fill recorded → first stop recorded resting, per position (seconds)."""
    with svc.db.tx("db_read") as tx:
        rows = tx.execute(select(EventRow.position_id, EventRow.kind, EventRow.ts)
                          .where(EventRow.kind.in_(["entered", "stop_placed"])).order_by(EventRow.id)).all()
    entered: dict[str, float] = {}
    stopped_first: set[str] = set()  # a stop recorded resting before the entry (stop-first)
    gaps: list[float] = []
    for pid, kind, ts in rows:
        if pid is None:  # entries and stops are always recorded with their position
            continue
        if kind == "entered" and pid in stopped_first:
            stopped_first.discard(pid)
            gaps.append(0.0)
        elif kind == "entered":
            entered.setdefault(pid, ts)
        elif pid in entered:
            gaps.append(ts - entered.pop(pid))
        else:
            stopped_first.add(pid)
    return _dist(gaps) | {"never_protected": len(entered)}


def _dist(xs: list[float]) -> dict:
    xs = sorted(xs)
    if not xs:
        return {"n": 0, "p50": None, "p99": None, "max": None}
    return {"n": len(xs), "p50": round(statistics.median(xs), 3),
            "p99": round(xs[min(len(xs) - 1, int(0.99 * len(xs)))], 3), "max": round(xs[-1], 3)}


def _report(svc: "Service", args, progress: tuple[bool, bool], settled: bool, violations, seconds: float, fired: dict,
            taken: int, soak: int | None) -> dict:
    sup = svc.supervisor
    by_inv = Counter(v.invariant for v in violations)
    summary = svc.summary()
    guardian = svc.guardian.report()
    pending = summary["outcomes"].get("pending", 0)
    guarded = guardian["max_unprotected_s"] <= guardian["grace_s"]
    reached, drained = progress
    done = reached and drained
    return {
        "mix": args.mix, "waves_requested": None if soak else args.waves, "waves_taken": taken,
        "waves_completed": summary["waves_completed"], "positions_target": soak,
        "completed_in_time": done, "drained": drained, "settled": settled, "seconds": round(seconds, 2),
        "signals": summary["signals"], "outcomes": summary["outcomes"], "pending": pending,
        "positions_opened": summary["positions_opened"], "ts_coverage": summary["ts_coverage"],
        "faults_fired": fired,
        "restarts": sup.stats.restarts, "escalations": sup.stats.escalations,
        "abandoned_threads": len(sup.abandoned), "abandoned_still_alive": sup.abandoned_alive(),
        "reprotect_s": {k: v for k, v in _dist(sup.stats.reprotect_s).items() if k != "p99"},
        "entry_mode": summary["entry_mode"], "protection_gap_s": summary["protection_gap_s"],
        "recorded_protection_gap_s": _protection_gap(svc),
        "guardian": guardian,
        "invariants": {str(i): by_inv.get(i, 0) for i in (1, 2, 3, 4, 6, 7, 8, 9, 10)},
        "violations": [str(v) for v in violations[:50]],
        "ok": done and settled and not violations and pending == 0 and guarded,
    }


def _gap(g: dict | None) -> str:
    if g is None:
        return "not measured by this venue"
    return f"n={g['n']} p50={g['p50']}s p99={g['p99']}s max={g['max']}s"


def _render(r: dict) -> str:
    inv = "  ".join(f"{k}:{'ok' if v == 0 else f'{v} FAIL'}" for k, v in r["invariants"].items())
    g, gap = r["guardian"], r["recorded_protection_gap_s"]
    goal = f"{r['positions_opened']}/{r['positions_target']} positions" if r["positions_target"] \
        else f"{r['waves_completed']}/{r['waves_requested']} waves"
    lines = [
        f"chaos mix {r['mix']!r}: {goal} ({r['waves_taken']} waves taken, {r['waves_completed']} completed)"
        f" in {r['seconds']}s{'' if r['completed_in_time'] else ' (timed out)'}",
        f"signals {r['signals']}  outcomes {r['outcomes']}  pending {r['pending']}",
        f"positions opened {r['positions_opened']}  coverage {r['ts_coverage']:.0%}",
        f"faults fired {r['faults_fired']}",
        f"restarts {r['restarts']}  escalations {r['escalations']}  abandoned threads {r['abandoned_threads']}"
        f" (alive {r['abandoned_still_alive']})  re-protect after restart: n={r['reprotect_s']['n']}"
        f" p50={r['reprotect_s']['p50']}s max={r['reprotect_s']['max']}s",
        f"entry mode {r['entry_mode']}  entry fill → stop resting (venue): {_gap(r['protection_gap_s'])}",
        f"entry → stop resting as recorded: p50={gap['p50']}s p99={gap['p99']}s max={gap['max']}s"
        f" never protected {gap['never_protected']}",
        f"guardian: max unprotected {g['max_unprotected_s']}s (grace {g['grace_s']:g}s)"
        f" emergency stops {g['emergency_stops']} closes {g['emergency_closes']}"
        f" read failures {g['read_failures']} disagreements {sum(g['disagreements'].values())}",
        f"invariants  {inv}{'' if r['settled'] else '   (service did not settle)'}",
        *(f"  ✗ {v}" for v in r["violations"]),
        "RESULT: " + ("all invariants held" if r["ok"] else "VIOLATIONS or incomplete run"),
    ]
    return "\n".join(lines)
