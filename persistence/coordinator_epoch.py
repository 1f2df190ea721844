"""The coordinator singleton's epoch: how a replaced coordinator is fenced in the database.

A coordinator that overran its deadline cannot be stopped (its thread is blocked in a call
that may still return), so its successor first raises the epoch; every write a coordinator
makes (waves, signal outcomes, position rows) re-checks its own epoch in the same
transaction, and a stale one is refused with `Fenced`. The check is an UPDATE of the single
row, so on PostgreSQL it also serialises with the raise (a write in flight finishes first,
one that starts later sees the new epoch); SQLite has one writer anyway.
"""
from __future__ import annotations

import time
from typing import cast

from sqlalchemy import CursorResult, update
from sqlalchemy.orm import Session

from core.errors import Fenced
from persistence.db import Database
from persistence.models import CoordinatorRow

ROW = 1


def take(db: Database) -> int:
    """Raise the coordinator epoch (fencing every earlier coordinator); returns the new one."""
    with db.tx("coordinator_epoch") as tx:
        row = tx.get(CoordinatorRow, ROW, with_for_update=True)
        if row is None:
            row = CoordinatorRow(id=ROW, epoch=0, updated_ts=time.time())
            tx.add(row)
        row.epoch += 1
        row.updated_ts = time.time()
        return row.epoch


def check(tx: Session, epoch: int | None) -> None:
    """Inside a coordinator's write: refuse it unless `epoch` is still the current one.
    None means the write is not a coordinator's (tests, tools): nothing to check."""
    if epoch is None:
        return
    res = cast(CursorResult, tx.execute(update(CoordinatorRow).where(CoordinatorRow.id == ROW, CoordinatorRow.epoch == epoch)
                     .values(epoch=epoch)))
    if res.rowcount != 1:
        raise Fenced(f"coordinator epoch {epoch} is no longer current: a newer coordinator took over")
