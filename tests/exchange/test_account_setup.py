"""Account set-up on both venues (position mode, leverage, margin mode), and the refusal of an
entry whose stop lies beyond its estimated liquidation price."""
from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.position_logic import step
from core.position_types import Begin, Outcome, Params, Phase, Place, PositionState, Report
from core.trailing import initial_stop, liquidation_estimate
from core.types import MarketSpec, Side
from exchange.ccxt.account import AccountRefused
from tests.support.ccxt_helpers import KEY, SECRET, fake_venue, gateway
from tests.exchange.test_ccxt_contract import entry

SPEC = MarketSpec("X/USDT:USDT", Decimal("0.01"), Decimal("0.1"), Decimal("0.1"), Decimal(5))


def begin(leverage, stop_pct="2", mmr="1", side=Side.LONG, price="10"):
    p = Params(Decimal(stop_pct), Decimal(1), Decimal("0.5"), notional=Decimal(100),
               leverage=None if leverage is None else Decimal(leverage), maint_margin_pct=Decimal(mmr))
    return step(PositionState("p", "s", "w", SPEC.symbol, side, p), Begin(Decimal(price)), SPEC)


@pytest.mark.parametrize("side", [Side.LONG, Side.SHORT])
def test_an_entry_whose_stop_lies_beyond_liquidation_is_refused_with_the_reason(side):
    s, cmds = begin(50, side=side)  # 1/50 - 1 % = 1 % to liquidation, stop 2 % away
    assert s.phase is Phase.FAILED and not [c for c in cmds if isinstance(c, Place)]
    (report,) = [c for c in cmds if isinstance(c, Report)]
    assert report.outcome is Outcome.FAILED and "beyond the estimated liquidation price" in report.reason
    assert "exchange.leverage" in report.reason
    s, cmds = begin(20, side=side)  # 5 % - 1 % = 4 % to liquidation: a 2 % stop is reached first
    assert s.phase is Phase.ENTERING


@given(lev=st.integers(1, 125), stop=st.decimals("0.1", "49", places=1), mmr=st.decimals("0", "5", places=1),
       side=st.sampled_from(Side))
def test_refused_exactly_when_the_stop_is_at_or_past_the_liquidation_estimate(lev, stop, mmr, side):
    s, _ = begin(lev, str(stop), str(mmr), side)
    level = initial_stop(Decimal(10), side, stop, SPEC)
    liq = liquidation_estimate(Decimal(10), side, Decimal(lev), mmr)
    beyond = level <= liq if side is Side.LONG else level >= liq
    assert (s.phase is Phase.FAILED) == beyond


def test_without_leverage_nothing_is_checked():
    assert begin(None, "40")[0].phase is Phase.ENTERING


@pytest.fixture
def binance(monkeypatch):
    monkeypatch.setenv("BINANCE_API_KEY", KEY)
    monkeypatch.setenv("BINANCE_API_SECRET", SECRET)
    v = fake_venue()
    yield v
    v.stop()


def test_binance_hedge_mode_stops_the_start_with_the_fix_named(binance):
    binance.account.dual_side = True
    with pytest.raises(AccountRefused, match="one-way.*dualSidePosition=false"):
        gateway(binance.url).close()


def test_binance_leverage_and_margin_type_are_set_before_a_symbols_first_entry(binance):
    g = gateway(binance.url, "exchange.leverage=4", "exchange.margin_mode='isolated'")
    try:
        assert binance.calls("POST /fapi/v1/leverage") == []
        g.place_order(entry(), 2)
        g.place_order(entry("wt-p1-e1-9"), 2)
        (lev,) = binance.calls("POST /fapi/v1/leverage")  # once per symbol
        assert (lev["symbol"], lev["leverage"]) == ("BTCUSDT", "4")
        assert binance.account.margin_type == {"BTCUSDT": "ISOLATED"}
        assert g.account.ready() == ["BTC/USDT:USDT"]
    finally:
        g.close()


def test_binance_margin_type_already_set_is_success(binance):
    binance.account.margin_type["BTCUSDT"] = "CROSSED"
    g = gateway(binance.url, "exchange.margin_mode='cross'")  # -4046 "No need to change margin type."
    try:
        assert g.place_order(entry(), 2).status == "filled"
    finally:
        g.close()


def test_binance_keeps_its_weight_unit_of_50_ms(binance):
    g = gateway(binance.url)
    try:
        assert g.ex.rateLimit == 50
    finally:
        g.close()
