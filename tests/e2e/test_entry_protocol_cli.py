"""The protection window of `bin/trader run` as the paper venue records it, per entry protocol:
a real process, 300 ms per venue call."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TRADER = str(ROOT / "bin/trader")


def _run(tmp_path: Path, *more: str) -> dict:
    proc = subprocess.run(
        [TRADER, "run", "--waves", "3", "--json", "--quiet", "--set", "paper.latency_ms=300",
         f"--set=database.url=sqlite:///{tmp_path}/t.db", "--set=log.file=''", f"--set=run_dir={tmp_path}",
         "--set=control.metrics_port=0", "--set=signals.demo_interval_s=0.3", *more],
        capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("mode", ["auto", "attached"])
def test_a_window_closing_protocol_leaves_no_position_naked_at_the_venue(tmp_path, mode):
    s = _run(tmp_path, f"--set=protection.entry_mode='{mode}'")
    assert s["entry_mode"] == ("stop_first" if mode == "auto" else mode)  # paper's default
    gap = s["protection_gap_s"]
    # the venue counts every position it opened, also those of a wave still opening at the stop
    assert gap["n"] >= s["positions_opened"] > 0
    assert gap["max"] == 0, gap
    assert s["positions_protected"] == s["positions_opened"] and s["ts_coverage"] == 1.0


def test_after_fill_is_naked_for_the_stop_round_trip(tmp_path):
    s = _run(tmp_path, "--set=protection.entry_mode='after_fill'")
    gap = s["protection_gap_s"]
    assert gap["n"] >= s["positions_opened"] > 0 and gap["p50"] > 0, gap
