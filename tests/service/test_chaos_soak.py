"""`bin/trader chaos` as an operator runs it (a real process): exactly the waves asked for are
taken and every one completes (none pending), and the soak mode runs until N positions opened
and reports the protection gap and the guardian's longest unprotected time."""
from __future__ import annotations

import json
import os
import subprocess

from tests.e2e.test_cli import TRADER


def _chaos(tmp_path, *args: str) -> tuple[int, dict, str]:
    proc = subprocess.run([TRADER, "chaos", "--json", "--quiet", *args], capture_output=True, text=True,
                          timeout=240, stdin=subprocess.DEVNULL, env={**os.environ, "TMPDIR": str(tmp_path)})
    return proc.returncode, json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr[-2000:]


def test_waves_arriving_faster_than_they_open_all_complete_and_none_is_left_pending(tmp_path):
    # 0.4 s per call: a wave takes ~1.2 s to open while the source offers one every 0.1 s, so
    # waves queue in the inbox (and some are dropped from it) when the count is reached
    rc, r, err = _chaos(tmp_path, "--waves", "3", "--mix", "calm", "--set", "paper.latency_ms=400",
                        "--set", "signals.demo_interval_s=0.1", "--set", "signals.demo_wave_size=4")
    assert r["pending"] == 0 and "pending" not in r["outcomes"], r["outcomes"]
    assert r["waves_taken"] == r["waves_completed"] == 3, (r["waves_taken"], r["waves_completed"])
    assert rc == 0 and r["ok"], (r["violations"], err)


def test_soak_runs_until_the_positions_have_opened(tmp_path):
    rc, r, err = _chaos(tmp_path, "--positions", "25", "--set", "guardian.interval_s=0.2")
    assert rc == 0 and r["ok"], (r["violations"], err)
    assert r["positions_target"] == 25 and r["positions_opened"] >= 25
    assert r["pending"] == 0 and r["waves_taken"] == r["waves_completed"]
    gap, books, g = r["protection_gap_s"], r["recorded_protection_gap_s"], r["guardian"]
    # the paper default is stop-first: the venue saw every stop resting before its entry filled
    assert r["entry_mode"] == "stop_first" and gap["n"] >= 25 and gap["max"] == 0, gap
    assert books["n"] >= 25 and books["never_protected"] == 0, books
    assert g["rounds"] > 0 and g["max_unprotected_s"] <= g["grace_s"]
