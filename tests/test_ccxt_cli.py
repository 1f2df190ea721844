"""The acceptance command, as an operator types it, against the local Binance-shaped venue."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from core.position_types import Leg
from tests.ccxt_helpers import KEY, SECRET, fake_venue

ROOT = Path(__file__).resolve().parents[1]


def test_trader_run_against_the_local_binance_venue_protects_every_position(tmp_path):
    venue = fake_venue()
    log = tmp_path / "trader.log"
    try:
        env = {**os.environ, "BINANCE_API_KEY": KEY, "BINANCE_API_SECRET": SECRET}
        cmd = [str(ROOT / "bin/trader"), "run", "--set", "exchange.name=binanceusdm",
               "--set", f"exchange.api_url={venue.url}", "--waves", "2", "--json",
               "--set", f"database.url=sqlite:///{tmp_path / 'cli.db'}", "--set", f"log.file='{log}'",
               "--set", "log.level='DEBUG'", "--set", "signals.demo_interval_s=0.5",
               "--set", "exchange.poll_interval_ms=200", "--set", f"run_dir='{tmp_path}'",
               "--set", "control.metrics_port=0"]
        run = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=90)
    finally:
        venue.stop()
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    assert summary["waves_completed"] >= 2 and summary["positions_opened"] > 0
    assert summary["positions_protected"] == summary["positions_opened"] and summary["ts_coverage"] == 1.0
    held = {p.symbol for p in venue.engine.positions()}
    stops = {o.symbol for o in venue.engine.open_orders() if o.leg is Leg.STOP}
    assert held and held <= stops  # every position the venue holds has a resting stop
    for text in (run.stdout, run.stderr, log.read_text()):
        assert SECRET not in text and KEY not in text
