"""Restart (scenario 3): a venue call that never returns, until the replacement has
re-protected the position, against the configured deadline.

    .venv/bin/python -m benchmarks.restart --latency-ms 50 --hung 3 --bystanders 7

A wave opens `--hung + --bystanders` positions; the stop-loss order of `--hung` of them hangs
forever (injected: `FaultRule("hang", op="place_order", leg="stop")`), after the entry has
filled — a frozen call, with a position open and unprotected. The actor overruns
`deadlines.operation_s`, the watchdog sees it, the supervisor raises the epoch and starts a
replacement that reconciles with the venue and places the stop. Measured per hung position,
from the moment its call hung to the moment its replacement found the stop resting (polled
every 5 ms); the bystanders show the hang delays no one else.
"""
from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path

from benchmarks.common import Figure, bench_config, emit, quiet, scenario_args, wait_until
from benchmarks.fleet import synthetic
from core.faults import FaultRule
from service.app import Service
from tests.support.helpers import wave


def _protected_at(svc: Service, symbol: str, epoch: int) -> bool:
    h = next((h for h in list(svc.supervisor.children.values()) if h.symbol == symbol), None)
    return (h is not None and h.epoch >= epoch and h.phase in ("protected", "trailing")
            and h.unprotected_since is None)


def measure(latency_ms: float, operation_s: float, hung: int, bystanders: int) -> list[Figure]:
    scen = f"restart @{latency_ms:g} ms/call"
    n = hung + bystanders
    call_s = operation_s / 2
    with tempfile.TemporaryDirectory(prefix="wt-bench-restart-") as tmp:
        cfg = bench_config(Path(tmp), f"paper.latency_ms={latency_ms}", f"paper.extra_symbols={n}",
                           f"deadlines.operation_s={operation_s}", f"deadlines.venue_call_s={call_s}",
                           f"deadlines.db_call_s={call_s}", f"risk.max_positions_per_wave={n}",
                           f"risk.max_open_positions={n}",
                           "protection.entry_mode='after_fill'")  # the hang is after the fill
        svc = Service(cfg)
        svc.start(with_source=False)
        try:
            syms = synthetic(svc, n)
            stuck, others = syms[:hung], syms[hung:]
            hung_at: dict[str, float] = {}
            plan = svc.venue_faults
            real_hang = plan.hang

            def hang(limit_s: float | None = None) -> None:
                me = threading.current_thread()
                h = next((h for h in list(svc.supervisor.children.values()) if h.thread is me), None)
                hung_at[h.symbol if h else me.name] = time.perf_counter()
                real_hang(limit_s)

            plan.hang = hang
            for s in stuck:
                plan.add(FaultRule("hang", op="place_order", leg="stop", symbols=[s], times=1))
            t0 = time.perf_counter()
            svc.submit(wave("restart", *[(s, "long", 1 - i / 100) for i, s in enumerate(syms)]), "bench")
            done: dict[str, float] = {}

            def all_back() -> bool:
                for s in syms:
                    if s not in done and _protected_at(svc, s, 2 if s in stuck else 1):
                        done[s] = time.perf_counter()
                return len(done) == n

            wait_until(all_back, operation_s * 4 + 30, "re-protection", poll_s=0.005)
            took = [done[s] - hung_at[s] for s in stuck]
            by = [done[s] - t0 for s in others]
            stats = svc.supervisor.stats  # its own check polls every 50 ms: let it catch up
            wait_until(lambda: len(stats.reprotect_s) >= hung, 5, "supervisor's re-protection records")
            rep = list(stats.reprotect_s)
        finally:
            plan.release()  # wake the abandoned threads: they find themselves fenced and end
            svc.shutdown()
    target = operation_s + 1
    figs = [Figure(scen, f"hung call → re-protected, worst of {hung}", max(took), "s", target, "lower",
                   note=f"mean {sum(took) / len(took):.2f} s; deadlines.operation_s={operation_s:g}"),
            Figure(scen, "supervisor restart → re-protected, worst", max(rep) if rep else None, "s",
                   note=f"{len(rep)} restarts recorded")]
    if by:
        figs.append(Figure(scen, f"bystanders: wave → protected, worst of {bystanders}", max(by), "s",
                           note=f"the stop rests after 3 round trips = {3 * latency_ms / 1000:g} s"))
    return figs


def main() -> None:
    ap = scenario_args(__doc__.splitlines()[0])
    ap.add_argument("--latency-ms", type=float, default=50)
    ap.add_argument("--operation-s", type=float, default=3.0)
    ap.add_argument("--hung", type=int, default=3, choices=range(1, 101), metavar="1..100")
    ap.add_argument("--bystanders", type=int, default=7)
    args = ap.parse_args()
    quiet()
    emit(measure(args.latency_ms, args.operation_s, args.hung, args.bystanders), args.out)


if __name__ == "__main__":
    main()
