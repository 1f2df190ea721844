"""bin/trader as an operator runs it: a subprocess, real files, real signals."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[2]
TRADER = str(ROOT / "bin/trader")


def _args(tmp_path: Path, *more: str) -> list[str]:
    return [f"--set=database.url=sqlite:///{tmp_path}/t.db", "--set=log.file=''", f"--set=run_dir={tmp_path}", "--set=control.metrics_port=0",
            *more]


def test_run_three_waves_json_summary(tmp_path):
    proc = subprocess.run([TRADER, "run", "--waves", "3", "--json", "--quiet",
                           *_args(tmp_path, "--set=signals.demo_interval_s=0.3")],
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    s = json.loads(proc.stdout.strip().splitlines()[-1])
    assert s["waves_completed"] >= 3 and s["ts_coverage"] == 1.0
    assert s["positions_protected"] == s["positions_opened"] > 0
    assert sum(s["outcomes"].values()) == s["signals"]
    db = create_engine(f"sqlite:///{tmp_path}/t.db")
    with db.connect() as c:  # every signal of a completed wave has exactly one outcome
        done = c.execute(text("select count(*) from waves where status = 'complete'")).scalar()
        undecided = c.execute(text("select count(*) from signals s join waves w on w.id = s.wave_id "
                                   "where w.status = 'complete' and s.outcome is null")).scalar()
        decided = c.execute(text("select count(*) from signals s join waves w on w.id = s.wave_id "
                                 "where w.status = 'complete'")).scalar()
    assert done >= 3 and undecided == 0 and decided == 7 * done


def test_ctrl_c_stops_cleanly_and_leaves_stops_resting(tmp_path):
    proc = subprocess.Popen([TRADER, "run", "--json", *_args(tmp_path, "--set=deadlines.shutdown_s=5",
                                                             "--set=signals.demo_interval_s=30")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    try:
        end = time.monotonic() + 60
        for line in proc.stderr:  # wait for the first wave to complete, as an operator would
            if "complete in" in line or time.monotonic() > end:
                break
        proc.send_signal(signal.SIGINT)
        # the shutdown deadline (5 s) with slack for a loaded CI machine: past it, TimeoutExpired
        out, err = proc.communicate(timeout=5 + 10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["interrupted"] and summary["waves_completed"] >= 1
    db = create_engine(f"sqlite:///{tmp_path}/t.db")
    with db.connect() as c:
        rows = c.execute(text("select phase, stop_cid from positions")).all()
        # a stop replaced by a tighter one is cancelled by design; a current one never is
        cancels = c.execute(text("select count(*) from orders o join positions p on o.cid in "
                                 "(p.stop_cid, p.trailing_cid) where o.status = 'cancelled'")).scalar()
    assert rows and all(phase == "trailing" and stop for phase, stop in rows), "positions stay protected"
    assert cancels == 0, "shutdown must not take protective orders off the venue"


def test_bad_configuration_is_refused_with_the_key_named(tmp_path):
    proc = subprocess.run([TRADER, "run", "--set", "risk.max_positions_per_wave=0", "--set", "paper.latncy_ms=5"],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 2
    assert "risk.max_positions_per_wave" in proc.stderr and "paper.latncy_ms" in proc.stderr


def test_chaos_default_mix_holds_every_invariant(tmp_path):
    proc = subprocess.run([TRADER, "chaos", "--waves", "12", "--json", "--quiet"],
                          capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL,
                          env={**os.environ, "TMPDIR": str(tmp_path)})
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert proc.returncode == 0, (report["violations"], proc.stderr[-2000:])
    assert report["ok"] and report["waves_completed"] >= 12 and not report["violations"]
    assert sum(report["faults_fired"].values()) > 0, "the mix injected nothing"
    assert not list(tmp_path.glob("wave-trader-chaos-*")), "a rehearsal leaves nothing behind"


def test_chaos_exits_non_zero_when_an_invariant_breaks(monkeypatch, capsys):
    import service.chaos as chaos_mod
    from trader.cli import main
    from service.invariants import Violation

    monkeypatch.setattr(chaos_mod, "check_invariants", lambda svc: [Violation(4, "X has no resting stop")])
    assert main(["chaos", "--waves", "1", "--mix", "calm", "--json", "--quiet"]) == 1
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["invariants"]["4"] == 1 and not report["ok"]
