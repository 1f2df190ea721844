"""A wave on the local Bybit-shaped venue through the real ccxt adapter: its time, the peak of
order creations per second the venue saw, and how many it refused with 10006 (Bybit allows 10
per second per account), with the service's per-second budget and without it.

    .venv/bin/python -m benchmarks.bybit_wave --latency-ms 50 --size 20
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from loguru import logger  # noqa: E402

from exchange.ccxt.venues import BybitLinear  # noqa: E402
from service.app import Service  # noqa: E402
from tests.support.bybit_helpers import KEY, SECRET, bybit_overrides, fake_bybit  # noqa: E402
from tests.support.helpers import make_config, wait_for, wave  # noqa: E402


def one(size: int, latency_ms: float, paced: bool) -> dict:
    venue = fake_bybit(latency_ms=latency_ms)
    stamps: list[float] = []
    original = venue._routes["POST /v5/order/create"]
    venue._routes["POST /v5/order/create"] = lambda p: (stamps.append(time.monotonic()), original(p))[1]
    saved = BybitLinear.pacer
    if not paced:
        BybitLinear.pacer = lambda self, kind: None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            svc = Service(make_config(Path(tmp), *bybit_overrides(venue, f"risk.max_positions_per_wave={size}",
                                                                  "deadlines.venue_call_s=5")))
            svc.start(with_source=False)
            try:
                symbols = [s for s in svc.markets if s.endswith(":USDT")][:size]
                svc.submit(wave("bench", *[(s, "long" if i % 2 else "short", 1 - i / 100)
                                           for i, s in enumerate(symbols)]), "bench")
                w = wait_for(lambda: next(iter(svc.stats.waves), None), 120, "the wave")
            finally:
                svc.shutdown()
    finally:
        BybitLinear.pacer = saved
        venue.stop()
    per_s = Counter(int((t - stamps[0]) // 1) for t in stamps) if stamps else Counter()
    refused = sum(1 for path, code in venue.answers if path == "/v5/order/create" and code == 10006)
    return {"wave_s": w.seconds, "outcomes": dict(w.outcomes), "creates": len(stamps), "peak_creates_per_s": max(per_s.values(), default=0),
            "refused_10006": refused}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--latency-ms", type=float, default=50)
    ap.add_argument("--size", type=int, default=20)
    args = ap.parse_args()
    logger.remove()
    logger.add(sys.stderr, level="ERROR")
    os.environ.update(BYBIT_API_KEY=KEY, BYBIT_API_SECRET=SECRET)
    for paced in (True, False):
        r = one(args.size, args.latency_ms, paced)
        print(f"bybit wave of {args.size} at {args.latency_ms:g} ms, {'with' if paced else 'without'} the "
              f"10/s budget: {r['wave_s']:.2f} s, outcomes {r['outcomes']}, {r['creates']} creates, peak {r['peak_creates_per_s']}/s "
              f"(whole seconds from the first), {r['refused_10006']} refused with 10006", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
