"""`bin/trader run` as a real process against each fake venue in that venue's entry protocol:
the window the venue recorded (entry fill → first resting stop) is reported and is zero."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.support.ccxt_helpers import KEY, PROFILES, SECRET, fake_venue, venue_overrides

ROOT = Path(__file__).resolve().parents[2]
TRADER = str(ROOT / "bin/trader")


def _run(tmp_path: Path, name: str, *more: str) -> tuple[dict, list[float]]:
    """The run's summary and the window the venue itself recorded."""
    venue = fake_venue(name)
    key_env, secret_env = PROFILES[name].key_env
    try:
        sets = [f"--set={o}" for o in venue_overrides(name, venue.url, "deadlines.venue_call_s=5", *more)]
        proc = subprocess.run(
            [TRADER, "run", "--waves", "2", "--json", "--quiet", *sets,
             f"--set=database.url=sqlite:///{tmp_path}/t.db", "--set=log.file=''", f"--set=run_dir={tmp_path}",
             "--set=control.metrics_port=0", "--set=signals.demo_interval_s=0.3"],
            capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL,
            env={**os.environ, key_env: KEY, secret_env: SECRET})
        assert proc.returncode == 0, proc.stderr[-3000:]
        return json.loads(proc.stdout.strip().splitlines()[-1]), venue.engine.protection_gaps()
    finally:
        venue.stop()


@pytest.mark.parametrize("name, mode", [("binanceusdm", "stop_first"), ("bybit", "attached")])
def test_every_position_is_protected_from_its_fill_at_the_venue(tmp_path, name, mode):
    s, recorded = _run(tmp_path, name)
    assert s["entry_mode"] == mode
    gap = s["protection_gap_s"]
    assert gap is not None and gap["n"] >= s["positions_opened"] > 0, gap
    assert gap["max"] == 0 and max(recorded) == 0, (gap, recorded)
    assert s["positions_protected"] == s["positions_opened"]


def test_after_fill_on_a_fake_venue_is_naked_for_the_stop_round_trip(tmp_path):
    s, recorded = _run(tmp_path, "binanceusdm", "protection.entry_mode='after_fill'")
    assert s["entry_mode"] == "after_fill" and s["protection_gap_s"]["n"] == len(recorded) > 0
    assert min(recorded) > 0, recorded
