"""Money from the venue's fills: fees charged as the venue does, realized P&L per position,
the alert and the log line of a stop-out, and totals that add up."""
from __future__ import annotations

from decimal import Decimal

import pytest
from loguru import logger
from sqlalchemy import select

from exchange.paper.engine import PaperEngine
from exchange.paper.universe import paper_markets, start_prices
from persistence.models import OrderRow, PositionRow
from persistence.trades import closed_trades, totals
from service.view import status_line
from tests.support.ccxt_helpers import binance_venue  # noqa: F401 (fixture)
from tests.support.helpers import SYM, wait_for, wave
from tests.support.webhook import Receiver

TAKER = Decimal("0.0005")  # Binance USD-M VIP 0 taker: 0.05 %


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.stop()


@pytest.fixture
def log_lines():
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m).rstrip()), level="INFO", format="{level} {message}")
    yield lines
    logger.remove(sink)


def _row(svc, pid):
    with svc.db.tx("db_read") as tx:
        return tx.get(PositionRow, pid)


def test_paper_fill_pays_the_taker_fee_and_moves_the_wallet():
    btc = SYM["BTC"]
    eng = PaperEngine(paper_markets(), start_prices(), slippage_bps=Decimal(0))
    from core.position_types import Leg
    from exchange.gateway import OrderRequest

    buy = eng.place(OrderRequest("wt-a-e1-1", btc, Leg.ENTRY, "buy", Decimal("0.01")))
    assert buy.fee == Decimal("65000") * Decimal("0.01") * TAKER == Decimal("0.325")
    eng.set_price(btc, Decimal("66000"))
    assert eng.balance().unrealized == Decimal("10.00")
    sell = eng.place(OrderRequest("wt-a-x1-2", btc, Leg.EXIT, "sell", Decimal("0.01")))
    assert sell.fee == Decimal("0.33")
    b = eng.balance()
    assert b.wallet == Decimal(10000) + Decimal("10.00") - Decimal("0.325") - Decimal("0.33")
    assert b.unrealized == 0 and b.equity == b.wallet


def test_stop_out_through_the_paper_venue_trade_pnl_alert_and_log_line(start_service, receiver,
                                                                        log_lines, monkeypatch):
    monkeypatch.setenv("WAVE_TRADER_ALERT_URLS", receiver.apprise_url)
    svc = start_service()
    btc = SYM["BTC"]
    svc.submit(wave("w1", (btc, "long", 0.9)), "test")
    wait_for(lambda: svc.stats.waves, what="the wave")
    with svc.db.tx("db_read") as tx:
        pos = tx.scalars(select(PositionRow)).one()
    assert pos.phase == "trailing"
    svc.gateway.engine.set_price(btc, pos.stop_price - Decimal("50"))  # through the stop-loss
    row = wait_for(lambda: (r := _row(svc, pos.id)).phase == "closed" and r.net_pnl is not None and r,
                   what="the stop-out recorded")

    # the P&L by hand, from the venue's own fills (price and quantity of each order)
    eng = svc.gateway.engine
    entry = eng.fetch(next(cid for cid in eng.account.orders if cid.startswith(f"wt-{pos.id}-e")))
    stop = eng.fetch(pos.stop_cid)
    assert stop.status == "filled" and entry.status == "filled"
    qty = entry.filled_qty
    gross = (stop.avg_price - entry.avg_price) * qty
    fees = (entry.avg_price * qty * TAKER).quantize(Decimal("1e-8")) + \
        (stop.avg_price * qty * TAKER).quantize(Decimal("1e-8"))
    assert gross < 0 and fees > 0
    assert (row.entry_price, row.exit_price, row.qty) == (entry.avg_price, stop.avg_price, qty)
    assert row.gross_pnl == gross and row.fees == fees and row.net_pnl == gross - fees
    assert row.pnl_pct == ((gross - fees) / (entry.avg_price * qty) * 100).quantize(Decimal("0.0001"))
    assert row.close_reason == "stop-loss triggered"
    with svc.db.tx("db_read") as tx:  # each fill's fee is on its order row
        order_fees = {o.leg: o.fee for o in tx.scalars(select(OrderRow).where(OrderRow.position_id == pos.id))}
    assert order_fees["e"] == entry.fee and order_fees["s"] == stop.fee

    trades = closed_trades(svc.db)
    assert [t.id for t in trades] == [pos.id]
    assert totals(svc.db).net == gross - fees

    alert = receiver.next()
    assert alert["title"] == f"stop fired: {btc}"
    assert "stop-loss triggered" in alert["message"] and f"{gross - fees:+.2f}" in alert["message"]

    line = wait_for(lambda: next((x for x in log_lines if "closed: stop-loss triggered" in x), None),
                    what="the exit's log line")
    assert line.startswith("INFO ") and btc in line and f"P&L {gross - fees:+.4f} USDT" in line
    assert f"fees {fees:.4f}" in line
    # and the live view's periodic status line carries the day's money
    assert f"P&L today {gross - fees:+.2f} USDT (1 closed)" in status_line(svc)


