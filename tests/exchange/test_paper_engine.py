"""The paper venue behaves like a USD-M venue where protection depends on it."""
from __future__ import annotations

from decimal import Decimal

import pytest

from core.position_types import Leg
from exchange.gateway import OrderNotFound, OrderRequest, Rejected
from exchange.paper.engine import PaperEngine
from exchange.paper.universe import paper_markets, start_prices

BTC = "BTC/USDT:USDT"


@pytest.fixture
def eng():
    e = PaperEngine(paper_markets(), start_prices(), seed=1, slippage_bps=Decimal(0))
    e.fills = []
    e.add_listener(e.fills.append)
    return e


def req(cid, leg, side, qty="0.010", **kw):
    return OrderRequest(cid, BTC, leg, side, Decimal(qty), **kw)


def test_reduce_only_stop_triggers_when_crossed_and_closes(eng):
    eng.place(req("e1", Leg.ENTRY, "buy"))
    eng.place(req("s1", Leg.STOP, "sell", stop_price=Decimal("64000.0")))
    eng.set_price(BTC, Decimal("64000.1"))
    assert eng.fetch("s1").status == "open"
    eng.set_price(BTC, Decimal("63990.0"))
    assert eng.fetch("s1").status == "filled" and eng.positions() == []
    assert [f.cid for f in eng.fills] == ["s1"]


def test_stop_on_the_wrong_side_is_refused_with_2021(eng):
    eng.place(req("e1", Leg.ENTRY, "buy"))
    with pytest.raises(Rejected, match="-2021"):
        eng.place(req("s1", Leg.STOP, "sell", stop_price=Decimal("66000.0")))


def test_native_trailing_waits_for_activation_then_follows_the_best(eng):
    eng.place(req("e1", Leg.ENTRY, "buy"))
    eng.place(req("t1", Leg.TRAILING, "sell", activation=Decimal("66000"), callback_pct=Decimal("1")))
    eng.set_price(BTC, Decimal("64000.0"))  # a 1.5 % dip before activation does nothing
    assert eng.fetch("t1").status == "open"
    for p in ("66000.0", "67000.0", "66400.0"):  # armed at 66000, best 67000, 66330 would fire
        eng.set_price(BTC, Decimal(p))
    assert eng.fetch("t1").status == "open"
    eng.set_price(BTC, Decimal("66320.0"))
    assert eng.fetch("t1").status == "filled" and eng.positions() == []


def test_duplicate_client_id_among_open_orders_is_refused(eng):
    eng.place(req("e1", Leg.ENTRY, "buy"))
    eng.place(req("s1", Leg.STOP, "sell", stop_price=Decimal("60000.0")))
    with pytest.raises(Rejected, match="-4116"):
        eng.place(req("s1", Leg.STOP, "sell", stop_price=Decimal("61000.0")))


def test_reduce_only_without_a_position_is_refused_and_a_resting_one_expires(eng):
    with pytest.raises(Rejected, match="-2022"):
        eng.place(req("x1", Leg.EXIT, "sell"))
    eng.place(req("e1", Leg.ENTRY, "buy"))
    eng.place(req("s1", Leg.STOP, "sell", stop_price=Decimal("60000.0")))
    eng.place(req("x2", Leg.EXIT, "sell"))  # closed at market: the stop has nothing to reduce
    eng.set_price(BTC, Decimal("59000.0"))
    assert eng.fetch("s1").status == "expired" and eng.positions() == []


def test_lookup_and_cancel_by_client_id(eng):
    with pytest.raises(OrderNotFound):
        eng.fetch("nope")
    with pytest.raises(OrderNotFound):
        eng.cancel("nope")
    eng.place(req("e1", Leg.ENTRY, "buy"))
    eng.place(req("s1", Leg.STOP, "sell", stop_price=Decimal("60000.0")))
    assert eng.cancel("s1").status == "cancelled" and eng.open_orders() == []
    assert eng.fetch("e1").status == "filled"


def test_lot_size_and_min_notional_are_enforced(eng):
    with pytest.raises(Rejected, match="lot size"):
        eng.place(req("e1", Leg.ENTRY, "buy", qty="0.0015"))
    with pytest.raises(Rejected, match="-4164"):
        eng.place(req("e2", Leg.ENTRY, "buy", qty="0.001"))  # 65 USDT < 100 minimum


@pytest.mark.parametrize("side, activation", [("sell", "65000"), ("sell", "64000"), ("buy", "65000"), ("buy", "66000")])
def test_a_trailing_whose_activation_is_already_reached_is_refused_with_2021(eng, side, activation):
    """Binance: a SELL trailing needs activatePrice above the latest price, a BUY one below."""
    eng.place(req("e1", Leg.ENTRY, "buy" if side == "sell" else "sell"))
    with pytest.raises(Rejected, match="-2021"):
        eng.place(req("t1", Leg.TRAILING, side, activation=Decimal(activation), callback_pct=Decimal("0.5")))


def test_a_trailing_callback_up_to_20_is_taken_and_past_it_refused(eng):
    eng.place(req("e1", Leg.ENTRY, "buy"))
    eng.place(req("t1", Leg.TRAILING, "sell", activation=Decimal("66000"), callback_pct=Decimal("20")))
    with pytest.raises(Rejected, match="-2007"):
        eng.place(req("t2", Leg.TRAILING, "sell", activation=Decimal("66000"), callback_pct=Decimal("20.01")))
