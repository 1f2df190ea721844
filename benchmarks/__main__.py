"""The benchmark suite: every scenario in one run, one table, one JSON record.

    bin/bench                     # the full suite (about 6 minutes on 2 shared cores)
    bin/bench --quick             # every scenario at toy sizes (what the test suite runs)
    bin/bench --only waves,restart
    bin/bench --profile           # also py-spy each scenario (needs the `bench` extra)

Each scenario runs in its own process (see `benchmarks/common.py`), one after the other so
they never compete for the two cores. The table is printed at the end; the JSON record (every
figure with target, ratio and whether it was met, the machine, the load, each scenario's
command line and wall time) goes to benchmarks/results/bench-<time>.json. Missed targets are
figures, not failures: the exit status is non-zero only if a scenario could not run.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from benchmarks.common import ROOT, Figure
from benchmarks.profile import record_command, summarise
from benchmarks.report import machine, misses, table, write_json


@dataclass(frozen=True)
class Run:
    name: str  # file-name friendly, unique in a plan
    module: str
    args: tuple[str, ...]
    timeout_s: float


FULL = (
    Run("waves-300ms", "waves", ("--latency-ms", "300", "--sizes", "1,7,50,200", "--serial", "7,50",
                                 "--repeat", "3"), 360),
    Run("waves-2s", "waves", ("--latency-ms", "2000", "--sizes", "1,7,50,200", "--serial", "7"), 300),
    Run("fleet-1000-sqlite", "fleet", ("--positions", "1000", "--tick-rates", "10000,50000,100000"), 420),
    Run("restart-50ms", "restart", ("--latency-ms", "50",), 90),
    Run("restart-300ms", "restart", ("--latency-ms", "300",), 90),
    Run("fleet-5000-sqlite", "fleet", ("--positions", "5000",), 900),
    Run("fleet-1000-postgres", "fleet", ("--positions", "1000", "--db", "postgres"), 420),
    Run("backtest-50x1440", "backtest", ("--symbols", "50", "--minutes", "1440"), 300),
    Run("protection", "protection", ("--latency-ms", "300,2000", "--size", "7"), 300),
)

QUICK = (
    Run("waves-50ms", "waves", ("--latency-ms", "50", "--sizes", "1,5", "--serial", "3"), 120),
    Run("fleet-40-sqlite", "fleet", ("--positions", "40", "--tick-rates", "2000", "--tick-seconds", "0.5",
                                     "--ticked-symbols", "20", "--idle-seconds", "0.5"), 120),
    Run("restart-0ms", "restart", ("--latency-ms", "0", "--operation-s", "1", "--hung", "1",
                                   "--bystanders", "2"), 60),
    Run("fleet-20-postgres", "fleet", ("--positions", "20", "--db", "postgres", "--idle-seconds", "0.5"), 120),
    Run("backtest-3x120", "backtest", ("--symbols", "3", "--minutes", "120"), 60),
    Run("protection-50ms", "protection", ("--latency-ms", "50", "--size", "2"), 60),
)


def run_one(run: Run, out_dir: Path, profile: bool) -> tuple[list[Figure], dict]:
    out = out_dir / f"{run.name}.json"
    cmd = [sys.executable, "-m", f"benchmarks.{run.module}", *run.args, "--out", str(out)]
    if profile:
        cmd = record_command(out_dir / f"{run.name}.pyspy") + cmd
    log = out_dir / f"{run.name}.log"
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    print(f"[{datetime.now():%H:%M:%S}] {run.name}: python -m benchmarks.{run.module} {shlex.join(run.args)}",
          file=sys.stderr, flush=True)
    try:
        with log.open("w") as fh:
            proc = subprocess.run(cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, timeout=run.timeout_s,
                                  stdin=subprocess.DEVNULL)
        ok, why = proc.returncode == 0 and out.exists(), f"exit {proc.returncode}"
    except subprocess.TimeoutExpired:
        ok, why = False, f"did not finish within {run.timeout_s:g}s"
    seconds = time.perf_counter() - t0
    info = {"name": run.name, "command": f"python -m benchmarks.{run.module} {shlex.join(run.args)}",
            "seconds": round(seconds, 1), "ok": ok, "load_before": load, "load_after": os.getloadavg()[0]}
    if profile and (out_dir / f"{run.name}.pyspy").exists():
        (out_dir / f"{run.name}.profile.txt").write_text(summarise(out_dir / f"{run.name}.pyspy"))
    if not ok:
        tail = log.read_text().strip().splitlines()[-1:] if log.exists() else []
        info["error"] = f"{why}: {tail[0] if tail else 'no output'} (log: {log})"
        return [Figure(run.name, "scenario failed", None, note=info["error"])], info
    figures = [Figure(**{k: v for k, v in d.items() if k not in ("ratio", "met")})
               for d in json.loads(out.read_text())]
    return figures, info


def main() -> int:
    ap = argparse.ArgumentParser(description="wave-trader benchmark suite")
    ap.add_argument("--quick", action="store_true", help="toy sizes: checks every scenario runs")
    ap.add_argument("--only", default="", help="comma-separated scenario names or modules")
    ap.add_argument("--profile", action="store_true", help="record each scenario with py-spy")
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    plan = QUICK if args.quick else FULL
    if args.only:
        wanted = set(args.only.split(","))
        plan = tuple(r for r in plan if r.name in wanted or r.module in wanted)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out_dir = args.results / f"bench-{stamp}"
    out_dir.mkdir(parents=True, exist_ok=True)
    load0 = os.getloadavg()  # other people's work: later readings count our own threads too
    t0 = time.perf_counter()
    figures: list[Figure] = []
    runs: list[dict] = []
    for run in plan:
        figs, info = run_one(run, out_dir, args.profile)
        figures += figs
        runs.append(info)
    total = time.perf_counter() - t0
    host = machine()
    print(f"\nwave-trader benchmarks, {stamp}: {host['cores']} cores ({host['cpu']}), "
          f"{host['memory_gb']} GB, Python {host['python']}; suite took {total:.0f} s; "
          f"load average before it {load0[0]:.1f} (1 min), {load0[1]:.1f} (5 min)\n")
    print(table(figures))
    missed = misses(figures)
    print(f"\n{len(figures)} figures, {sum(f.met is not None for f in figures)} with a target, "
          f"{len(missed)} missed{': ' + '; '.join(f'{f.scenario} / {f.name}' for f in missed) if missed else ''}")
    record = {"stamp": stamp, "quick": args.quick, "seconds": round(total, 1), "machine": host,
              "load_before": load0,
              "command": shlex.join(["bin/bench", *sys.argv[1:]]), "runs": runs,
              "figures": [f.as_dict() for f in figures]}
    path = args.results / f"bench-{stamp}.json"
    write_json(path, record)
    print(f"JSON: {path}; logs: {out_dir}/")
    return 0 if all(r["ok"] for r in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
