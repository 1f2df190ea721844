"""The one question every recovery test asks: do the database and the venue agree?"""
from __future__ import annotations

import time
from collections import Counter

from sqlalchemy import select

from core.position_types import Leg, leg_of, position_id_of
from exchange.paper.engine import PaperEngine
from persistence.db import Database
from persistence.models import PositionRow
from persistence.positions import OPEN_PHASES


def account_problems(db: Database, venue: PaperEngine) -> list[str]:
    """Everything on which our database and the venue disagree, worded for a failure message.

    Agreement means: each open position is held at the venue with its quantity and side, is
    past its entry, has its recorded stop resting at the venue at the recorded price (and its
    native trailing stop, once trailing), and has no other order of ours resting; the venue
    holds no position and no order of ours that no open position accounts for; and no entry
    was ever filled twice for one position.
    """
    problems: list[str] = []
    with db.tx("db_read") as tx:
        rows = list(tx.scalars(select(PositionRow).where(PositionRow.phase.in_(OPEN_PHASES))))
    venue_pos = {p.symbol: p for p in venue.positions()}
    resting = {o.cid: o for o in venue.open_orders()}
    for r in rows:
        tag = f"{r.symbol} ({r.id}, {r.phase}, epoch {r.epoch})"
        vp = venue_pos.pop(r.symbol, None)
        if r.phase in ("new", "entering"):
            problems.append(f"{tag}: still {r.phase} after recovery")
        if vp is None or abs(vp.qty) != r.qty or (vp.qty > 0) != (r.side == "long"):
            problems.append(f"{tag}: database holds {r.side} {r.qty}, venue holds {vp.qty if vp else 0}")
        stop = resting.get(r.stop_cid) if r.stop_cid else None
        if stop is None:
            problems.append(f"{tag}: stop {r.stop_cid} is not resting at the venue")
        elif stop.stop_price != r.stop_price:
            problems.append(f"{tag}: stop rests at {stop.stop_price}, database says {r.stop_price}")
        if r.phase == "trailing" and r.trailing_mode == "native" and r.trailing_cid not in resting:
            problems.append(f"{tag}: trailing stop {r.trailing_cid} is not resting at the venue")
        ours = {c for c in resting if position_id_of(c) == r.id}
        extra = ours - {r.stop_cid, r.trailing_cid}
        if extra:
            problems.append(f"{tag}: extra orders of this position resting: {sorted(extra)}")
    for sym, vp in venue_pos.items():
        problems.append(f"venue holds {vp.qty} {sym} that no open position accounts for")
    open_ids = {r.id for r in rows}
    taken_over = {c for r in rows for c in (r.stop_cid, r.trailing_cid) if c}  # adopted with its stop
    for cid in resting:
        pid = position_id_of(cid)
        if pid is not None and pid not in open_ids and cid not in taken_over:
            problems.append(f"order {cid} rests at the venue for a position that is not open")
    if venue.store is not None:
        entries = Counter(position_id_of(cid) for _s, cid, *_ in venue.store.trades()
                          if position_id_of(cid) and leg_of(cid) is Leg.ENTRY)
        problems += [f"position {pid}: {n} entry fills at the venue" for pid, n in entries.items() if n > 1]
    return problems


def wait_agreed(db: Database, venue: PaperEngine, timeout: float = 10.0) -> None:
    """Wait until the database and the venue agree (an actor may be between its fenced write
    and the venue call that follows it); fail listing the disagreements if they never do."""
    end = time.monotonic() + timeout
    while problems := account_problems(db, venue):
        if time.monotonic() > end:
            raise AssertionError("database and venue disagree:\n  " + "\n  ".join(problems))
        time.sleep(0.02)
