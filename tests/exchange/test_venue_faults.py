"""`[[faults.venue]]` on every venue: the fault decorator around the real ccxt gateway, against
the local Binance and Bybit fakes — a fault before the request leaves reaches nothing, one after
the venue acted leaves the order there, and an injected 502 on a stop is retried to protection."""
from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import select

from core.faults import FaultPlan, FaultRule, InjectedCrash
from core.position_types import Leg
from exchange.faulty import FaultyGateway, unwrap
from exchange.gateway import OrderRequest, Rejected, Retryable, UnknownOutcome
from persistence.models import OrderRow, PositionRow
from tests.support.ccxt_helpers import gateway, keyed_fake, venue_overrides
from tests.support.helpers import SYM, wait_for, wave

BTC = SYM["BTC"]


@pytest.fixture(params=["binanceusdm", "bybit"])
def venue(request, monkeypatch):
    with keyed_fake(request.param, monkeypatch) as v:
        yield v


@pytest.fixture
def faulty(venue):
    plan = FaultPlan(seed=3)
    g = FaultyGateway(gateway(venue.url, name=venue.name), plan)
    yield g, plan
    plan.release()
    g.close()


def entry(cid="wt-p1-e1-1"):
    return OrderRequest(cid, BTC, Leg.ENTRY, "buy", Decimal("0.003"))


def stop(cid="wt-p1-s1-2"):
    return OrderRequest(cid, BTC, Leg.STOP, "sell", Decimal("0.003"), stop_price=Decimal("63700.0"))


def test_a_fault_before_the_request_leaves_reaches_nothing(faulty, venue):
    g, plan = faulty
    assert g.place_order(entry(), 2).status == "filled"
    plan.add(FaultRule("unavailable", op="place_order", leg="stop", times=1))
    with pytest.raises(UnknownOutcome, match="502"):
        g.place_order(stop(), 2)
    assert venue.engine.open_orders(BTC) == []  # the 502 came before the venue saw it
    plan.add(FaultRule("invalid", op="place_order", leg="stop", times=1))
    with pytest.raises(Rejected):
        g.place_order(stop("wt-p1-s1-3"), 2)
    plan.add(FaultRule("timeout_lost", op="place_order", times=1))
    with pytest.raises(UnknownOutcome, match="RequestTimeout"):
        g.place_order(stop("wt-p1-s1-4"), 2)
    plan.add(FaultRule("crash", op="positions", times=1))
    with pytest.raises(InjectedCrash):
        g.positions(2)
    assert venue.engine.open_orders(BTC) == []
    assert [r.fired for r in plan.rules] == [1, 1, 1, 1]
    assert g.place_order(stop("wt-p1-s1-5"), 2).status == "open"  # the rules are used up


def test_a_fault_after_the_venue_acted_leaves_the_order_there(faulty, venue):
    g, plan = faulty
    g.place_order(entry(), 2)
    plan.add(FaultRule("timeout_accepted", op="place_order", leg="stop", times=1))
    with pytest.raises(UnknownOutcome, match="RequestTimeout"):
        g.place_order(stop(), 2)
    assert [o.cid for o in venue.engine.open_orders(BTC)] == ["wt-p1-s1-2"]  # placed; answer lost
    assert g.fetch_order(BTC, "wt-p1-s1-2", 2).status == "open"  # found by its client id
    plan.add(FaultRule("slow_reply", op="cancel_order", times=1, latency_ms=5000))
    with pytest.raises(UnknownOutcome, match="reply lost"):
        g.cancel_order(BTC, "wt-p1-s1-2", 1)
    assert venue.engine.open_orders(BTC) == []  # the venue cancelled it at once


def test_reads_fail_as_retryable_and_other_calls_pass_through(faulty, venue):
    g, plan = faulty
    plan.add(FaultRule("unavailable", op="open_orders", times=1))
    with pytest.raises(Retryable):
        g.open_orders(BTC, 2)
    assert g.open_orders(BTC, 2) == []
    assert g.name == venue.name and unwrap(g) is g.inner and g.feed is g.inner.feed


def test_an_injected_502_on_the_stop_is_retried_until_the_position_is_protected(start_service, venue):
    rule = '{kind="unavailable", op="place_order", leg="stop", times=1}'
    svc = start_service(*venue_overrides(venue.name, venue.url, "risk.max_positions_per_wave=1",
                                         f"faults.venue=[{rule}]"))
    svc.submit(wave("w1", (BTC, "long", 1.0)), "test")
    wait_for(lambda: svc.stats.waves, 30, "the wave")
    assert svc.stats.waves[0].outcomes == {"protected": 1}
    assert [r.fired for r in svc.venue_faults.rules] == [1]
    with svc.db.tx("db_read") as tx:
        (position,) = tx.scalars(select(PositionRow)).all()
        stops = [o.cid for o in tx.scalars(select(OrderRow).where(OrderRow.leg == Leg.STOP.value))]
    assert len(stops) >= 2 and position.stop_cid in stops  # the refused attempt, then the retry
    resting = [o.cid for o in venue.engine.open_orders(BTC) if o.leg is Leg.STOP]
    assert resting == [position.stop_cid]  # only the retry reached the venue
