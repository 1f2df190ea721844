"""Waves and signals: each signal gets exactly one outcome, enforced by the database.

A store bound to a coordinator epoch (`fenced`) checks that epoch in every write's own
transaction: a coordinator that was replaced can no longer record anything."""
from __future__ import annotations

import time
import uuid
from collections import Counter
from contextlib import contextmanager
from typing import Iterator, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.position_types import Outcome
from persistence import coordinator_epoch
from persistence.db import Database
from persistence.models import EventRow, SignalRow, WaveRow
from signals.wave import Wave


def _add_signals(tx: Session, wave: Wave, known: set[str], now: float, not_taken: str | None = None) -> None:
    """A row per new signal: an invalid one rejected with its reason; a valid one pending, or
    skipped with `not_taken` when the wave is recorded without being opened."""
    for s in wave.signals:
        if s.id in known:
            continue
        outcome = Outcome.REJECTED if s.reason else Outcome.SKIPPED if not_taken else None
        tx.add(SignalRow(
            id=s.id, wave_id=wave.id, symbol=s.symbol, side=s.side.value if s.side else "?",
            score=s.score, rank=s.rank, outcome=outcome.value if outcome else None,
            reason=s.reason or (not_taken if outcome else None), decided_ts=now if outcome else None))


class WaveStore:
    def __init__(self, db: Database, epoch: int | None = None):
        self.db = db
        self.epoch = epoch  # the coordinator epoch every write checks; None: unfenced

    def fenced(self, epoch: int) -> "WaveStore":
        return WaveStore(self.db, epoch)

    @contextmanager
    def _write(self) -> Iterator[Session]:
        with self.db.tx("db_write") as tx:
            coordinator_epoch.check(tx, self.epoch)
            yield tx

    def insert(self, wave: Wave, deadline_s: float, *, queued: bool = False) -> list[str]:
        """Store a wave and its signals (status `queued` when it must wait in the inbox);
        returns ids of signals already known (duplicates). A wave id seen before is a
        redelivery: nothing is stored but an event saying so."""
        now = time.time()
        with self._write() as tx:
            ids = [s.id for s in wave.signals]
            if tx.get(WaveRow, wave.id) is not None:
                known = set(tx.scalars(select(SignalRow.id).where(SignalRow.id.in_(ids))).all())
                tx.add(EventRow(ts=now, kind="wave_duplicate", wave_id=wave.id, data={
                    "source": wave.source[:200], "signals": len(ids),
                    "reason": "wave id already received; redelivery ignored" if known >= set(ids)
                    else f"wave id already received; {len(set(ids) - known)} new signal ids ignored"}))
                return ids
            known = set(tx.scalars(select(SignalRow.id).where(SignalRow.id.in_(ids))).all())
            redelivered = known >= set(ids)  # nothing new in it: complete on arrival, never left open
            tx.add(WaveRow(id=wave.id, source=wave.source[:200], received_ts=wave.received_at,
                           deadline_ts=wave.received_at + deadline_s,
                           status="complete" if redelivered else "queued" if queued else "open",
                           completed_ts=now if redelivered else None,
                           reason="every signal id was received before; nothing to open" if redelivered else None,
                           n_signals=len(wave.signals) - len(known)))
            tx.flush()
            _add_signals(tx, wave, known, now)
            tx.add(EventRow(ts=now, kind="wave_received", wave_id=wave.id,
                            data={"signals": len(wave.signals), "duplicates": sorted(known), "ts": wave.ts,
                                  "rejected": sum(1 for s in wave.signals if s.reason)}))
        return sorted(known)

    def known(self, wave_id: str) -> bool:
        """Whether a wave with this id was already received (a replay after a restart)."""
        with self.db.tx("db_read") as tx:
            return tx.get(WaveRow, wave_id) is not None

    def insert_rejected(self, wave_id: str | None, reason: str, source: str) -> str:
        """A message that is not a usable wave at all: recorded, never silently dropped."""
        now = time.time()
        wid = (wave_id or f"rejected-{uuid.uuid4().hex[:12]}")[:48]
        with self.db.tx("db_write") as tx:
            if tx.get(WaveRow, wid) is not None:
                wid = f"{wid}-rejected-{uuid.uuid4().hex[:6]}"
            tx.add(WaveRow(id=wid, source=source[:200], received_ts=now, deadline_ts=now,
                           completed_ts=now, status="rejected", reason=reason, n_signals=0))
            tx.add(EventRow(ts=now, kind="wave_rejected", wave_id=wid, data={"reason": reason}))
        return wid

    def insert_not_taken(self, wave: Wave, reason: str) -> bool:
        """A wave the coordinator could not take: recorded complete, every new signal with an
        outcome (skipped with `reason`, or rejected with its own). False if the wave id is
        already known: the coordinator did take it after all, and its record stands."""
        now = time.time()
        try:
            with self.db.tx("db_write") as tx:
                if tx.get(WaveRow, wave.id) is not None:
                    return False
                ids = [s.id for s in wave.signals]
                known = set(tx.scalars(select(SignalRow.id).where(SignalRow.id.in_(ids))).all())
                tx.add(WaveRow(id=wave.id, source=wave.source[:200], received_ts=wave.received_at,
                               deadline_ts=now, completed_ts=now, status="complete", reason=reason,
                               n_signals=len(set(ids) - known)))
                tx.flush()
                _add_signals(tx, wave, known, now, not_taken=f"not taken: {reason}")
                tx.add(EventRow(ts=now, kind="wave_not_taken", wave_id=wave.id, data={"reason": reason}))
        except IntegrityError:  # the coordinator inserted it in between
            return False
        return True

    def set_outcome(self, signal_id: str, outcome: Outcome, reason: str,
                    position_id: str | None = None) -> bool:
        """Give a signal its final outcome; False if it already had one (exactly once). The
        position the signal points at is kept when none is given: a decision never erases it."""
        values = {"outcome": outcome.value, "reason": reason, "decided_ts": time.time()}
        if position_id is not None:
            values["position_id"] = position_id
        with self._write() as tx:
            res = cast(CursorResult, tx.execute(update(SignalRow)
                                                .where(SignalRow.id == signal_id, SignalRow.outcome.is_(None))
                                                .values(**values)))
            return res.rowcount == 1

    def outcomes(self, wave_id: str) -> Counter:
        with self.db.tx("db_read") as tx:
            rows = tx.scalars(select(SignalRow.outcome).where(SignalRow.wave_id == wave_id)).all()
        return Counter(r or "pending" for r in rows)

    def complete(self, wave_id: str, reason: str | None = None) -> None:
        values = {"status": "complete", "completed_ts": time.time()}
        if reason is not None:
            values["reason"] = reason
        with self._write() as tx:
            tx.execute(update(WaveRow).where(WaveRow.id == wave_id, WaveRow.status.in_(("open", "queued")))
                       .values(**values))

    def admit(self, wave_id: str) -> None:
        """A queued wave's turn has come: it is open from now on."""
        with self._write() as tx:
            tx.execute(update(WaveRow).where(WaveRow.id == wave_id, WaveRow.status == "queued")
                       .values(status="open"))

    def statuses(self, wave_ids: list[str]) -> dict[str, tuple[str, float]]:
        """wave id -> (status, received_ts): what a restarted coordinator needs to re-queue."""
        if not wave_ids:
            return {}
        with self.db.tx("db_read") as tx:
            rows = tx.execute(select(WaveRow.id, WaveRow.status, WaveRow.received_ts)
                              .where(WaveRow.id.in_(wave_ids))).all()
        return {wid: (status, ts) for wid, status, ts in rows}

    def pending_signals(self) -> list[SignalRow]:
        """Signals without an outcome, oldest wave first: what a restart must finish."""
        with self.db.tx("db_read") as tx:
            return list(tx.scalars(select(SignalRow).join(WaveRow, WaveRow.id == SignalRow.wave_id)
                                   .where(SignalRow.outcome.is_(None))
                                   .order_by(WaveRow.received_ts, SignalRow.rank)).all())

    def open_waves(self, *, queued: bool = False) -> list[WaveRow]:
        """Waves still open (and, with `queued`, those waiting in the inbox), oldest first."""
        statuses = ("open", "queued") if queued else ("open",)
        with self.db.tx("db_read") as tx:
            return list(tx.scalars(select(WaveRow).where(WaveRow.status.in_(statuses))
                                   .order_by(WaveRow.received_ts)).all())
