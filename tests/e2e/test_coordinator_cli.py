"""The coordinator's faults as an operator meets them: real `bin/trader run` processes.

Each run reads one recorded wave of 8 signals (the 3rd is SOL) with a fault on the coordinator's
database calls; the paper account (`paper-venue.db`) is what the venue holds at the end.
"""
from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
from decimal import Decimal
from pathlib import Path

from tests.support.helpers import SYM, wait_for, wave

ROOT = Path(__file__).resolve().parents[2]
TRADER = str(ROOT / "bin" / "trader")
RANKED = ["BTC", "ETH", "SOL", "XRP", "DOGE", "ADA", "AVAX", "LINK"]


def _config(tmp_path: Path, faults: str, *, source: str | None = None, paper_latency_ms: int = 0) -> Path:
    waves = tmp_path / "w.jsonl"
    # the run restamps each line's ts on replay, so an old wave is still fresh
    waves.write_text(wave("w1", *[(SYM[n], "long", 1 - i / 10) for i, n in enumerate(RANKED)]) + "\n")
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'''run_dir = "{tmp_path}"
[control]
metrics_port = 0
[database]
url = "sqlite:///{tmp_path}/t.db"
[signals]
source = "{source or 'file:' + str(waves)}"
demo_interval_s = 3600
[paper]
tick_interval_ms = 0
latency_ms = {paper_latency_ms}
[log]
file = ""
status_interval_s = 0
[risk]
max_positions_per_wave = 6
[supervisor]
backoff_base_s = 0.05
backoff_max_s = 0.2
[deadlines]
venue_call_s = 2
db_call_s = 2
operation_s = 4
shutdown_s = 3
{faults}''')
    return cfg


def _run_one_wave(cfg: Path) -> dict:
    proc = subprocess.run([TRADER, "run", "--config", str(cfg), "--waves", "1", "--json", "--quiet"],
                          capture_output=True, text=True, timeout=90, stdin=subprocess.DEVNULL, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _venue_symbols(tmp_path: Path) -> set[str]:
    with sqlite3.connect(tmp_path / "paper-venue.db") as conn:
        return {sym for sym, qty in conn.execute("SELECT symbol, qty FROM positions") if Decimal(qty)}


def _signals(tmp_path: Path) -> dict[str, tuple[str, str | None, str | None]]:
    with sqlite3.connect(tmp_path / "t.db") as conn:
        return {sym: (outcome, pid, phase) for sym, outcome, pid, phase in conn.execute(
            "SELECT s.symbol, s.outcome, s.position_id, p.phase FROM signals s "
            "LEFT JOIN positions p ON p.id = s.position_id")}


def _assert_outcomes_are_what_the_venue_holds(tmp_path: Path, summary: dict) -> None:
    best6 = {SYM[n] for n in RANKED[:6]}
    assert summary["waves_completed"] == 1 and summary["outcomes"] == {"protected": 6, "skipped": 2}, summary
    assert summary["open_by_phase"] == {"trailing": 6}, summary
    assert _venue_symbols(tmp_path) == best6
    sigs = _signals(tmp_path)
    assert {sym for sym, (o, _p, _ph) in sigs.items() if o == "protected"} == best6
    assert all(pid and phase == "trailing" for sym, (_o, pid, phase) in sigs.items() if sym in best6), sigs


def test_a_hung_position_create_for_the_3rd_signal_still_completes_the_wave(tmp_path):
    cfg = _config(tmp_path, f'''[[faults.db]]
kind = "hang"
op = "position_create"
symbols = ["{SYM['SOL']}"]
times = 1
''')
    summary = _run_one_wave(cfg)
    _assert_outcomes_are_what_the_venue_holds(tmp_path, summary)
    assert summary["restarts"] == 1


def test_a_slow_position_create_past_the_deadline_is_fenced_and_counted_from_the_venue(tmp_path):
    """The call returns 0.8 s after the coordinator was replaced, while the wave is still
    opening (1 s per venue call): the stale coordinator must not open or skip anything."""
    cfg = _config(tmp_path, f'''[[faults.db]]
kind = "latency"
latency_ms = 4800
op = "position_create"
symbols = ["{SYM['SOL']}"]
times = 1
''', paper_latency_ms=1000)
    summary = _run_one_wave(cfg)
    _assert_outcomes_are_what_the_venue_holds(tmp_path, summary)


def test_a_hung_wave_insert_is_recorded_and_opened_by_the_successor(tmp_path):
    cfg = _config(tmp_path, '''[[faults.db]]
kind = "hang"
op = "db_write"
times = 1
''')
    summary = _run_one_wave(cfg)
    _assert_outcomes_are_what_the_venue_holds(tmp_path, summary)


def test_a_coordinator_down_is_reported_truthfully_and_ctrl_c_is_clean(tmp_path):
    """Every coordinator start-up crashes: the restarts are bounded, then `status` says
    "coordinator down: <reason>", the demo wave is refused with that reason (each signal
    recorded), health is critical, and Ctrl-C ends the run without a traceback."""
    cfg = _config(tmp_path, '''[[faults.actor]]
kind = "crash"
op = "coordinator_claim"
''', source="demo")
    out = open(tmp_path / "run.out", "w+")
    run = subprocess.Popen([TRADER, "run", "--config", str(cfg)], cwd=ROOT, stdout=out,
                           stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        def status() -> str:
            res = subprocess.run([TRADER, "status", "--config", str(cfg)], capture_output=True, text=True,
                                 timeout=30, cwd=ROOT)
            return res.stdout if res.returncode == 0 else ""
        said = wait_for(lambda: "coordinator down:" in (s := status()) and s, timeout=60,
                        what="status to say the coordinator is down")
        assert "restart intensity exceeded" in said and "injected crash" in said, said
        assert "health: CRITICAL" in said and "taking waves" not in said, said
        with sqlite3.connect(tmp_path / "t.db") as conn:
            wait_for(lambda: conn.execute("SELECT count(*) FROM signals").fetchone()[0], timeout=30,
                     what="the refused demo wave recorded")
            reasons = {r for (r,) in conn.execute("SELECT reason FROM signals WHERE outcome = 'skipped'")}
        assert reasons and all(r.startswith("not taken: coordinator down: ") for r in reasons), reasons
        run.send_signal(signal.SIGINT)
        assert run.wait(timeout=30) == 130
    finally:
        if run.poll() is None:
            run.kill()
            run.wait(10)
    out.seek(0)
    text = out.read()
    assert "Traceback" not in text and "ActorDeadError" not in text, text[-3000:]
