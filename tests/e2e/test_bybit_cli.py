"""The service's command line, as an operator types it, against the local Bybit-shaped venue started
by `bin/fake-venue --venue bybit` (a real process, its URLs read from its output)."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from core.config import load_config
from core.position_types import Leg
from exchange.ccxt.build import build_ccxt_gateway

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def fake_venue_process():
    proc = subprocess.Popen([str(ROOT / "bin/fake-venue"), "--venue", "bybit", "--port", "0", "--tick-ms", "200"],
                            stdout=subprocess.PIPE, text=True)
    try:
        rest, ws = proc.stdout.readline().strip(), proc.stdout.readline().strip()
        assert rest.startswith("http://127.0.0.1:") and ws.startswith("ws://127.0.0.1:")
        yield rest, ws
    finally:
        proc.terminate()
        proc.wait(10)


# Waves 3 s apart: none is still opening when the second completes and the run stops (a wave
# that is, is cut short by the shutdown: see the service's shutdown).
@pytest.mark.parametrize("feed", ["websocket", "poll"])
def test_trader_run_on_the_local_bybit_venue_protects_every_position(tmp_path, fake_venue_process, feed):
    rest, ws = fake_venue_process
    log = tmp_path / "trader.log"
    cmd = [str(ROOT / "bin/trader"), "run", "--set", "exchange.name=bybit", "--set", f"exchange.api_url={rest}",
           "--waves", "2", "--json",
           *(["--set", f"exchange.ws_url={ws}"] if feed == "websocket" else ["--set", "exchange.feed='poll'"]),
           "--set", f"database.url=sqlite:///{tmp_path / 'cli.db'}", "--set", f"log.file='{log}'",
           "--set", "signals.demo_interval_s=3", "--set", "exchange.poll_interval_ms=200",
           "--set", f"run_dir='{tmp_path}'", "--set", "control.metrics_port=0"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("BYBIT_")}
    run = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    assert summary["waves_completed"] >= 2 and summary["positions_opened"] > 0
    assert summary["positions_protected"] == summary["positions_opened"] and summary["ts_coverage"] == 1.0
    gw = build_ccxt_gateway(load_config(None, ["exchange.name=bybit", f"exchange.api_url={rest}"]))
    try:  # orders first: a stop that fires in between leaves a stop listed, not a position
        stops = {o.symbol for o in gw.open_orders(None, 5) if o.leg is Leg.STOP}
        held = {p.symbol for p in gw.positions(5)}
    finally:
        gw.close()
    assert held and held <= stops, held - stops  # every position the venue holds has a resting stop
