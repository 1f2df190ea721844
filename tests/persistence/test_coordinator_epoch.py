"""The coordinator's fence in the database (persistence/coordinator_epoch.py): each takeover
raises the epoch, and a write checked under an older epoch is refused inside its own
transaction, so nothing of it is recorded."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from exchange.gateway import Fenced
from persistence import coordinator_epoch
from persistence.db import Database
from persistence.models import EventRow
from persistence.schema import upgrade


@pytest.fixture
def db(tmp_path):
    d = Database(f"sqlite:///{tmp_path / 'epoch.db'}", call_timeout_s=5)
    upgrade(d.engine)
    yield d
    d.dispose()


def _write_as(db: Database, epoch: int | None, kind: str) -> None:
    with db.tx("db_write") as tx:
        tx.add(EventRow(ts=0.0, kind=kind, data={}))
        tx.flush()
        coordinator_epoch.check(tx, epoch)


def _kinds(db: Database) -> list[str]:
    with db.tx("db_read") as tx:
        return list(tx.scalars(select(EventRow.kind).order_by(EventRow.id)))


def test_each_takeover_raises_the_epoch(db):
    assert [coordinator_epoch.take(db) for _ in range(3)] == [1, 2, 3]


def test_the_current_coordinator_writes_and_a_replaced_one_is_refused_with_nothing_recorded(db):
    first = coordinator_epoch.take(db)
    _write_as(db, first, "by-first")
    second = coordinator_epoch.take(db)
    with pytest.raises(Fenced, match=f"coordinator epoch {first} is no longer current"):
        _write_as(db, first, "late-by-first")
    _write_as(db, second, "by-second")
    assert _kinds(db) == ["by-first", "by-second"], "the refused write rolled back with its transaction"


def test_a_write_that_is_no_coordinators_is_not_fenced(db):
    coordinator_epoch.take(db)
    _write_as(db, None, "tool")
    assert _kinds(db) == ["tool"]
