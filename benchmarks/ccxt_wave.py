"""Wave time vs one position's critical path, through the real ccxt adapter, with latency
injected on every HTTP call of the local Binance-shaped venue.

    .venv/bin/python -m benchmarks.ccxt_wave --latency-ms 300 --size 20

A wave is isolated if its time stays near one position's critical path (price → entry →
stop → trailing, each one round trip) however many positions it opens.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from loguru import logger  # noqa: E402

from exchange.paper.universe import paper_markets  # noqa: E402
from service.app import Service  # noqa: E402
from tests.support.ccxt_helpers import KEY, SECRET, binance_overrides, fake_venue  # noqa: E402
from tests.support.helpers import make_config, wait_for, wave  # noqa: E402


def run_wave(svc: Service, wave_id: str, symbols: list[str]) -> float:
    svc.submit(wave(wave_id, *[(s, "long" if i % 2 else "short", 1 - i / 100) for i, s in enumerate(symbols)]), "bench")
    w = wait_for(lambda: next((w for w in svc.stats.waves if w.wave_id == wave_id), None), 120, wave_id)
    assert w.outcomes == {"protected": len(symbols)}, w.outcomes
    return w.seconds


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--latency-ms", type=float, default=300)
    ap.add_argument("--size", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="extra config override")
    args = ap.parse_args()
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    os.environ.update(BINANCE_API_KEY=KEY, BINANCE_API_SECRET=SECRET)
    symbols = list(paper_markets())
    need = (args.size + 1) * args.repeat
    if need > len(symbols):
        raise SystemExit(f"the fake venue lists {len(symbols)} symbols; size+1 times repeat must fit")
    singles, waves, calls = [], [], []
    for r in range(args.repeat):
        venue = fake_venue(latency_ms=args.latency_ms)
        with tempfile.TemporaryDirectory() as tmp:
            cfg = make_config(Path(tmp), *binance_overrides(venue.url, f"risk.max_positions_per_wave={args.size}",
                                                            f"risk.max_open_positions={args.size + 1}",
                                                            "deadlines.venue_call_s=5", *args.overrides))
            svc = Service(cfg)
            svc.start(with_source=False)
            try:
                mine = symbols[r * (args.size + 1):(r + 1) * (args.size + 1)]
                n0 = len(venue.requests)
                singles.append(run_wave(svc, f"one-{r}", mine[:1]))
                calls.append(len(venue.requests) - n0)
                waves.append(run_wave(svc, f"many-{r}", mine[1:]))
            finally:
                svc.shutdown()
                venue.stop()
    print(f"latency per HTTP call: {args.latency_ms:.0f} ms")
    print(f"HTTP calls of one position's wave (incl. feed polls meanwhile): {calls}")
    print(f"one position's critical path (wave of 1): {', '.join(f'{s:.2f}' for s in singles)} s")
    print(f"wave of {args.size}: {', '.join(f'{s:.2f}' for s in waves)} s")
    ratio = [w / s for w, s in zip(waves, singles)]
    print(f"ratio wave/critical path: {', '.join(f'{x:.2f}' for x in ratio)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