def test_run_summary_pnl_is_the_trades_total_and_venue_equity(start_service):
    svc = start_service()
    svc.submit(wave("w1", (SYM["BTC"], "long", 0.9), (SYM["ETH"], "short", 0.8)), "test")
    wait_for(lambda: svc.stats.waves, what="the wave")
    assert closed_trades(svc.db) == []
    with svc.db.tx("db_read") as tx:
        rows = {r.symbol: r for r in tx.scalars(select(PositionRow))}
    svc.gateway.engine.set_price(SYM["ETH"], rows[SYM["ETH"]].stop_price + Decimal("5"))
    wait_for(lambda: _row(svc, rows[SYM["ETH"]].id).net_pnl is not None, what="ETH stopped out")
    pnl = svc.summary()["pnl"]
    net = closed_trades(svc.db)[0].net_pnl
    assert Decimal(pnl["realized"]) == net.quantize(Decimal("0.0001"))
    b = svc.gateway.engine.balance()
    assert Decimal(pnl["equity"]) == b.equity.quantize(Decimal("0.0001"))
    assert Decimal(pnl["fees"]) > 0



def test_ccxt_order_fees_are_read_from_fees_or_fee():
    from exchange.ccxt.venues import order_fee

    # ccxt's unified order structure: `fee` {cost, currency} and/or `fees` [..]
    assert order_fee({"fees": [{"cost": 0.0325, "currency": "USDT"}, {"cost": "0.01", "currency": "USDT"}]}) \
        == Decimal("0.0425")
    assert order_fee({"fee": {"cost": "0.1", "currency": "USDT"}, "fees": []}) == Decimal("0.1")
    assert order_fee({"fee": None, "fees": []}) is None  # Binance order replies carry none: unknown, not 0
    assert order_fee({"fees": [{"cost": "0.001", "currency": "BNB"}]}) is None  # not in the quote asset


def test_a_close_on_a_venue_whose_replies_carry_no_fee_has_fees_unknown_not_zero(start_service, venue):
    """Binance order and algo replies carry no commission: the trade's fees are unknown (NULL),
    shown so, never a silent 0 that makes net equal gross."""
    from control.protocol import TradesArgs
    from control.queries import trades_reply
    from control.render import trades
    from tests.support.ccxt_helpers import binance_overrides

    svc = start_service(*binance_overrides(venue.url, "risk.max_positions_per_wave=1"))
    svc.submit(wave("w1", (SYM["BTC"], "long", 0.9)), "test")
    wait_for(lambda: svc.stats.waves, 20, "the wave")
    with svc.db.tx("db_read") as tx:
        (pos,) = tx.scalars(select(PositionRow)).all()
    venue.set_price(SYM["BTC"], pos.stop_price - Decimal("50"))

    def closed():
        with svc.db.tx("db_read") as tx:
            row = tx.get(PositionRow, pos.id)
            return row if row.net_pnl is not None else None
    row = wait_for(closed, 10, "the stop-out's P&L")
    assert row.gross_pnl < 0 and row.fees is None
    out = trades(trades_reply(svc.db, TradesArgs(), None), wide=True)
    assert "unknown" in out.splitlines()[2] and "1 trades with fees unknown" in out, out
