"""A real `bin/trader run` process for tests of what an operator (or a local attacker) meets."""
from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

from tests.support.helpers import wait_for

ROOT = Path(__file__).resolve().parents[2]
TRADER = str(ROOT / "bin" / "trader")


def trader(*args: str, timeout: float = 60, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([TRADER, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env=env)


def said(res: subprocess.CompletedProcess) -> str:
    return f"rc={res.returncode}\nstdout: {res.stdout[-3000:]}\nstderr: {res.stderr[-3000:]}"


def quiet_settings(tmp_path: Path, *extra: str) -> list[str]:
    """`--set` arguments for a run under tmp_path: no demo waves for an hour, any free port."""
    settings = [f"run_dir={json.dumps(str(tmp_path))}", f"database.url='sqlite:///{tmp_path}/t.db'",
                f"log.file='{tmp_path}/log/t.log'", "control.metrics_port=0", "paper.tick_interval_ms=0",
                "signals.demo_interval_s=3600", "signals.demo_wave_size=1", "log.status_interval_s=0", *extra]
    return [a for s in settings for a in ("--set", s)]


class Trader:
    """`bin/trader run` with its output in a file; `stop()` sends Ctrl-C and returns the exit code."""

    def __init__(self, tmp_path: Path, *extra: str, env: dict | None = None, umask: int | None = None,
                 out_dir: Path | None = None) -> None:
        self.tmp_path, self.args = tmp_path, quiet_settings(tmp_path, *extra)
        self.sock = tmp_path / "control.sock"
        self.out_path = (out_dir or tmp_path) / "run.out"
        self._out = open(self.out_path, "w")

        def preexec():
            if umask is not None:
                os.umask(umask)
        self.proc = subprocess.Popen([TRADER, "run", *self.args], cwd=ROOT, stdout=self._out,
                                     stderr=subprocess.STDOUT, env=env, preexec_fn=preexec)

    def wait_ready(self, timeout: float = 90) -> None:
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"trader exited with {self.proc.returncode}:\n{self.output()}")
            return self.sock.exists() and trader("health", "--socket", str(self.sock)).returncode in (0, 1, 2)
        wait_for(ready, timeout=timeout, what="the trader's control socket")

    def ctl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return trader(*args, "--socket", str(self.sock), timeout=timeout)

    def output(self) -> str:
        if not self._out.closed:
            self._out.flush()
        return self.out_path.read_text(errors="replace")

    def stop(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self._out.close()

    def __enter__(self) -> "Trader":
        return self

    def __exit__(self, *exc) -> None:
        if self.proc.poll() is None:
            self.stop()
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
