"""What every benchmark scenario shares: a production-like config, process figures, and the
one JSON shape a scenario hands back to the runner (`benchmarks/__main__.py`).

A scenario is a module with a `main()` that runs in its own process (so memory, threads and
abandoned hung threads of one scenario never colour the figures of the next) and writes a
list of `Figure`s as JSON to the path given by `--out`.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import psutil
from loguru import logger

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from core.config import Config, load_config  # noqa: E402


@dataclass
class Figure:
    """One measured figure and, where the design sets one, its target.

    `better` says which way is good: "lower" (value ≤ target), "higher" (value ≥ target) or
    None for a figure without a target (reported for context only).
    """

    scenario: str
    name: str
    value: float | None
    unit: str = ""
    target: float | None = None
    better: str | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.target in (None, 0) or self.value is None:
            return None
        return self.value / self.target

    @property
    def met(self) -> bool | None:
        if self.target is None or self.better is None:
            return None
        if self.value is None or math.isnan(self.value):
            return False
        return self.value <= self.target if self.better == "lower" else self.value >= self.target

    def as_dict(self) -> dict:
        return asdict(self) | {"ratio": self.ratio, "met": self.met}


def bench_config(tmp: Path, *overrides: str, db_url: str | None = None) -> Config:
    """The embedded defaults (production timings: watchdog, backoff, deadlines) with only what a
    benchmark must change: its own database, no log file, and no paper price feed unless asked."""
    base = [
        f"database.url={db_url or 'sqlite:///' + str(tmp / 'bench.db')}",
        "log.status_interval_s=0", "paper.tick_interval_ms=0", f"run_dir={tmp}",
    ]
    cfg = load_config(None, base + list(overrides))
    cfg.log.file = None
    return cfg


def quiet() -> None:
    """Only errors on stderr: a benchmark's output is its figures."""
    logger.remove()
    logger.add(sys.stderr, level="ERROR", format="{time:HH:mm:ss.SSS} {level} {thread.name} {message}")


def wait_until(predicate: Callable[[], object], timeout_s: float, what: str, poll_s: float = 0.01):
    """Wait for `predicate`, polling every `poll_s` (the resolution of any time measured with
    it); raise at the deadline so a benchmark never hangs."""
    end = time.monotonic() + timeout_s
    while not (value := predicate()):
        if time.monotonic() > end:
            raise TimeoutError(f"timed out after {timeout_s:g}s waiting for {what}")
        time.sleep(poll_s)
    return value


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0–100) of a non-empty list."""
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1))
    return ordered[k]


class ProcessMeter:
    """This process's memory, threads and CPU, the way an operator's `top` would show them."""

    def __init__(self) -> None:
        self.proc = psutil.Process()

    def rss_mb(self) -> float:
        return self.proc.memory_info().rss / 2**20

    def threads(self) -> int:
        return self.proc.num_threads()

    def cpu_s(self) -> float:
        t = self.proc.cpu_times()
        return t.user + t.system

    def cpu_percent_over(self, seconds: float) -> float:
        """Share of one core used over a window: 100 % = one core busy the whole time."""
        c0, t0 = self.cpu_s(), time.perf_counter()
        time.sleep(seconds)
        return 100 * (self.cpu_s() - c0) / (time.perf_counter() - t0)


def scenario_args(description: str) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--out", type=Path, help="write the figures here as JSON (the runner reads it)")
    return ap


def emit(figures: list[Figure], out: Path | None) -> None:
    """Print the figures (for a scenario run on its own) and hand them to the runner."""
    for f in figures:
        target = "" if f.target is None else f"  (target {'≤' if f.better == 'lower' else '≥'} {f.target:g})"
        value = "n/a" if f.value is None else f"{f.value:.4g}"
        print(f"{f.scenario}: {f.name} = {value} {f.unit}{target}{'  ' + f.note if f.note else ''}")
    if out is not None:
        out.write_text(json.dumps([f.as_dict() for f in figures], indent=1))
