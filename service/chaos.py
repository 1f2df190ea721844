"""`bin/trader chaos`: paper waves under a fault mix, then every invariant checked.

Operators rehearse failures with it; CI runs it too. The fault mixes are ordinary `[faults]`
config (so a mix can also be written by hand in a TOML file); the report says what was
injected, what the supervisor did about it, and whether DESIGN §3's invariants held.
"""
from __future__ import annotations

import json
import shutil
import statistics
import sys
import time
from argparse import Namespace
from collections import Counter

from loguru import logger

from core.config import ConfigError
from service.invariants import check_invariants, settle
from service.logs import setup_logging
from service.replay import rehearsal_config

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
    logger.info("chaos: {} waves under the {!r} fault mix", args.waves, args.mix)
    t0 = time.monotonic()
    svc = Service(cfg)
    try:
        svc.start()
        done = svc.wait_for_waves(args.waves, timeout_s=args.timeout)
        if svc.source is not None:
            svc.source.stop()
        svc.pause(True)
        fired = svc.fault_counts()
        for plan in (svc.venue_faults, svc.db_faults, svc.actor_faults):
            plan.rules.clear()  # the storm is over: now everything must come right
            plan.release()  # wake the hung calls: they must be fenced, not obeyed
        svc.gateway.stop_feed()  # a moving market would race the DB and venue snapshots
        settled = settle(svc, timeout_s=30)
        violations = check_invariants(svc)
        report = _report(svc, args, done, settled, violations, time.monotonic() - t0, fired)
    finally:
        svc.shutdown()
        svc.db.dispose()
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(report, sort_keys=True) if args.json else _render(report), flush=True)
    return 0 if report["ok"] else 1


def _report(svc, args, done: bool, settled: bool, violations, seconds: float, fired: dict) -> dict:
    sup = svc.supervisor
    re_s = sorted(sup.stats.reprotect_s)
    by_inv = Counter(v.invariant for v in violations)
    summary = svc.summary()
    return {
        "mix": args.mix, "waves_requested": args.waves, "waves_completed": summary["waves_completed"],
        "completed_in_time": done, "settled": settled, "seconds": round(seconds, 2),
        "signals": summary["signals"], "outcomes": summary["outcomes"],
        "positions_opened": summary["positions_opened"], "ts_coverage": summary["ts_coverage"],
        "faults_fired": fired,
        "restarts": sup.stats.restarts, "escalations": sup.stats.escalations,
        "abandoned_threads": len(sup.abandoned), "abandoned_still_alive": sup.abandoned_alive(),
        "reprotect_s": {"n": len(re_s), "p50": round(statistics.median(re_s), 3) if re_s else None,
                        "max": round(re_s[-1], 3) if re_s else None},
        "entry_mode": summary["entry_mode"], "protection_gap_s": summary["protection_gap_s"],
        "invariants": {str(i): by_inv.get(i, 0) for i in (1, 2, 3, 4, 6, 7, 8, 9, 10)},
        "violations": [str(v) for v in violations[:50]],
        "ok": done and settled and not violations,
    }


def _gap(g: dict | None) -> str:
    if g is None:
        return "not measured by this venue"
    return f"n={g['n']} p50={g['p50']}s p99={g['p99']}s max={g['max']}s"


def _render(r: dict) -> str:
    inv = "  ".join(f"{k}:{'ok' if v == 0 else f'{v} FAIL'}" for k, v in r["invariants"].items())
    lines = [
        f"chaos mix {r['mix']!r}: {r['waves_completed']}/{r['waves_requested']} waves in {r['seconds']}s"
        f"{'' if r['completed_in_time'] else ' (timed out)'}",
        f"signals {r['signals']}  outcomes {r['outcomes']}",
        f"positions opened {r['positions_opened']}  coverage {r['ts_coverage']:.0%}",
        f"faults fired {r['faults_fired']}",
        f"restarts {r['restarts']}  escalations {r['escalations']}  abandoned threads {r['abandoned_threads']}"
        f" (alive {r['abandoned_still_alive']})  re-protect after restart: n={r['reprotect_s']['n']}"
        f" p50={r['reprotect_s']['p50']}s max={r['reprotect_s']['max']}s",
        f"entry mode {r['entry_mode']}  entry fill → stop resting (venue): {_gap(r['protection_gap_s'])}",
        f"invariants  {inv}{'' if r['settled'] else '   (service did not settle)'}",
        *(f"  ✗ {v}" for v in r["violations"]),
        "RESULT: " + ("all invariants held" if r["ok"] else "VIOLATIONS or incomplete run"),
    ]
    return "\n".join(lines)
