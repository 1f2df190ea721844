"""A throwaway PostgreSQL cluster for a benchmark: a temporary directory, a Unix socket in it
and no TCP listener, stopped and deleted afterwards.

initdb refuses to run as root (sessions and CI are root), so the cluster belongs to the
`postgres` system user then. Server settings stay at PostgreSQL's defaults (fsync and
synchronous_commit on): the figures are what an operator's database would give.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

TIMEOUT_S = 60


def _as_owner() -> list[str]:
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


def _run(*cmd: str) -> None:
    proc = subprocess.run([*_as_owner(), *cmd], capture_output=True, text=True, timeout=TIMEOUT_S)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")


@contextmanager
def throwaway_cluster() -> Iterator[str]:
    """Yield a SQLAlchemy URL (psycopg 3, Unix socket) of a fresh, empty cluster."""
    for tool in ("initdb", "pg_ctl"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} not on PATH: install PostgreSQL (apt-get install postgresql)")
    root = Path(tempfile.mkdtemp(prefix="wt-bench-pg-"))
    data = root / "data"
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    started = False
    try:
        _run("initdb", "-D", str(data), "-A", "trust", "-U", "postgres", "--no-instructions")
        _run("pg_ctl", "-D", str(data), "-l", str(root / "server.log"), "-w", "-t", str(TIMEOUT_S),
             "-o", f"-c listen_addresses='' -k {root} -c max_connections=200", "start")
        started = True
        yield f"postgresql+psycopg://postgres@/postgres?host={root}"
    finally:
        if started:
            _run("pg_ctl", "-D", str(data), "-m", "fast", "-w", "-t", str(TIMEOUT_S), "stop")
        shutil.rmtree(root, ignore_errors=True)
