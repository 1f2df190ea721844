"""While a real `bin/trader run` recovers (slow venue), `status` and `/healthz` answer with its
progress instead of "no service running"; once it is done, it takes waves."""
from __future__ import annotations

import json
import re
import signal
import subprocess
import urllib.request
from pathlib import Path

from tests.support.helpers import SYM, make_config, wait_for, wave

ROOT = Path(__file__).resolve().parents[2]
TRADER = str(ROOT / "bin" / "trader")


def test_status_and_healthz_answer_during_recovery(start_service, tmp_path):
    names = ("BTC", "ETH", "SOL")
    svc = start_service(f"risk.max_positions_per_wave={len(names)}")
    svc.submit(wave("w1", *[(SYM[n], "long", 0.9) for n in names]), "t")
    wait_for(lambda: svc.stats.waves, what="first wave")
    svc.shutdown()

    cfg = make_config(tmp_path)  # the same run_dir, database and paper account
    slow_account_read = '[{kind="latency", op="positions", latency_ms=10000, times=1}]'
    sets = [f"run_dir='{tmp_path}'", f"database.url='{cfg.database.url}'", "paper.latency_ms=2000",
            "paper.tick_interval_ms=0", "control.metrics_port=0", "signals.demo_interval_s=3600",
            "deadlines.venue_call_s=14", "log.status_interval_s=0", f"faults.venue={slow_account_read}"]
    out = open(tmp_path / "run.out", "w")
    run = subprocess.Popen([TRADER, "run", *(a for s in sets for a in ("--set", s))], cwd=ROOT,
                           stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    sock = str(tmp_path / "control.sock")
    seen: list[str] = []
    try:
        def status() -> dict | None:
            res = subprocess.run([TRADER, "status", "--json", "--socket", sock], cwd=ROOT,
                                 capture_output=True, text=True, timeout=60)
            if res.returncode != 0:
                assert "no wave-trader service is running" in res.stderr, res.stderr
                return None
            return json.loads(res.stdout)

        first = wait_for(status, timeout=60, what="status to answer")
        assert first["health"]["recovering"], f"status answered only after recovery: {first}"
        # "recovering: starting" until the positions are read, then the count and the stage
        first = wait_for(lambda: (s := status()) and re.fullmatch(r"recovering \d+ of 3 positions \(.+\)",
                                                                  s["health"]["recovering"] or "") and s,
                         timeout=60, what="recovery progress in status")
        assert any("recovering" in r for r in first["health"]["reasons"])
        with urllib.request.urlopen(first["metrics_url"] + "/healthz", timeout=10) as r:
            healthz = json.loads(r.read())
        assert healthz["recovering"] and healthz["status"] != "critical", healthz
        text = subprocess.run([TRADER, "status", "--socket", sock], cwd=ROOT, capture_output=True,
                              text=True, timeout=60).stdout
        seen.append(text)

        done = wait_for(lambda: (s := status()) and not s["health"]["recovering"] and s, timeout=90,
                        what="recovery to finish")
        assert done["children"] >= 3  # the restored three, and a demo wave once it is done
        assert "taking waves" in subprocess.run([TRADER, "status", "--socket", sock], cwd=ROOT,
                                                capture_output=True, text=True, timeout=60).stdout
    finally:
        run.send_signal(signal.SIGINT)
        try:
            run.wait(timeout=30)
        except subprocess.TimeoutExpired:
            run.kill()
    assert any(re.search(r"RECOVERING: recovering \d+ of 3 positions", t) for t in seen), seen
