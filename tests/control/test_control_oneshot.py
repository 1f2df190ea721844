"""One-shot commands for scripts, against a real `bin/trader run` process."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from pathlib import Path

import pexpect

from tests.support.helpers import wait_for

ROOT = Path(__file__).resolve().parents[2]
TRADER = str(ROOT / "bin" / "trader")


def trader(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([TRADER, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def said(res: subprocess.CompletedProcess) -> str:
    return f"rc={res.returncode}\nstdout: {res.stdout}\nstderr: {res.stderr}"


def test_one_shot_commands_drive_a_running_service(tmp_path):
    settings = [f"run_dir={json.dumps(str(tmp_path))}", f"database.url='sqlite:///{tmp_path}/t.db'",
                f"log.file='{tmp_path}/t.log'", "control.metrics_port=0", "paper.tick_interval_ms=0",
                "signals.demo_interval_s=3600", "signals.demo_wave_size=3", "log.status_interval_s=0"]
    args = [a for s in settings for a in ("--set", s)]
    out = open(tmp_path / "run.out", "w")
    run = subprocess.Popen([TRADER, "run", *args], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                           env=dict(os.environ, BINANCE_API_SECRET="one-shot-secret-value"))
    sock = tmp_path / "control.sock"
    try:
        def positions():
            res = trader("positions", "--json", "--socket", str(sock))
            return json.loads(res.stdout)["positions"] if res.returncode == 0 else []
        # A position is listed from its first write-ahead row ("new"); wait until all three trail.
        rows = wait_for(lambda: len(got := positions()) == 3 and {r["phase"] for r in got} == {"trailing"} and got,
                        timeout=60, what="3 demo positions trailing")
        assert all(r["epoch"] == 1 for r in rows)

        # found through the same --set run_dir as `run`; health's coverage is the guardian's view
        # of the venue, one read (guardian.interval_s) behind the actors
        res = wait_for(lambda: (r := trader("status", *args)).returncode == 0 and "3/3 trailing" in r.stdout and r,
                       timeout=30, what="status to show the three positions trailing at the venue")
        assert "taking waves" in res.stdout, said(res)
        follow = pexpect.spawn(TRADER, ["events", "--follow", "--socket", str(sock)], cwd=str(ROOT),
                               encoding="utf-8", timeout=30)
        follow.expect("-- following")

        first, second = rows[0], rows[1]
        res = trader("set", "callback", "0.8", "--symbol", first["symbol"], "--socket", str(sock))
        assert res.returncode == 0 and "callback 0.8%" in res.stdout, said(res)
        res = trader("close", first["id"], "--socket", str(sock))
        assert res.returncode == 0 and "closed at" in res.stdout, said(res)
        follow.expect(rf"closing\s+{re.escape(first['symbol'])} \({first['id']}\) reason=operator close")
        res = trader("close", first["symbol"], "--socket", str(sock))
        assert res.returncode == 1 and "no open position" in res.stderr, said(res)
        res = trader("set", "callback", "99", "--socket", str(sock))
        assert res.returncode == 1 and "less than or equal to 20" in res.stderr, said(res)
        res = trader("close-all", "--socket", str(sock))
        assert res.returncode == 2 and "--yes" in res.stderr, said(res)
        res = trader("pause", "--socket", str(sock))
        assert res.returncode == 0, said(res)
        follow.expect(r"paused\s+service paused=True")
        follow.kill(signal.SIGINT)
        follow.expect(pexpect.EOF)

        res = trader("close-all", "--yes", "--json", "--socket", str(sock))
        assert res.returncode == 0, said(res)
        closed = {t["symbol"]: t["phase"] for t in json.loads(res.stdout)["targets"]}
        assert closed == {second["symbol"]: "closed", rows[2]["symbol"]: "closed"}
        res = trader("health", "--socket", str(sock))
        assert res.returncode == 0, said(res)

        again = trader("run", *args)
        assert again.returncode == 4 and f"pid {run.pid}" in again.stderr, said(again)
        assert run.poll() is None  # the running service was not disturbed
    finally:
        run.send_signal(signal.SIGINT)
        code = run.wait(timeout=30)
        out.close()
    assert code == 130
    assert not sock.exists()
    log = (tmp_path / "t.log").read_text() + (tmp_path / "run.out").read_text()
    assert "control: operator close" in log and "one-shot-secret-value" not in log
