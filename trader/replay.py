"""`bin/trader replay`: recorded waves through the real service, against the paper venue's
random walk or, with `--prices`, recorded candles (the backtest's report)."""
from __future__ import annotations

import json
import os
import shutil
import sys
import time
from argparse import Namespace
from pathlib import Path
from typing import cast

from loguru import logger

from core.config import Config, ConfigError
from persistence.db import masked_url
from service.logs import setup_logging
from service.replay import render, render_signals, replay_config, signal_table, wave_table


def _user_path(raw: str) -> Path:
    """bin/trader runs from the checkout; a relative path is the caller's."""
    path = Path(raw).expanduser()
    return path if path.is_absolute() else Path(os.environ.get("WAVE_TRADER_CWD", os.getcwd())) / path


def _replay_recorded(cfg: Config, tmp: str | None, path: Path, args: Namespace) -> int:
    """Real actors on a recorded price path; the report is the backtest's."""
    from backtest import report
    from backtest.rehearsal import Stalled, rehearse
    from exchange.paper.candles import DataError

    try:
        result = rehearse(cfg, path)
    except (DataError, Stalled) as e:
        print(f"bin/trader replay: {e}", file=sys.stderr)
        return 1 if isinstance(e, Stalled) else 2
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    settings = {"paper.prices": cfg.paper.prices}
    if args.json:
        print(json.dumps(report.as_dict(result, settings), sort_keys=True, default=str), flush=True)
    else:
        print(report.render(result, settings), flush=True)
    return 0


def replay(args: Namespace) -> int:
    from service.app import Service

    path = _user_path(args.file)
    if not path.is_file():
        print(f"bin/trader replay: no such file: {path}", file=sys.stderr)
        return 2
    prices = _user_path(args.prices) if getattr(args, "prices", None) else None
    try:
        cfg, tmp = replay_config(args.config, args.overrides, path, restamp=args.restamp, prices=prices)
    except ConfigError as e:
        print(f"bin/trader: {e}", file=sys.stderr)
        return 2
    setup_logging(cfg.log.level, cfg.log.file, quiet=args.quiet)
    if prices is not None:
        return _replay_recorded(cfg, tmp, path, args)
    logger.info("replay of {} against the paper venue; database {}", path,
                f"{tmp}/replay.db (temporary)" if tmp else masked_url(cast(str, cfg.database.url)))
    since, t0 = time.time(), time.monotonic()
    svc = Service(cfg)
    try:
        svc.start()
        svc.wait_for_waves(None)
    except KeyboardInterrupt:
        logger.warning("replay interrupted")
    finally:
        svc.shutdown()
    summary = svc.summary() | {"seconds": round(time.monotonic() - t0, 3)}
    rows = wave_table(svc, path, since)
    signals = signal_table(svc, [r["wave"] for r in rows if r["status"] != "duplicate"])
    busy = svc._busy()
    svc.db.dispose()
    if tmp:
        shutil.rmtree(tmp, ignore_errors=True)  # a rehearsal leaves nothing behind
    if args.json:
        print(json.dumps({**summary, "file": str(path), "database": "temporary" if tmp else "explicit",
                          "waves": rows, "signals": signals}, sort_keys=True, default=str), flush=True)
    else:
        print(render(rows, summary) + "\n\n" + render_signals(signals), flush=True)
    return 1 if busy else 0
