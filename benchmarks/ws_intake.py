"""Signal intake over the websocket, measured end to end (figures, never a pass/fail test).

    .venv/bin/python -m benchmarks.ws_intake [--junk 2000] [--waves 20]

A real `websockets` server on loopback pushes `--junk` hostile messages, then `--waves`
one-signal waves, to a Service on the paper venue and a temporary SQLite file. Reports the
rate at which rejected messages are recorded, and per wave the latency from the server's
send to the wave being persisted and to its final outcome.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from loguru import logger  # noqa: E402

from service.app import Service  # noqa: E402
from tests.support.helpers import make_config, wait_for  # noqa: E402
from tests.support.signal_server import SignalServer  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--junk", type=int, default=2000)
    ap.add_argument("--waves", type=int, default=20)
    args = ap.parse_args()
    logger.remove()
    logger.add(sys.stderr, level="CRITICAL")
    server = SignalServer()
    tmp = Path(tempfile.mkdtemp(prefix="ws-bench-"))
    svc = Service(make_config(tmp, f"signals.source={server.url}", "risk.max_open_positions=50"))
    svc.start()
    try:
        wait_for(lambda: svc.signals_health()["state"] == "connected", 10, "connection")
        junk = ['{"wave_id": 1, "signals": "x"}', "[" * 5000 + "]" * 5000, "not json", '{"signals": []}']
        t0 = time.perf_counter()
        for i in range(args.junk):
            server.send(junk[i % len(junk)])
        wait_for(lambda: svc.signals_health()["rejected"] >= args.junk, 300, "junk recorded")
        junk_s = time.perf_counter() - t0
        persisted, final = [], []
        symbols = sorted(svc.markets)
        for i in range(args.waves):
            wid = f"bench-{i}"
            sent = time.perf_counter()
            server.send(json.dumps({"wave_id": wid, "ts": time.time(), "signals": [
                {"id": wid, "symbol": symbols[i % len(symbols)], "side": "long", "score": 1}]}))
            wait_for(lambda: svc.signals_health()["accepted"] > i, 30, "persisted")
            persisted.append(time.perf_counter() - sent)
            wait_for(lambda: any(w.wave_id == wid for w in svc.stats.waves), 30, "final")
            final.append(time.perf_counter() - sent)
    finally:
        svc.shutdown()
        server.close()
    ms = lambda xs: f"median {statistics.median(xs) * 1000:.1f} ms, max {max(xs) * 1000:.1f} ms"  # noqa: E731
    print(f"hostile messages: {args.junk} recorded as rejected in {junk_s:.2f}s ({args.junk / junk_s:.0f}/s)")
    print(f"wave send -> persisted: {ms(persisted)}  (n={args.waves})")
    print(f"wave send -> final (entry, stop, trailing on paper): {ms(final)}")


if __name__ == "__main__":
    main()
