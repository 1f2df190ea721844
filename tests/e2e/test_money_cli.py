"""The operator's money through real `bin/trader` processes: the run summary's `pnl`, the
trade history that adds up to it, and a `--quiet` run that is quiet."""
from __future__ import annotations

import csv
import io
import json
import subprocess
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TRADER = str(ROOT / "bin/trader")


def _args(tmp_path: Path, *more: str) -> list[str]:
    return [f"--set=database.url=sqlite:///{tmp_path}/t.db", "--set=log.file=''", f"--set=run_dir={tmp_path}",
            "--set=control.metrics_port=-1", *more]


def test_run_summary_pnl_equals_the_sum_of_trades_csv(tmp_path):
    # tight stops on a jumpy market: positions stop out within the three waves
    proc = subprocess.run([TRADER, "run", "--waves", "3", "--json", "--quiet",
                           *_args(tmp_path, "--set=signals.demo_interval_s=1", "--set=paper.volatility=0.01",
                                  "--set=protection.stop_loss_pct=0.3", "--set=paper.tick_interval_ms=50")],
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    pnl = summary["pnl"]
    assert set(pnl) >= {"realized", "fees", "unrealized", "equity"}
    assert Decimal(pnl["fees"]) > 0 and pnl["trades"] > 0, pnl
    assert "STOPPED taking new waves" not in proc.stderr  # a normal end is not a warning
    out = subprocess.run([TRADER, "trades", "--csv", *_args(tmp_path)], capture_output=True, text=True,
                         timeout=60, stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert len(rows) == pnl["trades"]
    assert all(r["entry"] and r["exit"] and r["reason"] and r["fees"] for r in rows)
    net = sum(Decimal(r["net"]) for r in rows)
    assert net.quantize(Decimal("0.0001")) == Decimal(pnl["realized"])
    fees = sum(Decimal(r["fees"]) for r in rows)
    assert fees.quantize(Decimal("0.0001")) == Decimal(pnl["fees"])
