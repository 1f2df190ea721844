"""Tick intake (scenario 2): a feed thread pushes prices into MarketData at a fixed offered
rate, the way the paper or ccxt feed thread does, and the positions act on them.

Run through `benchmarks.fleet --tick-rates …` (the fleet supplies the open positions).
Per offered rate it reports the intake rate achieved, decisions per second, the coalescing
ratio (messages sent to actors ÷ ticks in) and the tick-to-decision latency (from the tick
reaching MarketData to the actor having run its state machine on that price), and checks
that every ticked position ends on the latest price of its symbol.

Prices wander within ±0.5 % of the start price: a steady state below the trailing activation
(1 %) and above the stop (2 %), so decisions change nothing material and write nothing — the
common case between waves. A tick that activates or moves a trailing stop costs a database
commit; that path is measured by the wave scenarios instead.
"""
from __future__ import annotations

import random
import threading
import time
from decimal import Decimal

from actors.messages import GetState
from benchmarks.common import Figure, ProcessMeter, percentile
from service.app import Service

PLAN_LEN = 200_000  # precomputed (symbol, price) pairs, cycled: the feed loop allocates nothing


def price_plan(svc: Service, symbols: list[str], seed: int = 8) -> list[tuple[str, Decimal]]:
    rng = random.Random(seed)
    levels = {}
    for sym in symbols:
        spec, mid = svc.markets[sym], svc.gateway.engine.price(sym)
        levels[sym] = [spec.nearest_price(mid * (1 + Decimal(b) / 10_000)) for b in range(-50, 51)]
    return [(sym, rng.choice(levels[sym])) for sym in rng.choices(symbols, k=PLAN_LEN)]


def feed(on_tick, plan: list[tuple[str, Decimal]], rate: int, seconds: float) -> tuple[int, float]:
    """Offer `rate` ticks/s for `seconds`: each pass sends what is due by the clock, so a feed
    that falls behind shows up as a lower achieved rate, never as a silent burst."""
    n, sent = len(plan), 0
    t0 = time.perf_counter()
    end = t0 + seconds
    while (now := time.perf_counter()) < end:
        due = int((now - t0) * rate)
        if due <= sent:
            time.sleep(0.0002)  # pacing a rate generator: nothing to wait on but the clock
            continue
        for i in range(sent, min(due, sent + 5000)):
            sym, price = plan[i % n]
            on_tick(sym, price)
        sent = min(due, sent + 5000)
    return sent, time.perf_counter() - t0


def run_rate(svc: Service, symbols: list[str], plan, rate: int, seconds: float) -> dict:
    md = svc.market_data
    latencies: list[float] = []
    svc.parts.decisions.sink = latencies.append  # every actor reports each decision's latency here
    ticks0, msgs0 = md.ticks_in, md.messages_out
    meter = ProcessMeter()
    cpu0 = meter.cpu_s()
    result: dict = {}
    th = threading.Thread(target=lambda: result.update(zip(("sent", "elapsed"), feed(md.on_tick, plan, rate, seconds))),
                          name="bench-feed")
    th.start()
    th.join(seconds + 60)
    if th.is_alive():
        raise RuntimeError("the feed thread did not finish")
    cpu = meter.cpu_s() - cpu0
    # Barrier: an ask is answered after every message queued before it, so each actor has
    # acted on its last pending tick when its state comes back.
    wanted = set(symbols)
    refs = {h.symbol: h.ref for h in list(svc.supervisor.children.values()) if h.symbol in wanted}
    futures = {sym: ref.ask(GetState(), block=False) for sym, ref in refs.items()}
    stale = [sym for sym, f in futures.items() if f.get(timeout=30).last_price != md.last_price.get(sym)]
    ticks, msgs = md.ticks_in - ticks0, md.messages_out - msgs0
    lat = list(latencies)
    return {
        "offered": rate, "achieved": result["sent"] / result["elapsed"], "ticks": ticks,
        "decisions_per_s": len(lat) / result["elapsed"], "coalescing": msgs / ticks if ticks else 0.0,
        "p50_ms": percentile(lat, 50) * 1000 if lat else float("nan"),
        "p99_ms": percentile(lat, 99) * 1000 if lat else float("nan"),
        "max_ms": max(lat) * 1000 if lat else float("nan"),
        "stale": len(stale), "positions": len(refs), "cpu_pct": 100 * cpu / result["elapsed"],
    }


def tick_figures(svc: Service, symbols: list[str], rates: list[int], seconds: float, scen: str) -> list[Figure]:
    plan = price_plan(svc, symbols)
    figs: list[Figure] = []
    original = svc.parts.decisions.sink
    try:
        for rate in rates:
            r = run_rate(svc, symbols, plan, rate, seconds)
            k = f"{rate // 1000}k/s"
            figs += [
                Figure(scen, f"{k} offered: ticks taken in per second", r["achieved"], "ticks/s", rate * 0.99,
                       "higher", note=f"target: the offered rate less 1 % (pacing granularity); {r['ticks']} "
                       f"ticks over {len(symbols)} symbols; process CPU {r['cpu_pct']:.0f} % of a core"),
                Figure(scen, f"{k}: decisions per second", r["decisions_per_s"], "/s"),
                Figure(scen, f"{k}: coalescing (messages ÷ ticks)", r["coalescing"], ""),
                Figure(scen, f"{k}: tick-to-decision p50", r["p50_ms"], "ms"),
                Figure(scen, f"{k}: tick-to-decision p99", r["p99_ms"], "ms", 10, "lower",
                       note=f"max {r['max_ms']:.1f} ms"),
                Figure(scen, f"{k}: positions not on their symbol's latest price", r["stale"], "", 0, "lower",
                       note=f"of {r['positions']}"),
            ]
    finally:
        svc.parts.decisions.sink = original
    return figs
