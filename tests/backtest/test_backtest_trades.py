"""A backtest trade's money (backtest/trades.py): P&L signed by side, fees on both fills of a
closed trade and on the entry only of one still open at the end of the data (marked, not
closed), and its duration only once it has both ends."""
from __future__ import annotations

from decimal import Decimal

from backtest.trades import Trade, settle

D = Decimal
FEE = D("0.0005")  # 5 bps a fill


def _trade(side: str, **kw) -> Trade:
    return Trade(line=1, wave_id="w", signal_id="s", symbol="BTC/USDT:USDT", side=side, rank=1,
                 status="closed", entry_ts=10.0, entry_price=D("100"), qty=D("2"), **kw)


def test_a_closed_long_pays_fees_on_both_fills():
    t = _trade("long")
    settle(t, D("110"), FEE, closed=True)
    assert t.exit_price == D("110") and t.pnl == D("20")
    assert t.fees == D("0.2100")  # (100 + 110) × 2 × 0.0005
    assert t.net == D("19.7900")


def test_a_short_gains_when_the_price_falls():
    t = _trade("short")
    settle(t, D("90"), FEE, closed=True)
    assert t.pnl == D("20") and t.net == D("20") - D("0.19")


def test_a_trade_still_open_at_the_end_is_marked_with_the_entry_fee_only():
    t = _trade("long")
    settle(t, D("95"), FEE, closed=False)
    assert t.pnl == D("-10") and t.fees == D("0.1") and t.net == D("-10.1")


def test_duration_needs_both_ends():
    t = _trade("long")
    assert t.duration_s is None
    t.exit_ts = 70.5
    assert t.duration_s == 60.5
