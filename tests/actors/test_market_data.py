"""Coalesced price delivery: latest price wins, at most one pending tick per actor."""
from __future__ import annotations

from decimal import Decimal

from actors.market_data import MarketData
from actors.messages import TICK, GetState
from core.faults import FaultRule
from tests.support.helpers import SYM, wait_for, wave


class CountingRef:
    def __init__(self):
        self.told = []

    def tell(self, msg):
        self.told.append(msg)


def test_a_burst_of_ticks_is_one_message_carrying_the_latest_price():
    md, ref = MarketData(), CountingRef()
    slot = md.subscribe("BTC", ref)
    for i in range(1000):
        md.on_tick("BTC", Decimal(60000 + i))
    assert ref.told == [TICK] and md.ticks_in == 1000 and md.messages_out == 1
    assert slot.take()[0] == Decimal(60999)
    md.on_tick("BTC", Decimal(1))  # consumed: the next tick sends a new message
    assert ref.told == [TICK, TICK]
    md.on_tick("ETH", Decimal(2))  # other symbols do not reach this actor
    assert len(ref.told) == 2


def test_unsubscribed_slots_get_nothing():
    md, a, b = MarketData(), CountingRef(), CountingRef()
    sa, _ = md.subscribe("BTC", a), md.subscribe("BTC", b)
    md.unsubscribe(sa)
    md.on_tick("BTC", Decimal(5))
    assert a.told == [] and b.told == [TICK]


def test_a_busy_actor_gets_the_latest_price_and_a_bounded_mailbox(start_service):
    """An actor stuck on one tick while 5,000 more arrive: one message waits for it, not
    5,000, and when it is free it acts on the latest price."""
    svc = start_service()
    svc.submit(wave("w", (SYM["BTC"], "long", 0.9)), "t")
    wait_for(lambda: svc.stats.waves, what="position")
    (handle,) = [h for k, h in svc.supervisor.children.items() if k != "coordinator"]
    svc.actor_faults.add(FaultRule("hang", op="tick", symbols=[SYM["BTC"]], times=1))
    tick = svc.markets[SYM["BTC"]].tick_size
    price = svc.gateway.engine.price(SYM["BTC"])
    svc.market_data.on_tick(SYM["BTC"], price)
    wait_for(lambda: handle.op_name and "hang" in handle.op_name, what="actor busy on its tick")
    out_before = svc.market_data.messages_out
    for i in range(1, 5001):
        svc.market_data.on_tick(SYM["BTC"], price + i * tick)
    assert svc.market_data.messages_out - out_before == 1
    assert handle.ref.actor_inbox.qsize() == 1
    svc.actor_faults.release()
    last = price + 5000 * tick
    wait_for(lambda: handle.ref.ask(GetState(), timeout=5).last_price == last, what="actor on the latest price")
    assert svc.supervisor.stats.restarts == 0
