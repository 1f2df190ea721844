"""One owner per database: a second `bin/trader run` on the same database is refused (exit 4)
and told who owns it, whatever its run_dir — on SQLite and on PostgreSQL. Real processes."""
from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
from pathlib import Path

import pytest

from persistence.lease import LeaseHeld, acquire
from tests.support.helpers import SYM, wait_for, wave

ROOT = Path(__file__).resolve().parents[2]
TRADER = str(ROOT / "bin" / "trader")


def start(run_dir: Path, db_url: str | None, *more: str, args: tuple[str, ...] = ()) -> subprocess.Popen:
    run_dir.mkdir(parents=True, exist_ok=True)
    sets = [f"run_dir='{run_dir}'", "control.metrics_port=-1", "paper.tick_interval_ms=0",
            "signals.demo_interval_s=3600", "signals.demo_wave_size=2", "log.status_interval_s=0", *more]
    if db_url is not None:
        sets.append(f"database.url='{db_url}'")
    out = open(run_dir / "run.out", "w")
    return subprocess.Popen([TRADER, "run", *args, *(a for s in sets for a in ("--set", s))], cwd=ROOT,
                            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)


def wait_started(proc: subprocess.Popen, run_dir: Path) -> None:
    """`wave-trader starting` is logged once the Service is built, i.e. the lease is held."""
    log = run_dir / "log" / "wave-trader.log"
    wait_for(lambda: proc.poll() is not None or (log.exists() and "wave-trader starting" in log.read_text()),
             timeout=90, what="the first trader to start")
    assert proc.poll() is None, (run_dir / "run.out").read_text()


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def second_is_refused(tmp_path: Path, db_url: str | None, first: subprocess.Popen) -> str:
    other = tmp_path / "other-run-dir"
    second = start(other, db_url)
    try:
        rc = second.wait(timeout=90)
    finally:
        stop(second)
    said = (other / "run.out").read_text()
    assert rc == 4, said
    assert f"pid {first.pid}" in said or f"pid={first.pid}" in said, said
    assert socket.gethostname() in said and "since" in said, said
    return said


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_second_trader_on_one_database_exits_4_naming_the_first(tmp_path, backend, request):
    db_url = (f"sqlite:///{tmp_path / 'shared.db'}" if backend == "sqlite"
              else request.getfixturevalue("pg_cluster").create_database())
    first_dir = tmp_path / "first"
    first = start(first_dir, db_url)
    try:
        wait_started(first, first_dir)
        said = second_is_refused(tmp_path, db_url, first)
        if backend == "sqlite":
            assert str(first_dir) in said  # the owner's run_dir, from the lock file
        # kill -9: the kernel (SQLite) or the server (PostgreSQL) drops the lease with the process
        stop(first)
        third_dir = tmp_path / "third"
        third = start(third_dir, db_url)
        try:
            wait_started(third, third_dir)
        finally:
            stop(third)
    finally:
        stop(first)


def test_two_runs_with_two_databases_never_share_one_paper_account(tmp_path):
    paper = tmp_path / "shared-paper.db"
    first_dir = tmp_path / "first"
    first = start(first_dir, None, f"paper.state_file='{paper}'")
    try:
        wait_started(first, first_dir)
        other = tmp_path / "other-run-dir"
        second = start(other, None, f"paper.state_file='{paper}'")
        try:
            rc = second.wait(timeout=90)
        finally:
            stop(second)
        said = (other / "run.out").read_text()
        assert rc == 4 and f"the paper account {paper}" in said and f"pid {first.pid}" in said, said
    finally:
        stop(first)


def test_everything_a_run_writes_is_under_its_run_dir(tmp_path):
    """Two run_dirs and no database.url: two databases, two logs, two paper accounts, both run."""
    a, b = tmp_path / "a", tmp_path / "b"
    pa, pb = start(a, None), start(b, None)
    try:
        wait_started(pa, a)
        wait_started(pb, b)
        for d in (a, b):
            for name in ("wave-trader.db", "wave-trader.db.owner", "log/wave-trader.log", "paper-venue.db",
                         "control.sock"):
                wait_for(lambda: (d / name).exists(), timeout=30, what=f"{d / name}")
            assert stat.S_IMODE(os.lstat(d / "wave-trader.db.owner").st_mode) == 0o600
    finally:
        stop(pa)
        stop(pb)


def test_the_sqlite_lock_file_is_never_followed_through_a_link(tmp_path):
    target = tmp_path / "precious"
    target.write_text("root's file\n")
    (tmp_path / "t.db.owner").symlink_to(target)
    with pytest.raises(LeaseHeld, match="symbolic link"):
        acquire(f"sqlite:///{tmp_path / 't.db'}", run_dir=str(tmp_path))
    assert target.read_text() == "root's file\n"


