"""A throwaway PostgreSQL 15 cluster for the test session, reachable only on a Unix socket.

The cluster lives in a temporary directory owned by the `postgres` system user (initdb refuses
to run as root), listens on no TCP address at all, and is stopped with `pg_ctl stop -m
immediate` when the session ends. Each test gets its own freshly created database, so tests
stay independent and can run while other engineers' suites run theirs.
"""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import psycopg
import pytest

_HINT = ("PostgreSQL 15 server binaries (initdb, pg_ctl, postgres) were not found on PATH or in "
         "/usr/lib/postgresql/*/bin; install them (Debian: apt-get install postgresql-15) to run "
         "the PostgreSQL half of the persistence and recovery tests")


def _bindir() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    return Path(candidates[0]).parent if candidates else None


def _as_postgres(cmd: list[str]) -> list[str]:
    """initdb and postgres refuse root: run them as the postgres system user when we are root."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@dataclass
class PgCluster:
    root: Path  # holds data/, the socket and the server log

    @property
    def socket_dir(self) -> str:
        return str(self.root)

    def admin(self) -> psycopg.Connection:
        return psycopg.connect(host=self.socket_dir, user="postgres", dbname="postgres",
                               autocommit=True, connect_timeout=5)

    def create_database(self, prefix: str = "t") -> str:
        """A fresh, empty database; returns its SQLAlchemy URL (psycopg 3 over the socket)."""
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        with self.admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0 STRATEGY FILE_COPY')
        return self.url(name)

    def url(self, name: str) -> str:
        return f"postgresql+psycopg://postgres@/{name}?host={self.socket_dir}"


def start_cluster() -> tuple[PgCluster, Callable[[], None]]:
    """Start a cluster; returns it and the function that stops and removes it."""
    bindir = _bindir()
    if bindir is None:
        pytest.fail(_HINT, pytrace=False)
    root = Path(tempfile.mkdtemp(prefix="wt-pg-"))  # short: a socket path must fit in 107 bytes
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    os.chmod(root, 0o700)
    data, log = root / "data", root / "server.log"
    run = lambda cmd: subprocess.run(_as_postgres(cmd), check=True, capture_output=True, text=True,  # noqa: E731
                                     timeout=120)
    try:
        run([str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
             "--no-sync", "-E", "UTF8", "--locale=C"])
        # fsync off: the tests kill the trader, never this server, so durability is not needed.
        opts = (f"-c listen_addresses='' -k {root} -c fsync=off -c synchronous_commit=off "
                f"-c full_page_writes=off -c max_connections=300 -c shared_buffers=32MB")
        run([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", opts, "-w", "-t", "60", "start"])
    except subprocess.CalledProcessError as e:
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"could not start the test PostgreSQL cluster: {e.stderr or e.stdout}", pytrace=False)

    def stop() -> None:
        subprocess.run(_as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
                       capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)

    return PgCluster(root), stop


@pytest.fixture(scope="session")
def pg_cluster():
    cluster, stop = start_cluster()
    try:
        yield cluster
    finally:
        stop()


BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(params=BACKENDS)
def db_url(request, tmp_path) -> str:
    """The database URL of a fresh, empty database on each backend the service supports."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.db'}"
    return request.getfixturevalue("pg_cluster").create_database()
