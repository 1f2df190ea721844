"""A fleet of open positions: opened through ordinary waves, measured at rest, then restored
by a fresh Service over the same database and venue (scenarios 2, 4 and 5).

    .venv/bin/python -m benchmarks.fleet --positions 1000 [--db postgres] [--tick-rates 10000,50000]

One process holds N protected positions (paper venue, latency 0, waves of 200 on synthetic
symbols — the operator's own path, nothing bulk-inserted behind the service's back) and
reports: how long opening took, RSS, threads and idle CPU with the positions held, optionally
the tick-intake figures (`benchmarks/ticks.py`), and the cold start: the time until a fresh
Service has restored every position under a new epoch, reconciled it with the venue and found
it protected — with no order re-sent and no invariant violated.
"""
from __future__ import annotations

import tempfile
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Iterator

from benchmarks.common import Figure, ProcessMeter, bench_config, emit, quiet, scenario_args, wait_until
from core.config import Config
from exchange.paper.engine import PaperEngine
from exchange.faulty import unwrap
from exchange.paper.gateway import PaperGateway
from service.app import Service, collect_then_freeze
from service.invariants import check_invariants, settle
from tests.support.helpers import wave

WAVE = 200  # signals per wave while opening the fleet


def fleet_config(tmp: Path, n: int, *overrides: str, db_url: str | None = None) -> Config:
    """Room for n positions on n synthetic symbols, waves of up to WAVE signals."""
    return bench_config(tmp, f"paper.extra_symbols={n}", f"risk.max_positions_per_wave={WAVE}",
                        f"risk.max_open_positions={n + WAVE}", f"signals.max_wave_size={WAVE}",
                        *overrides, db_url=db_url)


def synthetic(svc: Service, n: int) -> list[str]:
    syms = [s for s in svc.markets if s.startswith("SYN")][:n]
    if len(syms) < n:
        raise ValueError(f"only {len(syms)} synthetic symbols; set paper.extra_symbols >= {n}")
    return syms


def run_wave(svc: Service, wave_id: str, symbols: list[str], timeout_s: float = 600) -> float:
    """Submit one wave and wait for its last outcome; every signal must end protected.
    Returns the coordinator's wave time (admitted → last outcome)."""
    msg = wave(wave_id, *[(s, "long" if i % 2 else "short", 1 - i / 10_000) for i, s in enumerate(symbols)])
    res = svc.submit(msg, "bench")
    if res.status not in ("opening", "complete", "queued"):
        raise RuntimeError(f"wave {wave_id} not taken: {res}")
    done = wait_until(lambda: next((w for w in svc.stats.waves if w.wave_id == wave_id), None),
                      timeout_s, f"wave {wave_id}")
    if done.outcomes != {"protected": len(symbols)}:
        raise RuntimeError(f"wave {wave_id} of {len(symbols)}: {done.outcomes}")
    return done.seconds


def open_fleet(svc: Service, n: int) -> float:
    """Open n positions through waves of WAVE signals; returns the wall time it took."""
    syms = synthetic(svc, n)
    t0 = time.perf_counter()
    for k in range(0, n, WAVE):
        run_wave(svc, f"fleet-{k // WAVE}", syms[k:k + WAVE])
    return time.perf_counter() - t0


def protected_children(svc: Service) -> int:
    """Positions whose actor has acted since it started and found its stop resting."""
    return sum(1 for k, h in list(svc.supervisor.children.items())
               if k != "coordinator" and h.phase == "trailing" and h.unprotected_since is None)


@contextmanager
def venue_carried_over(engine: PaperEngine) -> Iterator[None]:
    """Let the next Service see the venue exactly as the previous run left it.

    The paper venue lives in memory today, so a cold start hands the previous run's engine
    (positions, resting stops) to the new gateway — what a real venue does by itself. Once
    the paper venue persists its own state this becomes a plain `Service(cfg)`.
    """
    import service.compose as compose  # where the service builds its gateway

    build = compose.build_gateway

    def build_with_engine(cfg, faults):
        gw = build(cfg, faults)
        if isinstance(venue := unwrap(gw), PaperGateway):
            venue.engine = engine
        return gw

    compose.build_gateway = build_with_engine
    try:
        yield
    finally:
        compose.build_gateway = build


