"""Schema migrations on both backends: upgrade, downgrade, data kept, models and migrations in
step, `bin/trader db upgrade|current`, and a service that refuses a stale schema."""
from __future__ import annotations

import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from persistence.db import make_engine
from persistence.models import Base
from persistence.schema import (
    SchemaOutOfDate, current_revision, downgrade, ensure_current, head_revision, migration_engine,
    upgrade,
)
from trader.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_upgrade_from_empty_matches_the_models_and_downgrades_cleanly(db_url):
    engine = make_engine(db_url)
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == [], f"models and migrations disagree: {diff}"
    downgrade(engine, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    engine.dispose()


def test_upgrade_keeps_existing_rows_and_backfills_origin(db_url):
    engine = make_engine(db_url)
    upgrade(engine, "0001")
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO positions (id, signal_id, wave_id, symbol, active_symbol, side, phase, epoch, seq, "
            "qty, stop_loss_pct, activation_pct, callback_pct, trailing_mode, notional, reported, "
            "trailing_activated, needs_attention, opened_ts, updated_ts) VALUES ('p1', 's1', 'w1', "
            "'BTC/USDT:USDT', 'BTC/USDT:USDT', 'long', 'trailing', 3, 7, '0.003', '2', '1', '0.5', "
            "'native', '200', true, false, false, 1, 1)"))
    upgrade(engine)
    with engine.connect() as conn:
        row = conn.execute(text("SELECT epoch, qty, origin FROM positions WHERE id = 'p1'")).one()
    assert row.epoch == 3 and row.origin == "signal"
    assert Decimal(row.qty) == Decimal("0.003")
    engine.dispose()


def test_stale_schema_is_refused_with_the_command_that_fixes_it(db_url, tmp_path, capsys):
    engine = make_engine(db_url)
    upgrade(engine, "0001")
    with pytest.raises(SchemaOutOfDate, match=r"bin/trader db upgrade"):
        ensure_current(engine, auto_create=True)  # never upgraded silently, even when allowed

    args = [f"--set=database.url={db_url!s}", f"--set=run_dir={tmp_path!s}", "--set=log.file=''"]
    assert main(["db", "current", *args]) == 0
    assert f"current: 0001  head: {head_revision()}  (run: bin/trader db upgrade)" in capsys.readouterr().out
    assert main(["run", "--waves", "1", *args]) == 3
    assert main(["db", "upgrade", *args]) == 0
    assert f"schema upgraded: 0001 -> {head_revision()}" in capsys.readouterr().out
    assert main(["db", "current", *args]) == 0
    assert "(up to date)" in capsys.readouterr().out
    assert ensure_current(engine, auto_create=False) == "current"
    engine.dispose()


def test_a_database_with_tables_but_no_revision_is_not_touched(db_url):
    engine = make_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE positions (id VARCHAR(32) PRIMARY KEY)"))
    with pytest.raises(SchemaOutOfDate, match="no revision"):
        ensure_current(engine, auto_create=True)
    assert inspect(engine).get_table_names() == ["positions"]
    engine.dispose()


def test_bin_trader_run_exits_3_on_a_stale_postgresql_schema(pg_cluster, tmp_path):
    """The operator's path, as a real process: exit code 3 and a message naming the fix."""
    url = pg_cluster.create_database()
    engine = make_engine(url)
    upgrade(engine, "0001")
    engine.dispose()
    proc = subprocess.run(
        [sys.executable, "-m", "trader.cli", "run", "--waves", "1", "--set", f"database.url={url}",
         "--set", f"run_dir={tmp_path}", "--set", "log.file=''"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, env=os.environ | {"PYTHONPATH": str(ROOT)})
    assert proc.returncode == 3, proc.stderr
    assert "bin/trader db upgrade" in proc.stderr and "0001" in proc.stderr


def test_migrations_may_run_long_but_never_queue_on_a_lock(pg_cluster):
    """A migration statement may take minutes; a lock held by the running trader is not waited
    for longer than any trader call (half of deadlines.db_call_s)."""
    engine = migration_engine(pg_cluster.create_database(), call_timeout_s=2.0)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SHOW statement_timeout").scalar() == "10min"
        assert conn.exec_driver_sql("SHOW lock_timeout").scalar() == "1s"
    engine.dispose()
