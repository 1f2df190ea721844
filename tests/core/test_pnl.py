"""Profit and loss in exact Decimal (core/pnl.py): the sign by side, fees off the gross, the
percentage on the entry notional, and unknown fees carried as a flag rather than guessed."""
from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from core.pnl import gross, realized
from core.types import Side

D = Decimal
prices = st.decimals(min_value=D("0.0001"), max_value=D("100000"), places=4)
qtys = st.decimals(min_value=D("0.001"), max_value=D("1000"), places=3)


def test_a_long_gains_when_the_price_rises_and_a_short_when_it_falls():
    assert gross(Side.LONG, D("2"), D("100"), D("110")) == D("20")
    assert gross(Side.SHORT, D("2"), D("100"), D("110")) == D("-20")
    assert gross(Side.SHORT, D("2"), D("100"), D("90")) == D("20")


def test_realized_is_net_of_fees_and_its_percentage_is_on_the_entry_notional():
    r = realized(Side.LONG, D("0.5"), D("200"), D("210"), fees=D("0.1"))
    assert (r.gross, r.fees, r.net) == (D("5.0"), D("0.1"), D("4.9"))
    assert r.pct == D("4.9000")  # 4.9 on a notional of 100
    assert r.fees_known


def test_the_percentage_is_quantized_and_exact():
    r = realized(Side.SHORT, D("3"), D("7"), D("6"), fees=D("0"))
    assert r.net == D("3") and r.pct == D("14.2857")  # 3 / 21, to 4 places
    assert r.pct.as_tuple().exponent == -4


def test_unknown_fees_are_flagged_not_guessed():
    r = realized(Side.LONG, D("1"), D("100"), D("101"), fees=D("0.02"), fees_known=False)
    assert not r.fees_known and r.fees == D("0.02") and r.net == D("0.98")


def test_no_notional_no_percentage():
    assert realized(Side.LONG, D("0"), D("100"), D("120"), fees=D("0")).pct == 0


@given(prices, prices, qtys, st.decimals(min_value=D("0"), max_value=D("10"), places=4))
def test_long_and_short_mirror_each_other_and_fees_only_lower_the_net(entry, exit_, qty, fees):
    long_, short = realized(Side.LONG, qty, entry, exit_, fees), realized(Side.SHORT, qty, entry, exit_, fees)
    assert long_.gross == -short.gross
    assert long_.net == long_.gross - fees and short.net == short.gross - fees
    assert long_.net <= long_.gross