def cold_restart(old: Service, cfg: Config, n: int, timeout_s: float = 600) -> tuple[Service, dict]:
    """Shut `old` down and start a fresh Service over the same database and venue; time until
    all n positions are reconciled and protected again."""
    engine = old.gateway.engine
    old.shutdown()
    orders_before = len(engine.account.orders)
    t0 = time.perf_counter()
    with venue_carried_over(engine):
        svc = Service(cfg)
    svc.start(with_source=False)
    started = time.perf_counter() - t0
    wait_until(lambda: protected_children(svc) >= n, timeout_s, f"{n} positions reconciled", poll_s=0.02)
    restored = time.perf_counter() - t0
    return svc, {"started_s": started, "restored_s": restored,
                 "orders_sent": len(engine.account.orders) - orders_before}


def measure(n: int, db: str, tick_rates: list[int], tick_s: float, idle_s: float, ticked: int) -> list[Figure]:
    scen = f"fleet {n} ({db})"
    figs: list[Figure] = []
    meter = ProcessMeter()
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="wt-bench-fleet-")))
        url = None
        if db == "postgres":
            from benchmarks.pg import throwaway_cluster

            url = stack.enter_context(throwaway_cluster())
        cfg = fleet_config(tmp, n, db_url=url)
        svc = Service(cfg)
        svc.start(with_source=False)
        stack.callback(lambda: svc.shutdown())
        opened = open_fleet(svc, n)
        figs.append(Figure(scen, "open through waves of 200 (latency 0)", opened, "s",
                           note=f"{n / opened:.0f} positions/s"))
        if not settle(svc, timeout_s=60):
            raise RuntimeError("the fleet did not settle")
        t = time.perf_counter()
        collect_then_freeze()  # what the service does when a wave settles
        figs.append(Figure(scen, "garbage collection when a wave settles (process paused)",
                           1000 * (time.perf_counter() - t), "ms"))
        figs += [Figure(scen, "RSS with positions held", meter.rss_mb(), "MB",
                        *((600, "lower") if n >= 5000 else (None, None))),
                 Figure(scen, "threads", meter.threads(), ""),
                 Figure(scen, f"idle CPU ({idle_s:g} s, no ticks, no waves)", meter.cpu_percent_over(idle_s),
                        "% of a core", *((5, "lower") if n >= 5000 else (None, None)))]
        if tick_rates:
            from benchmarks.ticks import tick_figures

            figs += tick_figures(svc, synthetic(svc, n)[:ticked], tick_rates, tick_s, f"ticks ({n} open)")
        svc2, r = cold_restart(svc, cfg, n)
        svc = svc2  # the ExitStack's shutdown now stops the restored service
        cold_target = (5, "lower") if n == 1000 else (None, None)
        figs += [Figure(scen, "cold start: Service() + start() returned", r["started_s"], "s"),
                 Figure(scen, "cold start: every position reconciled and protected", r["restored_s"], "s",
                        *cold_target, note=f"{n / r['restored_s']:.0f} positions/s"),
                 Figure(scen, "orders sent during recovery (all stops were resting)", r["orders_sent"], "",
                        0, "lower")]
        if not settle(svc2, timeout_s=120):
            raise RuntimeError("the restored fleet did not settle")
        violations = check_invariants(svc2)
        figs += [Figure(scen, "invariant violations after recovery", len(violations), "", 0, "lower",
                        note="; ".join(map(str, violations[:3]))),
                 Figure(scen, "RSS after cold start", meter.rss_mb(), "MB"),
                 Figure(scen, "threads after cold start", meter.threads(), "")]
    return figs


def main() -> None:
    ap = scenario_args(__doc__.splitlines()[0])
    ap.add_argument("--positions", type=int, default=1000)
    ap.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    ap.add_argument("--tick-rates", default="", help="comma-separated ticks/s, e.g. 10000,50000,100000")
    ap.add_argument("--tick-seconds", type=float, default=4.0)
    ap.add_argument("--ticked-symbols", type=int, default=300)
    ap.add_argument("--idle-seconds", type=float, default=5.0)
    args = ap.parse_args()
    quiet()
    rates = [int(x) for x in args.tick_rates.split(",") if x]
    emit(measure(args.positions, args.db, rates, args.tick_seconds, args.idle_seconds,
                 min(args.ticked_symbols, args.positions)), args.out)


if __name__ == "__main__":
    main()
