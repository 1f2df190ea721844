"""`set` says what moved at the venue and what did not: a looser stop-loss leaves the resting
stop where it is (a stop only tightens), and the reply says so."""
from __future__ import annotations

from decimal import Decimal

from sqlalchemy import select

from core import trailing as tr
from persistence.models import PositionRow
from tests.support.control_support import open_positions
from tests.support.helpers import SYM


def _row(svc, sym):
    with svc.db.tx("db_read") as tx:
        return tx.scalars(select(PositionRow).where(PositionRow.symbol == sym)).one()


def test_a_looser_stop_loss_is_reported_unchanged_at_the_venue_and_a_tighter_one_moved(control_service):
    svc, plane, client = control_service()
    btc = SYM["BTC"]
    open_positions(svc, "w1", (btc, "long", 0.9))
    before = _row(svc, btc)
    reply = client.call("set", param="stop-loss", value="5", symbol="BTC")
    looser = tr.initial_stop(before.entry_price, tr.Side.LONG, Decimal(5), svc.markets[btc])
    assert reply.message == (f"{btc}: stop-loss set to 5%; unchanged at the venue: stop-loss stays at "
                             f"{before.stop_price} (5% from entry is {looser}; a stop only tightens)")
    resting = {o.cid: o for o in svc.gateway.engine.open_orders(btc)}
    assert resting[before.stop_cid].stop_price == before.stop_price

    reply = client.call("set", param="stop-loss", value="1")  # the default, for every open position
    after = _row(svc, btc)
    assert after.stop_price > before.stop_price
    assert reply.message.endswith("at the venue 1 of 1 open positions changed")
    assert reply.targets[0].result == f"moved: stop-loss {before.stop_price} -> {after.stop_price} at the venue"
    assert {o.stop_price for o in svc.gateway.engine.open_orders(btc) if o.cid == after.stop_cid} == {after.stop_price}
