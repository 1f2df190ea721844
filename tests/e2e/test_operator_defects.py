"""What a new operator tripped over, each through a real `bin/trader` process: paths relative
to the caller's directory, errors that name the path tried, a closed pipe, a quiet `--quiet`."""
from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

from tests.support.helpers import wave

ROOT = Path(__file__).resolve().parents[2]
TRADER = str(ROOT / "bin/trader")


def _args(tmp_path: Path, *more: str) -> list[str]:
    return [f"--set=database.url=sqlite:///{tmp_path}/t.db", "--set=log.file=''", f"--set=run_dir={tmp_path}",
            "--set=control.metrics_port=-1", *more]


def _trader(tmp_path, *argv, cwd=None, timeout=90):
    return subprocess.run([TRADER, *argv], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, cwd=cwd or tmp_path)


def test_config_and_signals_file_are_relative_to_the_callers_directory(tmp_path):
    (tmp_path / "waves.jsonl").write_text(wave("w1", ("BTC/USDT:USDT", "long", 0.9)) + "\n")
    (tmp_path / "my.toml").write_text('[risk]\nmax_positions_per_wave = 2\n')
    proc = _trader(tmp_path, "run", "--waves", "1", "--json", "--quiet", "--config", "my.toml",
                   *_args(tmp_path, "--set=signals.source=file:waves.jsonl"))
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["waves_completed"] == 1 and summary["positions_opened"] == 1


def test_missing_files_are_named_with_the_path_tried(tmp_path):
    proc = _trader(tmp_path, "run", "--config", "nope.toml", *_args(tmp_path))
    assert proc.returncode == 2
    assert f"config file not found: {tmp_path / 'nope.toml'}" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = _trader(tmp_path, "run", *_args(tmp_path, "--set=signals.source=file:gone.jsonl"))
    assert proc.returncode == 2, proc.stderr
    assert f"signals file not found: {tmp_path / 'gone.jsonl'}" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_closed_pipe_is_not_a_traceback(tmp_path):
    """`bin/trader trades | head`: the reader is gone before the table is written."""
    (tmp_path / "waves.jsonl").write_text(wave("w1", ("BTC/USDT:USDT", "long", 0.9)) + "\n")
    run = _trader(tmp_path, "run", "--waves", "1", "--quiet", *_args(tmp_path, "--set=signals.source=waves.jsonl"))
    assert run.returncode == 0, run.stderr
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = subprocess.run([TRADER, "trades", *_args(tmp_path)], stdout=write_end, stderr=subprocess.PIPE,
                              text=True, timeout=60, stdin=subprocess.DEVNULL, cwd=tmp_path)
    finally:
        os.close(write_end)
    assert "BrokenPipeError" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 0


def test_a_signal_source_that_is_down_degrades_health_with_its_reason(tmp_path):
    from service.control_plane import ControlPlane
    from service.app import Service
    from tests.support.helpers import make_config, wait_for

    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    port = dead.getsockname()[1]
    dead.close()  # nothing listens there: every connection attempt is refused
    cfg = make_config(tmp_path, f"signals.source=ws://127.0.0.1:{port}/signals", "signals.reconnect_min_s=0.05",
                      "signals.reconnect_max_s=0.2", "control.metrics_port=-1", "health.db_p99_degraded_s=30")
    plane = ControlPlane(cfg)
    svc = Service(cfg, metrics=plane.metrics)
    plane.attach(svc)
    svc.start(with_source=True)
    plane.start()
    try:
        h = wait_for(lambda: (r := plane.health.report()).status != "healthy" and r, what="health not healthy")
        assert h.status == "degraded"
        assert any(x.startswith(f"signal source ws://127.0.0.1:{port}/signals is ") for x in h.reasons), h.reasons
    finally:
        plane.stop()
        svc.shutdown()
