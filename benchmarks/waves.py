"""Wave concurrency (scenario 1): wave time ÷ one position's critical path.

    .venv/bin/python -m benchmarks.waves --latency-ms 300 --sizes 1,7,50,200 --serial 7,50 --repeat 3

Every venue call of the paper venue takes `--latency-ms` (slept in the calling actor's own
thread, as a network round trip would be). A position's critical path is price → entry →
stop → trailing, four round trips plus its database commits; it is measured as a wave of one
in the same run. A wave of N is isolated if its time stays near that path however large N is.

`--serial` repeats the given sizes with `risk.max_concurrent_opens = 1`: one position opens
at a time, which is what one global lock around order placement does (5 × 2 s = 10 s and a timeout). Those waves take
N critical paths, so only small sizes are worth the wall time.
"""
from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

from benchmarks.common import Figure, bench_config, emit, quiet, scenario_args
from benchmarks.fleet import WAVE, run_wave, synthetic
from service.app import Service

TARGET = 1.2  # the target: wave time ≤ 1.2 × one position's critical path


def wave_service(tmp: Path, latency_ms: float, n_symbols: int, *extra: str) -> Service:
    cfg = bench_config(tmp, f"paper.latency_ms={latency_ms}", f"paper.extra_symbols={n_symbols}",
                       f"risk.max_positions_per_wave={WAVE}", f"risk.max_open_positions={n_symbols}",
                       f"signals.max_wave_size={WAVE}", "deadlines.wave_s=600", *extra)
    svc = Service(cfg)
    svc.start(with_source=False)
    return svc


def _span(xs: list[float]) -> str:
    return f"{xs[0]:.2f} s" if len(xs) == 1 else f"median of {len(xs)}: {statistics.median(xs):.2f} s, range {min(xs):.2f}–{max(xs):.2f} s"


def measure(latency_ms: float, sizes: list[int], serial: list[int], repeat: int) -> list[Figure]:
    """Each size `repeat` times, each repetition with its own wave of one; medians compared."""
    scen = f"waves @{latency_ms:g} ms/call"
    paths: list[float] = []
    times: dict[int, list[float]] = {n: [] for n in sizes}
    with tempfile.TemporaryDirectory(prefix="wt-bench-waves-") as tmp:
        total = repeat * (1 + sum(sizes))
        svc = wave_service(Path(tmp), latency_ms, total)
        try:
            syms = iter(synthetic(svc, total))
            for r in range(repeat):
                paths.append(run_wave(svc, f"path-{r}", [next(syms)]))
                for n in sizes:
                    times[n].append(run_wave(svc, f"w{n}-{r}", [next(syms) for _ in range(n)]))
        finally:
            svc.shutdown()
    path = statistics.median(paths)
    figs = [Figure(scen, "one position's critical path (wave of 1)", path, "s",
                   note=f"{_span(paths)}; 4 round trips = {4 * latency_ms / 1000:g} s + commits")]
    for n in sizes:
        figs.append(Figure(scen, f"wave of {n} ÷ critical path", statistics.median(times[n]) / path, "×",
                           TARGET, "lower", note=f"wave {_span(times[n])}"))
    if serial:
        with tempfile.TemporaryDirectory(prefix="wt-bench-serial-") as tmp:
            svc = wave_service(Path(tmp), latency_ms, sum(serial), "risk.max_concurrent_opens=1")
            try:
                syms = iter(synthetic(svc, sum(serial)))
                for n in serial:
                    secs = run_wave(svc, f"s{n}", [next(syms) for _ in range(n)])
                    gain = f"; {secs / statistics.median(times[n]):.1f}× the concurrent wave" if times.get(n) else ""
                    figs.append(Figure(scen, f"serialized (max_concurrent_opens=1) wave of {n} ÷ critical path",
                                       secs / path, "×", note=f"wave {secs:.2f} s{gain}"))
            finally:
                svc.shutdown()
    return figs


def main() -> None:
    ap = scenario_args(__doc__.splitlines()[0])
    ap.add_argument("--latency-ms", type=float, default=300)
    ap.add_argument("--sizes", default="1,7,50,200")
    ap.add_argument("--serial", default="7,50", help="sizes to repeat one-at-a-time ('' for none)")
    ap.add_argument("--repeat", type=int, default=1, help="repetitions of each concurrent wave (medians)")
    args = ap.parse_args()
    quiet()
    ints = lambda s: [int(x) for x in s.split(",") if x]  # noqa: E731
    emit(measure(args.latency_ms, ints(args.sizes), ints(args.serial), args.repeat), args.out)


if __name__ == "__main__":
    main()
