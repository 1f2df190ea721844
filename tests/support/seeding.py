"""Seed a database and a paper venue file with many open, protected positions, as a previous
run would have left them: for recovery tests and the cold-start benchmark."""
from __future__ import annotations

import time
import uuid
from dataclasses import replace

from core import trailing as tr
from core.position_types import Leg, OrderIntent, Params, Phase, PositionState
from core.types import MarketSpec, Side
from exchange.gateway import OrderRequest
from exchange.paper.engine import PaperEngine
from persistence.db import Database
from persistence.models import OrderRow, PositionRow
from persistence.positions import _row_values


def seed_open_positions(db: Database, venue: PaperEngine, symbols: list[str], params: Params,
                        markets: dict[str, MarketSpec], *, missing_stop_every: int = 0) -> list[str]:
    """One long, trailing position per symbol: filled entry, resting stop and native trailing
    stop at the venue, rows with epoch 1 in the database. Every `missing_stop_every`-th
    position's stop is cancelled at the venue afterwards (recovery must re-place it)."""
    now, rows, orders, ids = time.time(), [], [], []
    for n, sym in enumerate(symbols, 1):
        spec, pid = markets[sym], uuid.uuid4().hex[:12]
        price = venue.price(sym)
        qty = spec.round_qty(params.notional / price)
        s = PositionState(id=pid, signal_id=f"seed-{pid}", wave_id="seed", symbol=sym,
                          side=Side.LONG, params=params, phase=Phase.TRAILING, seq=3)
        entry = venue.place(OrderRequest(s.cid(Leg.ENTRY), sym, Leg.ENTRY, "buy", qty)).avg_price
        stop = tr.initial_stop(entry, Side.LONG, params.stop_loss_pct, spec)
        trailing = tr.Trailing(tr.activation_price(entry, Side.LONG, params.activation_pct, spec),
                               params.callback_pct)
        intents = [OrderIntent(f"wt-{pid}-e1-1", Leg.ENTRY, "buy", qty),
                   OrderIntent(f"wt-{pid}-s1-2", Leg.STOP, "sell", qty, stop_price=stop),
                   OrderIntent(f"wt-{pid}-t1-3", Leg.TRAILING, "sell", qty,
                               activation=trailing.activation, callback_pct=params.callback_pct)]
        for i in intents[1:]:
            venue.place(OrderRequest(i.cid, sym, i.leg, i.side, i.qty, i.stop_price, i.activation,
                                     i.callback_pct))
        if missing_stop_every and n % missing_stop_every == 0:
            venue.cancel(intents[1].cid)
        s = replace(s, qty=qty, entry_price=entry, last_price=price, stop_price=stop,
                    stop_cid=intents[1].cid, trailing=trailing, trailing_cid=intents[2].cid, reported=True)
        rows.append(PositionRow(id=pid, signal_id=s.signal_id, wave_id=s.wave_id, symbol=sym,
                                side="long", epoch=1, notional=params.notional, opened_ts=now + n * 1e-6,
                                updated_ts=now, **_row_values(s)))
        for i in intents:
            orders.append(OrderRow(cid=i.cid, position_id=pid, epoch=1, symbol=sym, leg=i.leg.value,
                                   side=i.side, qty=i.qty, stop_price=i.stop_price, activation=i.activation,
                                   callback_pct=i.callback_pct, attempt=1,
                                   status="filled" if i.leg is Leg.ENTRY else "open",
                                   avg_price=entry if i.leg is Leg.ENTRY else None,
                                   created_ts=now, updated_ts=now))
        ids.append(pid)
    with db.tx("db_write") as tx:
        tx.add_all(rows)
        tx.flush()
        tx.add_all(orders)
    return ids
