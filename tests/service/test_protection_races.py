"""Races between our orders and the market, against real actors and the real paper venue."""
from __future__ import annotations

from decimal import Decimal

from sqlalchemy import select

from core.position_types import Leg
from persistence.models import OrderRow, PositionRow
from service.invariants import check_invariants, settle
from tests.support.helpers import SYM, wait_for, wave

BTC = SYM["BTC"]


class FireOldStopOnCancel:
    """Moves the market through the old stop just before we cancel it, as a real venue
    may do between our placing its successor and our cancel arriving (once armed)."""

    def __init__(self, inner):
        self.inner, self.fired, self.armed = inner, False, False

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def cancel_order(self, symbol, cid, timeout):
        o = self.inner.engine.fetch(cid)
        if self.armed and not self.fired and o.leg is Leg.STOP and o.status == "open":
            self.fired = True
            self.inner.engine.set_price(symbol, o.stop_price - 10 * self.inner.engine.markets[symbol].tick_size)
        return self.inner.cancel_order(symbol, cid, timeout)


def test_old_stop_firing_during_a_replacement_closes_the_position(start_service):
    svc = start_service("protection.trailing_mode=emulated", "protection.trailing_activation_pct=0.5",
                        wrap_gateway=FireOldStopOnCancel)
    gw = svc.ctx.gateway
    svc.submit(wave("w", (BTC, "long", .9)), "t")
    wait_for(lambda: svc.stats.waves, what="position")
    gw.armed = True
    up = svc.gateway.engine.price(BTC) * Decimal("1.01")
    svc.gateway.engine.set_price(BTC, up)
    svc.market_data.on_tick(BTC, up)  # activation: a tighter stop replaces the first one
    wait_for(lambda: gw.fired, what="the replacement's cancel")
    wait_for(lambda: _phase(svc) == "closed", what="position closed")
    assert settle(svc)  # the row is closed before the new stop's cancel is written: let that land
    with svc.db.tx("db_read") as tx:
        stops = sorted(tx.scalars(select(OrderRow.status).where(OrderRow.leg == "s")))
    assert stops in (["cancelled", "filled"], ["expired", "filled"]), stops
    assert svc.gateway.engine.positions() == [] and svc.gateway.engine.open_orders(BTC) == []
    assert not check_invariants(svc)


def _phase(svc):
    with svc.db.tx("db_read") as tx:
        return tx.scalars(select(PositionRow.phase)).one()


def test_a_stop_removed_at_the_venue_behind_our_back_is_replaced(start_service):
    svc = start_service()
    svc.submit(wave("w", (BTC, "long", .9)), "t")
    wait_for(lambda: svc.stats.waves, what="position")
    with svc.db.tx("db_read") as tx:
        p = tx.scalars(select(PositionRow)).one()
    svc.gateway.engine.cancel(p.stop_cid)  # an operator on the venue's website, say
    from exchange.gateway import OrderState
    svc._route_order(OrderState(p.stop_cid, BTC, Leg.STOP, "cancelled"))  # the venue's update
    wait_for(lambda: _stop_cid(svc) not in (None, p.stop_cid), what="a new stop")
    resting = {o.cid for o in svc.gateway.engine.open_orders(BTC)}
    assert _stop_cid(svc) in resting
    assert settle(svc) and not check_invariants(svc)


def _stop_cid(svc):
    with svc.db.tx("db_read") as tx:
        return tx.scalars(select(PositionRow.stop_cid)).one()
