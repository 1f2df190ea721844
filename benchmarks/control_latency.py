"""How fast the control plane answers with many open positions (a figure, not a test).

    .venv/bin/python benchmarks/control_latency.py [N_POSITIONS]

Starts a real service (paper venue, SQLite in a temp dir) with its control plane, opens
N positions in one wave, then times each command over the real socket, a Prometheus scrape,
and a whole `bin/trader positions --json` process.
"""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from loguru import logger  # noqa: E402

from control.client import ControlClient  # noqa: E402
from tests.support.control_support import start_controlled, stop_controlled  # noqa: E402
from tests.support.helpers import make_config, wait_for  # noqa: E402


def timed(fn, n: int = 20) -> str:
    xs = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        xs.append((time.perf_counter() - t0) * 1000)
    return f"p50 {statistics.median(xs):7.1f} ms   max {max(xs):7.1f} ms   (n={n})"


def main(n: int) -> None:
    logger.remove()
    logger.add(sys.stderr, level="ERROR")
    tmp = Path(tempfile.mkdtemp(prefix="wt-bench-"))
    cfg = make_config(tmp, "control.metrics_port=0", f"paper.extra_symbols={n}", f"risk.max_open_positions={n + 10}",
                      "risk.max_positions_per_wave=50", "log.status_interval_s=0")
    svc, plane = start_controlled(cfg)
    try:
        syms = [s for s in svc.markets if s.startswith("SYN")][:n]
        t0 = time.perf_counter()
        for k in range(0, n, 50):  # waves of 50, the size the design targets
            wave = {"wave_id": f"bench-{k}", "ts": time.time(),
                    "signals": [{"id": f"b-{k + i}", "symbol": s, "side": "long", "score": 1 - i / 51}
                                for i, s in enumerate(syms[k:k + 50])]}
            svc.submit(json.dumps(wave), "bench")
            wait_for(lambda: len(svc.stats.waves) > k // 50, timeout=120, what=f"bench wave {k}")
        protected = sum(w.outcomes.get("protected", 0) for w in svc.stats.waves)
        print(f"{n} signals in waves of 50: {protected} positions protected in {time.perf_counter() - t0:.1f}s")
        c = ControlClient(plane.lock.path, timeout_s=60)
        for cmd in ("health", "status", "positions", "supervisor", "waves"):
            print(f"{cmd:<12} {timed(lambda: c.call(cmd))}")
        print(f"{'position':<12} {timed(lambda: c.call('position', target=syms[0]))}")
        url = plane.metrics_url() + "/metrics"
        print(f"{'/metrics':<12} {timed(lambda: urllib.request.urlopen(url, timeout=30).read())}")
        cli = [str(ROOT / "bin" / "trader"), "positions", "--json", "--socket", str(plane.lock.path)]
        print(f"{'one-shot':<12} {timed(lambda: subprocess.run(cli, check=True, capture_output=True), n=5)}"
              "  (whole `bin/trader positions --json` process)")
    finally:
        stop_controlled(svc, plane)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
