"""Where each injected venue fault happens relative to the fence and to the venue's action, on
the paper venue behind `FaultyGateway` (the same decorator wraps the ccxt venues)."""
from __future__ import annotations

import threading
import time
from decimal import Decimal

import pytest

from core.errors import Fenced
from core.faults import FaultPlan, FaultRule
from core.position_types import Leg
from exchange.faulty import FaultyGateway, unwrap
from exchange.gateway import OrderRequest, UnknownOutcome, fence_scope
from exchange.paper.engine import PaperEngine
from exchange.paper.gateway import PaperGateway
from exchange.paper.universe import paper_markets, start_prices
from tests.support.helpers import wait_for

BTC = "BTC/USDT:USDT"


@pytest.fixture
def gw():
    engine = PaperEngine(paper_markets(), start_prices(), seed=1, slippage_bps=Decimal(0))
    plan = FaultPlan(seed=5)
    g = FaultyGateway(PaperGateway(engine, tick_interval_s=0), plan)
    yield g
    plan.release()
    g.close()


def entry(cid="wt-p1-e1-1"):
    return OrderRequest(cid, BTC, Leg.ENTRY, "buy", Decimal("0.010"))


class Epoch:
    """A fence that refuses once `replaced` is set, as a replaced actor's would."""

    def __init__(self) -> None:
        self.replaced = False

    def __call__(self) -> None:
        if self.replaced:
            raise Fenced("replaced")


def test_a_hung_write_is_fenced_when_it_wakes_after_its_actor_was_replaced(gw):
    hang = FaultRule("hang", op="place_order", times=1)
    gw.plan.add(hang)
    epoch, result = Epoch(), []

    def send():
        with fence_scope(epoch):
            try:
                gw.place_order(entry(), 2)
            except Fenced as e:
                result.append(e)

    t = threading.Thread(target=send)
    t.start()
    wait_for(lambda: hang.fired, timeout=5, what="the write hung")
    epoch.replaced = True
    gw.plan.release()
    t.join(5)
    assert result and gw.engine.positions() == []  # stuck before it left: nothing reached the venue


def test_a_late_write_already_left_so_its_fence_does_not_stop_it(gw):
    gw.plan.add(FaultRule("latency", op="place_order", times=1, latency_ms=300))
    epoch = Epoch()
    threading.Timer(0.1, lambda: setattr(epoch, "replaced", True)).start()
    with fence_scope(epoch):
        assert gw.place_order(entry(), 2).status == "filled"  # in transit when the actor was replaced
    with fence_scope(epoch), pytest.raises(Fenced):
        gw.place_order(entry("wt-p1-e1-2"), 2)  # the fence still holds for the next one


def test_latency_past_the_timeout_reaches_the_venue_and_loses_the_answer(gw):
    gw.plan.add(FaultRule("latency", op="place_order", times=1, latency_ms=5000))
    started = time.monotonic()
    with pytest.raises(UnknownOutcome, match="RequestTimeout after 0.2s"):
        gw.place_order(entry(), 0.2)
    assert time.monotonic() - started < 1.0  # the caller waited its timeout, not the latency
    assert [p.qty for p in gw.engine.positions()] == [Decimal("0.010")]


def test_timeout_lost_checks_the_fence_and_never_reaches_the_venue(gw):
    gw.plan.add(FaultRule("timeout_lost", op="place_order"))
    epoch = Epoch()
    with fence_scope(epoch), pytest.raises(UnknownOutcome):
        gw.place_order(entry(), 1)
    epoch.replaced = True
    with fence_scope(epoch), pytest.raises(Fenced):
        gw.place_order(entry("wt-p1-e1-2"), 1)
    assert gw.engine.positions() == []


def test_the_decorator_reads_through_to_the_venue(gw):
    assert unwrap(gw) is gw.inner and gw.engine is gw.inner.engine
    assert gw.entry_modes == gw.inner.entry_modes and gw.name == "paper"
    assert gw.protection_gaps() == []
