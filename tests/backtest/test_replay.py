"""`bin/trader replay FILE`, run as an operator runs it: a subprocess of the real launcher,
from another directory, with a config that points at a live database and a real venue."""
from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from pathlib import Path

from tests.support.helpers import SYM, wave

TRADER = Path(__file__).resolve().parents[2] / "bin" / "trader"


def _file(tmp_path: Path) -> Path:
    path = tmp_path / "morning.jsonl"
    path.write_text("\n".join([
        "# recorded 2026-11-21, old timestamps: a replay re-stamps them",
        wave("m1", (SYM["BTC"], "long", 0.9), ("NOPE/USDT:USDT", "long", 0.5), ts=1_700_000_000),
        '{"wave_id": "broken", "signals": [',
        wave("m2", (SYM["ETH"], "short", 0.7), ts=1_700_000_900),
        wave("m1", (SYM["BTC"], "long", 0.9), ("NOPE/USDT:USDT", "long", 0.5), ts=1_700_000_000),
    ]) + "\n")
    return path


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    live = tmp_path / "live.toml"  # what the operator trades with: must stay untouched
    live.write_text(f'[exchange]\nname = "bybit"\n[database]\nurl = "sqlite:///{tmp_path}/live.db"\n')
    (tmp_path / "tmp").mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAVE_TRADER")} | {"TMPDIR": str(tmp_path / "tmp")}
    return subprocess.run([str(TRADER), "replay", "--config", str(live), "--quiet", *args], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120)


def test_replay_rehearses_on_paper_with_a_throwaway_database(tmp_path):
    _file(tmp_path)
    res = _run(tmp_path, "morning.jsonl", "--json")  # a path relative to the caller's directory
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["database"] == "temporary" and out["file"] == str(tmp_path / "morning.jsonl")
    rows = [(r["line"], r["wave"], r["status"], r["protected"], r["rejected"], r["duplicates"]) for r in out["waves"]]
    assert rows[0] == (2, "m1", "complete", 1, 1, 0)
    assert rows[1][0] == 3 and rows[1][2] == "rejected" and out["waves"][1]["reason"].startswith("not valid JSON")
    assert rows[2:] == [(4, "m2", "complete", 1, 0, 0), (5, "m1", "duplicate", 0, 0, 2)]
    assert out["waves_completed"] == 2 and out["waves_rejected"] == 1
    assert out["positions_protected"] == 2 and out["ts_coverage"] == 1.0
    assert not (tmp_path / "live.db").exists()  # the live database was never opened
    assert list((tmp_path / "tmp").iterdir()) == []  # and the rehearsal left nothing behind


def test_replay_into_an_explicit_database_prints_a_table(tmp_path):
    _file(tmp_path)
    res = _run(tmp_path, str(tmp_path / "morning.jsonl"), "--set", f"database.url=sqlite:///{tmp_path}/rehearsal.db")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].split()[:4] == ["line", "wave", "status", "protected"]
    assert any(line.split()[:3] == ["2", "m1", "complete"] for line in lines)
    assert "2 waves completed, 1 messages rejected; 2 positions opened, 2 protected (coverage 100%)" in res.stdout
    with sqlite3.connect(tmp_path / "rehearsal.db") as db:
        assert dict(db.execute("select id, status from waves where status != 'rejected'")) == {"m1": "complete", "m2": "complete"}
    assert not (tmp_path / "live.db").exists()


def test_replay_of_a_missing_file_says_so(tmp_path):
    res = _run(tmp_path, "nope.jsonl")
    assert res.returncode == 2 and f"no such file: {tmp_path / 'nope.jsonl'}" in res.stderr
