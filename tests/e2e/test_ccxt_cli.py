"""The service's command line, as an operator types it, against the local Binance-shaped venue:
over the websocket (ccxt.pro user-data stream and tickers) and with websockets off (polling)."""
from __future__ import annotations

import json
import os
import subprocess
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from core.position_types import Leg, position_id_of
from persistence.models import PositionRow
from tests.support.ccxt_helpers import KEY, SECRET, fake_venue
from tests.support.helpers import wait_for

ROOT = Path(__file__).resolve().parents[2]


def test_fake_venue_prints_its_rest_and_websocket_urls():
    proc = subprocess.Popen([str(ROOT / "bin/fake-venue"), "--venue", "binanceusdm", "--port", "0", "--tick-ms", "0"],
                            stdout=subprocess.PIPE, text=True)
    try:
        rest, ws = proc.stdout.readline().strip(), proc.stdout.readline().strip()
    finally:
        proc.terminate()
        proc.wait(10)
    assert rest.startswith("http://127.0.0.1:") and ws == "ws://" + rest.removeprefix("http://")


def _fully_protected(venue):
    """A resting stop whose position has its native trailing stop resting too."""
    resting = venue.engine.open_orders()
    trailed = {o.symbol for o in resting if o.leg is Leg.TRAILING}
    return next((o for o in resting if o.leg is Leg.STOP and o.symbol in trailed), None)


@pytest.mark.parametrize("transport", ["ws", "poll"])
def test_trader_run_protects_every_position_and_a_fired_stop_closes_at_the_venue_fill(tmp_path, transport):
    venue = fake_venue()
    log = tmp_path / "trader.log"
    try:
        env = {**os.environ, "BINANCE_API_KEY": KEY, "BINANCE_API_SECRET": SECRET}
        cmd = [str(ROOT / "bin/trader"), "run", "--set", "exchange.name=binanceusdm",
               "--set", f"exchange.api_url={venue.url}", "--waves", "2", "--json",
               "--set", f"database.url=sqlite:///{tmp_path / 'cli.db'}", "--set", f"log.file='{log}'",
               "--set", "log.level='DEBUG'", "--set", "signals.demo_interval_s=3",
               "--set", f"run_dir='{tmp_path}'", "--set", "control.metrics_port=0"]
        if transport == "ws":  # REST polling once a minute: the fill must come over the socket
            cmd += ["--set", f"exchange.ws_url='{venue.ws_url}'", "--set", "exchange.poll_interval_ms=60000"]
        else:
            cmd += ["--set", "exchange.feed='poll'", "--set", "exchange.poll_interval_ms=200"]
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            if transport == "ws":
                wait_for(lambda: venue.streams.private_connections, 60, "the user-data stream")
            stop = wait_for(lambda: _fully_protected(venue), 60, "a position of the first wave fully protected")
            side = venue.engine.account.orders[stop.cid].side
            fill = stop.stop_price * (Decimal("0.999") if side == "sell" else Decimal("1.001"))
            fill = venue.engine.markets[stop.symbol].nearest_price(fill)
            venue.set_price(stop.symbol, fill)
            out, err = proc.communicate(timeout=90)
        finally:
            if proc.poll() is None:
                proc.kill()
    finally:
        venue.stop()
    assert proc.returncode == 0, err[-3000:]
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["waves_completed"] >= 2 and summary["positions_opened"] > 0
    assert summary["positions_protected"] == summary["positions_opened"] and summary["ts_coverage"] == 1.0
    held = {p.symbol for p in venue.engine.positions()}
    stops = {o.symbol for o in venue.engine.open_orders() if o.leg is Leg.STOP}
    assert held and held <= stops  # every position the venue holds has a resting stop
    with Session(create_engine(f"sqlite:///{tmp_path / 'cli.db'}")) as db:  # (a later wave may reopen the symbol)
        row = db.scalars(select(PositionRow).where(PositionRow.id == position_id_of(stop.cid))).one()
    assert (row.phase, row.close_reason, row.exit_price) == ("closed", "stop-loss triggered", fill)
    for text in (out, err, log.read_text()):
        assert SECRET not in text and KEY not in text
