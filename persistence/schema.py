"""Schema versions through Alembic: upgrade, report the current revision, refuse stale ones."""
from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.engine import Engine

MIGRATIONS = Path(__file__).parent / "migrations"


class SchemaOutOfDate(RuntimeError):
    """The database is behind the code; the message says which command fixes it."""


def _alembic_cfg(engine: Engine | None, connection=None) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


MIGRATION_STATEMENT_TIMEOUT_S = 600.0


def migration_engine(url: str, call_timeout_s: float) -> Engine:
    """For `bin/trader db`: a schema change may rewrite a large table, so one statement may
    run for minutes; but waiting for a lock a running trader holds gives up as fast as any
    call (a queued ACCESS EXCLUSIVE request would otherwise stall every position's writes)."""
    from persistence.db import make_engine

    return make_engine(url, call_timeout_s=call_timeout_s, pool_size=1,
                       statement_timeout_s=MIGRATION_STATEMENT_TIMEOUT_S)


def head_revision() -> str:
    head = ScriptDirectory.from_config(_alembic_cfg(None)).get_current_head()
    assert head is not None, "the migrations have no head revision"
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    with engine.begin() as conn:
        command.upgrade(_alembic_cfg(engine, conn), revision)


def downgrade(engine: Engine, revision: str) -> None:
    with engine.begin() as conn:
        command.downgrade(_alembic_cfg(engine, conn), revision)


def ensure_current(engine: Engine, *, auto_create: bool) -> str:
    """Create the schema on an empty database (if allowed); refuse any other mismatch."""
    current, head = current_revision(engine), head_revision()
    if current == head:
        return "current"
    if current is None and not inspect(engine).get_table_names() and auto_create:
        upgrade(engine)
        return "created"
    raise SchemaOutOfDate(
        f"database schema is at {current or 'no revision'} but this version needs {head}; "
        f"run `bin/trader db upgrade` (with the same --config/--set) and start again")
