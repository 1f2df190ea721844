"""Position sizing: fixed USDT, a share of equity, or risk per trade from the stop distance,
capped per trade; and a cap on the whole account's exposure."""
from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from core.sizing import Sizing, notional
from persistence.models import PositionRow, SignalRow
from tests.support.helpers import SYM, wait_for, wave

D = Decimal


def rules(mode, cap=D(0), leverage=D(5)) -> Sizing:
    return Sizing(mode, D(200), D(2), D("0.5"), cap, leverage)


def test_the_three_modes():
    assert notional(rules("fixed"), None, D(2)) == D(200)
    assert notional(rules("equity_pct"), D(10000), D(2)) == D(200)  # 2 % of 10,000
    assert notional(rules("risk_pct"), D(10000), D(2)) == D(2500)  # loses 0.5 % = 50 at a 2 % stop
    assert notional(rules("risk_pct", cap=D(1000)), D(10000), D(2)) == D(1000)
    assert "equity" in notional(rules("equity_pct"), None, D(2))


@given(equity=st.decimals(min_value=1, max_value=10**7, places=2),
       stop=st.decimals(min_value=D("0.1"), max_value=D(49), places=2))
def test_risk_pct_loses_the_risk_share_at_the_stop(equity, stop):
    size = notional(rules("risk_pct"), equity, stop)
    loss_at_stop = size * stop / 100
    assert abs(loss_at_stop - equity * D("0.005")) <= stop / 100  # within the cent rounding of the size


@given(equity=st.decimals(min_value=1, max_value=10**7, places=2),
       stop=st.decimals(min_value=D("0.01"), max_value=D(49), places=2),
       leverage=st.integers(min_value=1, max_value=125))
def test_an_equity_based_size_never_exceeds_equity_times_leverage(equity, stop, leverage):
    for mode in ("risk_pct", "equity_pct"):
        assert notional(rules(mode, leverage=D(leverage)), equity, stop) <= (equity * leverage).quantize(D("0.01"))


def test_a_tight_stop_is_sized_at_the_leverage_cap_not_ten_times_equity():
    # risk 0.5 % at a 0.05 % stop would be 10× equity; at leverage 5 the equity margins 5×
    assert notional(rules("risk_pct", leverage=D(5)), D(10000), D("0.05")) == D(50000)


def _rows(svc):
    with svc.db.tx("db_read") as tx:
        return {r.symbol: r for r in tx.scalars(select(PositionRow))}


def test_equity_sizing_and_the_exposure_cap_through_a_wave(start_service):
    # equity 10,000 (the paper account): 5 % = 500 per position; the cap lets two in, not three
    svc = start_service("risk.sizing=\"equity_pct\"", "risk.equity_pct=5", "risk.max_exposure_usdt=1200")
    svc.submit(wave("w1", (SYM["BTC"], "long", 0.9), (SYM["ETH"], "long", 0.8), (SYM["SOL"], "long", 0.7)), "test")
    wait_for(lambda: svc.stats.waves, what="the wave")
    rows = _rows(svc)
    assert set(rows) == {SYM["BTC"], SYM["ETH"]}
    for r in rows.values():
        assert r.notional == D(500) and D(400) < r.qty * r.entry_price <= D(501)  # rounded down to the lot
    with svc.db.tx("db_read") as tx:
        sol = tx.scalars(select(SignalRow).where(SignalRow.symbol == SYM["SOL"])).one()
    assert sol.outcome == "skipped" and "exposure cap: 1000.00 USDT open + 500.00 would pass" in sol.reason
