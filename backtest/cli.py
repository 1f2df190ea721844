"""`bin/trader backtest WAVES.jsonl --prices DATA`: what recorded waves would have made.

`--set` changes settings for every run; each `--sweep key=v1,v2,…` multiplies the runs, one
per combination of values, each reported on its own (one JSON line per run with `--json`).
Nothing here touches a database, a venue or the live paper account.
"""
from __future__ import annotations

import itertools
import json
import os
import sys
from argparse import ArgumentParser, Namespace
from pathlib import Path

from core.config import Config, ConfigError, load_config

_HELP = "replay recorded waves against recorded candles on a simulated clock (see README: Backtest)"


def add_parser(sub, common) -> None:
    p: ArgumentParser = sub.add_parser("backtest", help=_HELP)
    common(p)
    p.add_argument("file", metavar="WAVES.jsonl", help="one wave message per line, each with its ts")
    p.add_argument("--prices", required=True, metavar="DATA",
                   help="candles: a CSV/JSON/Feather/Parquet file or a directory of them (README: layouts)")
    p.add_argument("--sweep", action="append", default=[], metavar="KEY=V1,V2,…",
                   help="run once per value (repeatable: every combination), e.g. "
                        "--sweep protection.trailing_callback_pct=0.3,0.5,1")
    p.add_argument("--json", action="store_true", help="one JSON line per run instead of tables")
    p.add_argument("--out", metavar="DIR", help="also write report.txt, report.json and chart.html (per run) here")
    p.add_argument("--chart", metavar="SIGNAL", help="the signal whose position the chart shows")
    p.add_argument("--quiet", action="store_true", help="accepted for symmetry with run/replay")


def _user_path(raw: str) -> Path:
    p = Path(raw).expanduser()
    return p if p.is_absolute() else Path(os.environ.get("WAVE_TRADER_CWD", os.getcwd())) / p


def sweeps(items: list[str]) -> list[dict[str, str]]:
    """Every combination of the swept values, as `key → value` (in the order given)."""
    axes: list[tuple[str, list[str]]] = []
    for item in items:
        key, sep, raw = item.partition("=")
        values = [v.strip() for v in raw.split(",") if v.strip()]
        if not sep or not key.strip() or not values:
            raise ConfigError(f"--sweep expects section.key=v1,v2,…, got {item!r}")
        axes.append((key.strip(), values))
    return [dict(zip([k for k, _v in axes], combo)) for combo in itertools.product(*(v for _k, v in axes))]


def configs(args: Namespace) -> list[tuple[dict[str, str], Config]]:
    out = []
    for combo in sweeps(args.sweep):
        cfg = load_config(args.config, [*args.overrides, *(f"{k}={v}" for k, v in combo.items())])
        out.append((combo or {o.partition("=")[0]: o.partition("=")[2] for o in args.overrides}, cfg))
    return out


def backtest(args: Namespace) -> int:
    from backtest import chart, report
    from backtest.sim import Backtest
    from backtest.waves import read_waves
    from exchange.paper.candles import DataError, load

    waves_path, data_path = _user_path(args.file), _user_path(args.prices)
    if not waves_path.is_file():
        print(f"bin/trader backtest: no such file: {waves_path}", file=sys.stderr)
        return 2
    try:
        runs = configs(args)
        data = load(data_path)
    except (ConfigError, DataError) as e:
        print(f"bin/trader backtest: {e}", file=sys.stderr)
        return 2
    lines = read_waves(waves_path, set(data), max_wave_size=runs[0][1].signals.max_wave_size)
    out_dir = _user_path(args.out) if args.out else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for n, (settings, cfg) in enumerate(runs, 1):
        r = Backtest(cfg, lines, data, record=out_dir is not None).run()
        results.append((settings, r))
        doc = report.as_dict(r, settings)
        if args.json:
            print(json.dumps(doc, default=str, sort_keys=True), flush=True)
        if out_dir is not None:
            tag = "" if len(runs) == 1 else f"-{n}"
            (out_dir / f"report{tag}.json").write_text(json.dumps(doc, default=str, indent=1, sort_keys=True))
            (out_dir / f"report{tag}.txt").write_text(report.render(r, settings) + "\n")
            (out_dir / f"chart{tag}.html").write_text(chart.html(r, settings, args.chart))
    if not args.json:
        if len(results) == 1:
            settings, r = results[0]
            print(report.render(r, settings), flush=True)
        else:
            print(report.render_sweep(results), flush=True)
    if out_dir is not None:
        print(f"written to {out_dir}", file=sys.stderr)
    return 0
