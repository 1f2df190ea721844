"""What a dead alert endpoint costs trading: stop-outs with alerts going to an endpoint that
accepts connections and never answers, against the same stop-outs with alerts off.

    .venv/bin/python -m benchmarks.alerts --positions 7 --rounds 5

Per round: a wave of N positions opens (paper venue, SQLite), every price is pushed through
its stop, and the clock runs until every position is closed with its P&L written; the wave
itself is timed too. Also the cost of one `Alerts.notify` call while the queue is full (the
call a position's thread makes). Prints one line per figure.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from loguru import logger  # noqa: E402
from sqlalchemy import select  # noqa: E402

from persistence.models import PositionRow  # noqa: E402
from service.alerts import Alerts  # noqa: E402
from tests.support.helpers import make_config, wave  # noqa: E402
from tests.support.webhook import Silent  # noqa: E402


def _round(svc, symbols: list[str], n: int) -> tuple[float, float]:
    before = len(svc.stats.waves)
    t0 = time.perf_counter()
    svc.submit(wave(f"w{n}", *[(s, "long", 0.9 - i / 100) for i, s in enumerate(symbols)]), "bench")
    while len(svc.stats.waves) == before:
        time.sleep(0.002)
    wave_s = time.perf_counter() - t0
    with svc.db.tx("db_read") as tx:
        rows = [r for r in tx.scalars(select(PositionRow).where(PositionRow.wave_id == f"w{n}"))]
    t1 = time.perf_counter()
    for r in rows:
        svc.gateway.engine.set_price(r.symbol, r.stop_price - r.stop_price / 100)
    ids = {r.id for r in rows}
    while True:
        with svc.db.tx("db_read") as tx:
            done = sum(1 for r in tx.scalars(select(PositionRow).where(PositionRow.id.in_(ids)))
                       if r.net_pnl is not None)
        if done == len(ids):
            break
        time.sleep(0.002)
    stop_s = time.perf_counter() - t1
    for r in rows:  # back to where it was, for the next round
        svc.gateway.engine.set_price(r.symbol, r.entry_price)
    return wave_s, stop_s


def run(alerts_url: str | None, positions: int, rounds: int) -> tuple[list[float], list[float], dict]:
    from service.app import Service

    if alerts_url:
        os.environ["WAVE_TRADER_ALERT_URLS"] = alerts_url
    else:
        os.environ.pop("WAVE_TRADER_ALERT_URLS", None)
    with tempfile.TemporaryDirectory() as d:
        svc = Service(make_config(Path(d), "alerts.queue_size=4"))
        svc.start(with_source=False)
        symbols = sorted(svc.markets)[:positions]
        waves, stops = [], []
        for n in range(rounds):
            w, s = _round(svc, symbols, n)
            waves.append(w)
            stops.append(s)
        stats = svc.alerts.stats()
        svc.shutdown()
    return waves, stops, stats


def notify_cost(url: str, calls: int = 10_000) -> tuple[float, float]:
    a = Alerts([url], queue_size=4)
    for _ in range(5):
        a.notify("stop_fired", "fill", "x")
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        a.notify("stop_fired", "t", "b")
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2] * 1e6, times[int(len(times) * 0.99)] * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--positions", type=int, default=7)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    logger.remove()
    logger.add(sys.stderr, level="ERROR")
    silent = Silent()
    try:
        p50, p99 = notify_cost(silent.apprise_url)
        print(f"notify() with a full queue, dead endpoint: p50 {p50:.1f} µs, p99 {p99:.1f} µs")
        for label, url in (("alerts off", None), ("dead endpoint", silent.apprise_url)):
            waves, stops, stats = run(url, args.positions, args.rounds)
            print(f"{label}: wave of {args.positions} median {statistics.median(waves) * 1000:.1f} ms; "
                  f"{args.positions} stop-outs to P&L written median {statistics.median(stops) * 1000:.1f} ms, "
                  f"max {max(stops) * 1000:.1f} ms; alerts {stats}")
    finally:
        silent.stop()


if __name__ == "__main__":
    main()