def test_losing_the_postgresql_lease_halts_trading(start_service, pg_cluster):
    """The lease session is terminated (a server restart, an administrator): trading stops —
    health critical, every position fenced, nothing new starts — and the resting stops stay."""
    url = pg_cluster.create_database()
    svc = start_service("database.lease_check_s=0.1", "risk.max_positions_per_wave=1", db_url=url)
    svc.submit(wave("w1", (SYM["BTC"], "long", 0.9)), "t")
    wait_for(lambda: svc.stats.waves, what="first wave")
    resting = {o.cid for o in svc.gateway.engine.open_orders()}
    assert resting
    with pg_cluster.admin() as conn:
        n = conn.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                         "WHERE application_name LIKE %s", (f"wave-trader pid={os.getpid()} %",)).fetchone()[0]
    assert n == 1
    wait_for(lambda: svc.halted, timeout=10, what="trading halted after the lease was lost")
    health = svc_health(svc)
    assert any("lease lost" in r for r in health), health
    assert svc.supervisor.halted and svc.ctx.halted.is_set()  # protect-only: no entry leaves
    svc.submit(wave("w2", (SYM["ETH"], "long", 0.9)), "t")
    assert {o.cid for o in svc.gateway.engine.open_orders()} == resting  # stops stay, nothing new
    assert [p.symbol for p in svc.gateway.engine.positions()] == [SYM["BTC"]]


def test_a_run_whose_lease_is_lost_exits_6_saying_so(tmp_path):
    """`run --waves N` cannot complete its waves once halted: it ends, non-zero, and says why."""
    run_dir = tmp_path / "run"
    proc = start(run_dir, None, "database.lease_check_s=0.1", args=("--waves", "3"))
    try:
        wait_started(proc, run_dir)
        (run_dir / "wave-trader.db.owner").unlink()
        rc = proc.wait(timeout=60)
    finally:
        stop(proc)
    said = (run_dir / "run.out").read_text()
    assert rc == 6, said
    assert "database lease lost" in said and "removed or replaced" in said, said


def svc_health(svc) -> list[str]:
    from service.health import HealthMonitor
    from service.metrics import Metrics

    h = HealthMonitor(svc, svc.cfg.health, Metrics(), svc.cfg.supervisor.restart_window_s).report()
    assert h.status == "critical"
    return h.reasons


def test_a_removed_sqlite_lock_file_halts_trading(start_service, tmp_path):
    """Once the lock file is gone, a second process could lock a new one: this one stops."""
    svc = start_service("database.lease_check_s=0.1")
    (tmp_path / "test.db.owner").unlink()
    wait_for(lambda: svc.halted, timeout=10, what="trading halted after the lock file was removed")
    assert "removed or replaced" in svc.halted and svc.supervisor.halted
    assert any("lease lost" in r for r in svc_health(svc))


def test_one_database_file_has_one_lock_however_its_path_is_spelled(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "data")
    first = acquire(f"sqlite:///{tmp_path / 'data' / 'w.db'}", run_dir=str(tmp_path))
    try:
        with pytest.raises(LeaseHeld, match=f"pid {os.getpid()}"):
            acquire(f"sqlite:///{tmp_path / 'alias' / 'w.db'}", run_dir=str(tmp_path))
    finally:
        first.release()


def test_a_postgresql_owner_is_named_to_a_process_of_another_role(pg_cluster):
    """Of another role's sessions, pg_stat_activity shows little more than application_name:
    it carries the owner's pid, start and host."""
    url = pg_cluster.create_database()
    with pg_cluster.admin() as conn:
        conn.execute("DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'wt_other') "
                     "THEN CREATE ROLE wt_other LOGIN; END IF; END $$")
    first = acquire(url, run_dir="a")
    try:
        with pytest.raises(LeaseHeld) as refused:
            acquire(url.replace("postgres@", "wt_other@"), run_dir="b")
        said = str(refused.value)
        assert f"pid={os.getpid()}" in said and "since=" in said and socket.gethostname() in said, said
    finally:
        first.release()


def test_a_sqlite_uri_url_is_locked_beside_its_file(tmp_path, monkeypatch):
    """`sqlite:///file:PATH?uri=true` names PATH: the lock goes beside it, not into a `file:`
    directory under the working directory."""
    from persistence.lease import acquire

    monkeypatch.chdir(tmp_path)
    (tmp_path / "d").mkdir()
    lease = acquire(f"sqlite:///file:{tmp_path}/d/t.db?mode=ro&uri=true", run_dir=str(tmp_path))
    try:
        assert (tmp_path / "d" / "t.db.owner").is_file()
        assert not (tmp_path / "file:").exists()
    finally:
        lease.release()
    assert acquire("sqlite:///file:mem?mode=memory&uri=true", run_dir=str(tmp_path)).check(1) is None
