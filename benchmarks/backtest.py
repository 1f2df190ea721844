"""Backtest throughput: recorded waves over generated 1-minute candles (figures, not a test).

    .venv/bin/python -m benchmarks.backtest [--symbols 50] [--minutes 1440] [--wave-every 30]

Writes `--symbols` CSV files of `--minutes` seeded random-walk candles (paper symbols
SYN0001…, so their specs are the paper universe's), a wave of 7 signals every
`--wave-every` minutes, then times reading the files and the backtest itself (the state
machine and the paper engine walking every candle), default settings.
"""
from __future__ import annotations

import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import Figure, emit, scenario_args  # noqa: E402
from core.config import load_config  # noqa: E402

START = 1_767_225_600  # 2026-01-01 00:00 UTC


def generate(tmp: Path, symbols: int, minutes: int, wave_every: int, seed: int = 7) -> tuple[Path, Path]:
    rng = random.Random(seed)
    data = tmp / "candles"
    data.mkdir()
    names = [f"SYN{i:04d}" for i in range(1, symbols + 1)]
    for name in names:
        price, rows = 10.0, ["timestamp,open,high,low,close,volume"]
        for m in range(minutes):
            o = price
            c = o * (1 + rng.gauss(0, 0.002))
            h, lo = max(o, c) * (1 + abs(rng.gauss(0, 0.001))), min(o, c) * (1 - abs(rng.gauss(0, 0.001)))
            rows.append(f"{(START + 60 * m) * 1000},{o:.3f},{h:.3f},{lo:.3f},{c:.3f},{rng.randint(1, 999)}")
            price = c
        (data / f"{name}USDT-1m.csv").write_text("\n".join(rows) + "\n")
    waves = tmp / "waves.jsonl"
    with waves.open("w") as fh:
        for k, m in enumerate(range(1, minutes, wave_every)):
            picks = rng.sample(names, min(7, len(names)))
            fh.write(json.dumps({"wave_id": f"w{k}", "ts": START + 60 * m + 30, "signals": [
                {"id": f"w{k}-{i}", "symbol": f"{n}/USDT:USDT", "side": rng.choice(["long", "short"]),
                 "score": round(rng.random(), 3)} for i, n in enumerate(picks)]}) + "\n")
    return data, waves


def main() -> None:
    ap = scenario_args(__doc__.splitlines()[0])
    ap.add_argument("--symbols", type=int, default=50)
    ap.add_argument("--minutes", type=int, default=1440)
    ap.add_argument("--wave-every", type=int, default=30)
    args = ap.parse_args()
    from backtest.report import totals
    from backtest.sim import Backtest
    from backtest.waves import read_waves
    from exchange.paper.candles import load

    tmp = Path(tempfile.mkdtemp(prefix="backtest-bench-"))
    data_dir, waves_path = generate(tmp, args.symbols, args.minutes, args.wave_every)
    t0 = time.perf_counter()
    data = load(data_dir)
    load_s = time.perf_counter() - t0
    cfg = load_config(None, [f"paper.extra_symbols={args.symbols}"])
    lines = read_waves(waves_path, set(data))
    result = Backtest(cfg, lines, data).run()
    tot = totals(result)
    size = f"{args.symbols} symbols × {args.minutes} 1-minute candles"
    name = "backtest"
    emit([
        Figure(name, f"candles per second ({size})", result.candles / result.seconds, "candles/s"),
        Figure(name, "backtest wall time", result.seconds, "s", target=10.0, better="lower",
               note=f"{result.candles} candles, {tot['signals']} signals, {tot['trades']} trades"),
        Figure(name, "reading the CSV files", load_s, "s", note=f"{len(data)} files"),
        Figure(name, "trades closed; still open at the end", float(tot["trades"]), "",
               note=f"{tot['open_at_end']} open, net PnL {tot['net_pnl']:.2f}"),
    ], args.out)


if __name__ == "__main__":
    main()
