"""The live path on the recorded path: real actors, database and paper venue, fed the same
candles and waves as the backtest, make the same exits at the same prices and the same PnL."""
from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from backtest.rehearsal import rehearse
from backtest.sim import Backtest
from backtest.waves import read_waves
from exchange.paper.candles import load
from tests.support.helpers import make_config

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
TRADER = ROOT / "bin" / "trader"
FIELDS = ("status", "outcome", "entry_price", "qty", "exit_price", "exit_reason", "pnl", "fees", "net")


def _rows(result) -> dict[str, tuple]:
    return {t.signal_id: tuple(getattr(t, f) for f in FIELDS) for t in result.trades}


@pytest.mark.parametrize("slippage, mode", [("0", "native"), ("2", "native"), ("2", "emulated")])
def test_real_actors_on_the_recorded_path_exit_as_the_backtest_does(tmp_path, slippage, mode):
    overrides = [f"paper.slippage_bps={slippage}", "paper.state_file=''", f"paper.prices='file:{DATA / 'candles'}'",
                 f"protection.trailing_mode='{mode}'"]
    cfg = make_config(tmp_path, *overrides)
    live = rehearse(cfg, DATA / "waves.jsonl")
    data = load(DATA / "candles")
    sim = Backtest(cfg, read_waves(DATA / "waves.jsonl", set(data)), data).run()
    expected = {k: v for k, v in _rows(sim).items() if k != "-"}
    assert _rows(live) == expected
    closed = [t for t in sim.trades if t.status == "closed"]
    reasons = {"stop-loss triggered"} | ({"trailing stop triggered"} if mode == "native" else set())
    assert len(closed) == 4 and {t.exit_reason for t in closed} == reasons
    by_id = {t.signal_id: t for t in live.trades}
    assert all(by_id[t.signal_id].exit_ts == t.exit_ts for t in closed)  # on the path's own clock
    assert live.equity == sim.equity


def _replay(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAVE_TRADER")}
    return subprocess.run([str(TRADER), "replay", "--quiet", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)


def test_replay_shows_each_signals_reason_and_keeps_the_waves_own_time(tmp_path):
    res = _replay(tmp_path, str(DATA / "waves.jsonl"), "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.splitlines()[-1])
    reasons = {s["signal"]: (s["outcome"], s["reason"]) for s in out["signals"]}
    assert reasons["d-unknown"] == ("rejected", "unknown symbol 'NOPE/USDT:USDT' for this venue")
    assert reasons["a-asml-long"] == ("rejected", "unknown symbol 'ASML/EUR' for this venue")  # not a paper symbol
    assert [w["ts"] for w in out["waves"]] == [1349740800, 1351036800, 1351555200, 1351728000]
    text = _replay(tmp_path, str(DATA / "waves.jsonl"))
    assert "unknown symbol 'NOPE/USDT:USDT' for this venue" in text.stdout.split("reason", 2)[-1]
    before = time.time()
    restamped = json.loads(_replay(tmp_path, str(DATA / "waves.jsonl"), "--json", "--restamp").stdout.splitlines()[-1])
    assert all(w["ts"] >= before - 1 for w in restamped["waves"])


def test_replay_on_recorded_prices_prints_the_backtest_report(tmp_path):
    res = _replay(tmp_path, str(DATA / "waves.jsonl"), "--prices", str(DATA / "candles"), "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.splitlines()[-1])
    exits = {s["signal"]: (s["exit"], s["exit_reason"]) for s in out["signals"] if s["status"] == "closed"}
    assert exits["c-asml-long"][1] == "trailing stop triggered" and exits["a-asml-long"][1] == "stop-loss triggered"
    assert out["totals"]["trades"] == 4


def test_run_refuses_a_recorded_path_it_could_not_play(tmp_path):
    res = subprocess.run([str(TRADER), "run", "--set", f"paper.prices=file:{DATA / 'candles'}", "--waves", "1"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "replay WAVES --prices DATA" in res.stderr
