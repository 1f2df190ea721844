"""The invariant checker judges protection from the venue's orders, not only from our records:
a native trailing stop re-placed looser than the one it replaced, and a 'stop' of ours at the
venue that would not close the position, are violations."""
from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from sqlalchemy import select

from actors.messages import Control, GetState
from core.position_types import Leg, OrderIntent, SetParams
from exchange.gateway import OrderRequest
from persistence.models import PositionRow
from persistence.positions import OrderFate
from service.invariants import check_invariants
from tests.support.helpers import SYM, wait_for, wave

BTC = SYM["BTC"]


def _row(svc, symbol=BTC):
    with svc.db.tx("db_read") as tx:
        return tx.scalars(select(PositionRow).where(PositionRow.symbol == symbol)).one()


def _armed_then_pulled_back(svc):
    """Open BTC long (native trailing); the venue's order arms at +3 % and keeps that best."""
    svc.submit(wave("w", (BTC, "long", .9)), "t")
    wait_for(lambda: svc.stats.waves, what="wave")
    row, eng, spec = _row(svc), svc.gateway.engine, svc.markets[BTC]
    for move in ("1.03", "1.027"):  # the trigger from the best is ~+2.485 %: not fired
        eng.set_price(BTC, spec.nearest_price(row.entry_price * Decimal(move)))
    assert eng.fetch(row.trailing_cid).activated
    return row


def test_a_trailing_stop_re_placed_looser_at_the_venue_is_a_violation(start_service):
    svc = start_service()
    row = _armed_then_pulled_back(svc)
    assert not check_invariants(svc)
    # a parameter change done naively: the same order placed again, which loses the best so far
    # (the venue refuses an activation already reached, so it arms at today's price)
    s = svc.positions.load(row.id, svc.defaults)
    s = replace(s, seq=s.seq + 1)
    cid = s.cid(Leg.TRAILING)
    intent = OrderIntent(cid, Leg.TRAILING, "sell", row.qty, callback_pct=row.callback_pct)
    svc.positions.commit_step(replace(s, trailing_cid=cid), intents=[intent],
                              fates=[OrderFate(row.trailing_cid, "cancelled"), OrderFate(cid, "open")])
    svc.gateway.place_order(OrderRequest(cid, BTC, Leg.TRAILING, "sell", row.qty, None, None,
                                         row.callback_pct), timeout=2)
    svc.gateway.cancel_order(BTC, row.trailing_cid, timeout=2)
    found = [str(v) for v in check_invariants(svc)]
    assert any(v.startswith("invariant 1") and "loosened at the venue" in v for v in found), found


def test_a_changed_callback_keeps_the_venue_trigger(start_service):
    svc = start_service()
    row = _armed_then_pulled_back(svc)
    ref = svc.supervisor.children[row.id].ref
    before = svc.gateway.engine.fetch(row.trailing_cid).trailing_trigger()
    for cb in ("0.5", "0.45", "1.0"):  # the same, tighter (but not tighter at this price), looser
        ref.tell(Control(SetParams(callback_pct=Decimal(cb))))
    ref.ask(GetState(), timeout=5)
    resting = [o for o in svc.gateway.engine.open_orders(BTC) if o.leg is Leg.TRAILING]
    assert [o.cid for o in resting] == [row.trailing_cid]
    assert resting[0].trailing_trigger() == before
    assert not check_invariants(svc)


def test_a_stop_that_would_not_close_the_position_is_a_violation(start_service):
    svc = start_service()
    svc.submit(wave("w", (BTC, "long", .9)), "t")
    wait_for(lambda: svc.stats.waves, what="wave")
    row, eng = _row(svc), svc.gateway.engine
    eng.cancel(row.stop_cid)
    above = svc.markets[BTC].nearest_price(eng.price(BTC) * Decimal("1.05"))
    eng.place(OrderRequest(row.stop_cid, BTC, Leg.STOP, "buy", row.qty, above))  # it would add, not close
    found = [str(v) for v in check_invariants(svc)]
    assert any(v.startswith("invariant 4") and "would close" in v for v in found), found


def test_a_close_position_stop_protects_whatever_the_symbol_holds():
    """A close-all stop (stop-first entries) carries no quantity, yet closes the whole position
    on its side: the venue's truth counts it as the stop; one on the wrong side does not."""
    from exchange.gateway import OrderState, VenuePosition
    from service.venue_truth import assess

    held = [VenuePosition(SYM["BTC"], Decimal("0.003"), Decimal("64000"))]
    stop = OrderState("wt-p1-s1-1", SYM["BTC"], Leg.STOP, "open", stop_price=Decimal("62700"), side="sell",
                      qty=Decimal(0), reduce_only=True, close_position=True)
    assert assess(held, [stop])[SYM["BTC"]].stop == stop
    assert not assess(held, [replace(stop, side="buy")])[SYM["BTC"]].protected
    assert not assess(held, [replace(stop, close_position=False)])[SYM["BTC"]].protected
