"""Money where the operator looks: status, positions, position, trades, waves and /metrics,
over the real control socket and HTTP, all agreeing with the venue's fills."""
from __future__ import annotations

from decimal import Decimal

from sqlalchemy import select

from control import render
from persistence.models import PositionRow
from tests.support.control_support import open_positions
from tests.support.helpers import SYM, wait_for
from tests.control.test_control_metrics import scrape

CENT = Decimal("0.0001")


def _rows(svc):
    with svc.db.tx("db_read") as tx:
        return {r.symbol: r for r in tx.scalars(select(PositionRow))}


def test_status_positions_trades_waves_and_metrics_show_the_money(control_service):
    svc, plane, client = control_service()
    btc, eth = SYM["BTC"], SYM["ETH"]
    open_positions(svc, "w1", (btc, "long", 0.9), (eth, "short", 0.8))
    eng = svc.gateway.engine
    rows = _rows(svc)
    eng.set_price(eth, rows[eth].stop_price + Decimal("5"))  # ETH (short) stops out
    wait_for(lambda: _rows(svc)[eth].net_pnl is not None, what="ETH closed with its P&L")
    up = rows[btc].entry_price + Decimal("100")
    eng.set_price(btc, up)  # BTC stays open, 100 USDT/BTC in profit before fees
    svc.market_data.on_tick(btc, up)  # the feed's tick (the test config runs no feed thread)
    eth_row = _rows(svc)[eth]
    expect_unrealized = ((up - rows[btc].entry_price) * rows[btc].qty).quantize(CENT)
    wait_for(lambda: client.call("positions").unrealized == expect_unrealized, what="BTC's actor on the new price")

    st = client.call("status")
    assert st.money.realized == eth_row.net_pnl and st.money.fees == eth_row.fees
    assert st.money.trades == st.money.trades_today == 1 and st.money.realized_today == eth_row.net_pnl
    assert st.money.unrealized == expect_unrealized
    b = eng.balance()
    assert st.money.balance == b.wallet and st.money.equity == b.equity
    text = render.render(st)
    assert f"all time {eth_row.net_pnl:+.2f}" in text and "unrealized" in text and f"equity {b.equity:.2f}" in text

    pos = client.call("positions")
    assert pos.unrealized == expect_unrealized
    assert [p.symbol for p in pos.positions] == [btc]
    assert pos.positions[0].pnl_pct == (expect_unrealized / (rows[btc].entry_price * rows[btc].qty)
                                        * 100).quantize(Decimal("0.01"))
    assert "unrealized total:" in render.render(pos)

    detail = client.call("position", target=eth)
    assert detail.position.pnl == eth_row.net_pnl.quantize(CENT) and "net of fees" in render.render(detail)

    tr = client.call("trades")
    assert [t.id for t in tr.trades] == [eth_row.id] and tr.net == st.money.realized
    t = tr.trades[0]
    assert (t.entry, t.exit, t.fees, t.net, t.reason) == (eth_row.entry_price, eth_row.exit_price, eth_row.fees,
                                                          eth_row.net_pnl, "stop-loss triggered")
    assert t.duration_s is not None and t.duration_s >= 0
    assert client.call("trades", symbol="BTC").trades == []

    ev = client.call("events", target="ETH")
    (closed,) = [e for e in ev.events if e.kind == "realized"]  # the event log says what it made
    assert closed.symbol == eth and closed.data["net"] == str(eth_row.net_pnl)
    assert closed.data["reason"] == "stop-loss triggered" and eth in render.render(ev)

    waves = client.call("waves")
    assert waves.waves[0].pnl == eth_row.net_pnl and waves.waves[0].closed == 1
    one = client.call("wave", wave_id="w1")
    assert one.wave.pnl == eth_row.net_pnl
    assert {x.symbol: x.pnl for x in one.signals} == {btc: None, eth: eth_row.net_pnl}

    m = scrape(plane)
    assert Decimal(str(m[("wavetrader_realized_pnl_usdt", ())])).quantize(CENT) == eth_row.net_pnl.quantize(CENT)
    assert m[("wavetrader_equity_usdt", ())] == float(b.equity)
    assert Decimal(str(m[("wavetrader_unrealized_pnl_usdt", ())])) == expect_unrealized


def test_positions_table_fits_the_terminal_and_wide_shows_every_column(control_service, monkeypatch):
    svc, plane, client = control_service()
    open_positions(svc, "w1", (SYM["BTC"], "long", 0.9), (SYM["DOGE"], "short", 0.8))
    data = client.call("positions")
    monkeypatch.setenv("COLUMNS", "80")
    narrow = render.render(data)
    assert max(len(x) for x in narrow.splitlines()) <= 80, narrow
    assert "P&L USDT" in narrow and "trailing" not in narrow.splitlines()[0]
    wide = render.render(data, wide=True)
    assert all(h in wide.splitlines()[0] for h in ("trailing", "epoch", "id", "size USDT"))
    monkeypatch.setenv("COLUMNS", "60")
    for reply, optional in ((client.call("waves"), "received"), (client.call("wave", wave_id="w1"), "position")):
        narrow, wide = render.render(reply), render.render(reply, wide=True)
        assert optional not in narrow and optional in wide  # the reason column is never dropped


def test_position_detail_shows_each_fills_fee(control_service):
    svc, plane, client = control_service()
    open_positions(svc, "w1", (SYM["BTC"], "long", 0.9))
    d = client.call("position", target="BTC")
    entry = next(o for o in d.orders if o.leg == "e")
    assert entry.fee == (entry.avg_price * entry.qty * Decimal("0.0005")).quantize(Decimal("1e-8"))
    assert f"{entry.fee:.4f}" in render.render(d)
