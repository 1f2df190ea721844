"""Protection window (scenario 7): entry fill → stop resting, and signal → fully protected.

    .venv/bin/python -m benchmarks.protection --latency-ms 300,2000 --size 7

For each entry protocol (`protection.entry_mode`) and latency, a wave of one and a wave of
`--size` on the paper venue with its price feed on (so no entry waits on a price read). The
window is the venue's own record (the engine notes each position's first entry fill and the
first stop resting on its closing side), never our books. "Round trips" is the wave of one's
time (signal admitted → outcome `protected`: stop-loss resting and trailing stop established)
divided by the latency per call: the sequential venue calls on a position's critical path.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from benchmarks.common import Figure, bench_config, emit, quiet, scenario_args
from benchmarks.fleet import run_wave, synthetic
from service.app import Service

MODES = ("stop_first", "attached", "after_fill")


def measure(latency_ms: float, mode: str, size: int) -> list[Figure]:
    scen = f"protection @{latency_ms:g} ms/call, {mode}"
    with tempfile.TemporaryDirectory(prefix="wt-bench-protect-") as tmp:
        cfg = bench_config(Path(tmp), f"paper.latency_ms={latency_ms}", f"paper.extra_symbols={size + 1}",
                           "paper.tick_interval_ms=250", f"protection.entry_mode='{mode}'",
                           f"risk.max_positions_per_wave={size}", f"risk.max_open_positions={size + 1}",
                           "deadlines.wave_s=600")
        svc = Service(cfg)
        svc.start(with_source=False)
        try:
            syms = synthetic(svc, size + 1)
            path = run_wave(svc, "path", syms[:1])
            run_wave(svc, f"w{size}", syms[1:])
            gaps = svc.gateway.engine.protection_gaps()
        finally:
            svc.shutdown()
    rt = path / (latency_ms / 1000) if latency_ms else None
    return [
        Figure(scen, "entry fill → stop resting (max, at the venue)", max(gaps), "s",
               note=f"{len(gaps)} positions; p50 {sorted(gaps)[len(gaps) // 2]:.3f} s"),
        Figure(scen, "signal → fully protected (round trips)", rt, "RT",
               note=f"wave of one {path:.2f} s (stop resting and trailing stop established)"),
    ]


def main() -> None:
    ap = scenario_args(__doc__.splitlines()[0])
    ap.add_argument("--latency-ms", default="300,2000", help="comma-separated latencies per call")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--size", type=int, default=7)
    args = ap.parse_args()
    quiet()
    figs = [f for ms in args.latency_ms.split(",") if ms for mode in args.modes.split(",") if mode
            for f in measure(float(ms), mode, args.size)]
    emit(figs, args.out)


if __name__ == "__main__":
    main()
