"""The incremental realized book always equals a full recount, whatever order positions close
(and commit) in, and whatever day boundary is asked for."""
from __future__ import annotations

import itertools
import tempfile
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from persistence.db import Database
from persistence.models import PositionRow
from persistence.schema import ensure_current
from persistence.trades import REREAD_S, RealizedBook, totals

_ids = itertools.count()
# a commit that waited may close up to REREAD_S "earlier" than one already read; never more
closes = st.lists(st.tuples(st.integers(0, int(REREAD_S) - 1), st.decimals(-50, 50, places=4)), max_size=8)


def _insert(db, batch) -> None:
    with db.tx("db_write") as tx:
        for ts, net in batch:
            pid = f"p{next(_ids)}"
            tx.add(PositionRow(id=pid, signal_id=pid, wave_id="w", symbol="BTC/USDT:USDT", side="long",
                               phase="closed", epoch=1, seq=1, qty=Decimal(1), entry_price=Decimal(100),
                               exit_price=Decimal(100) + net, stop_loss_pct=2, activation_pct=1, callback_pct=1,
                               trailing_mode="native", notional=100, opened_ts=1000.0, updated_ts=1000.0,
                               closed_ts=1000.0 + ts, gross_pnl=net, fees=Decimal("0.1"), net_pnl=net - Decimal("0.1")))


@settings(max_examples=25)
@given(batches=st.lists(closes, min_size=1, max_size=5), since=st.integers(0, 130))
def test_incremental_totals_equal_a_recount(batches, since):
    with tempfile.TemporaryDirectory() as d:
        db = Database(f"sqlite:///{d}/t.db")
        ensure_current(db.engine, auto_create=True)
        book = RealizedBook(db)
        for batch in batches:  # later batches may close "earlier" (a commit that waited)
            _insert(db, batch)
            assert book.totals() == totals(db)
            assert book.totals(1000.0 + since) == totals(db, 1000.0 + since)
        db.dispose()
