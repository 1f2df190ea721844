"""Loss limits: past the daily limit new waves are refused with the reason while the open
positions' stops stay resting at the venue, and `resume` takes waves again; a stopped-out
symbol cools down before it is traded again."""
from __future__ import annotations

from decimal import Decimal

from sqlalchemy import select

from control import render
from control.console import Console
from core.position_types import Leg
from persistence.models import PositionRow, SignalRow
from tests.support.control_support import open_positions
from tests.support.helpers import SYM, wait_for
from tests.support.webhook import Receiver


def _rows(svc):
    with svc.db.tx("db_read") as tx:
        return {r.symbol: r for r in tx.scalars(select(PositionRow))}


def _signals(svc, wave_id):
    with svc.db.tx("db_read") as tx:
        return list(tx.scalars(select(SignalRow).where(SignalRow.wave_id == wave_id)))


def test_daily_loss_limit_refuses_waves_keeps_stops_resting_and_resume_lifts_it(control_service, monkeypatch):
    receiver = Receiver()
    monkeypatch.setenv("WAVE_TRADER_ALERT_URLS", receiver.apprise_url)
    # each position is ~200 USDT: a 2 % stop-out loses ~4 USDT plus fees; the limit is 3
    svc, plane, client = control_service("risk.daily_loss_limit_usdt=3")
    btc, eth, sol = SYM["BTC"], SYM["ETH"], SYM["SOL"]
    open_positions(svc, "w1", (btc, "long", 0.9), (eth, "long", 0.8))
    rows = _rows(svc)
    svc.gateway.engine.set_price(btc, rows[btc].stop_price - Decimal(50))  # BTC stops out: ~ -4.2
    wait_for(lambda: _rows(svc)[btc].net_pnl is not None, what="BTC stopped out")
    assert _rows(svc)[btc].net_pnl < -3

    open_positions(svc, "w2", (sol, "long", 0.9))
    (sig,) = _signals(svc, "w2")
    assert sig.outcome == "skipped" and sig.reason.startswith("daily loss limit hit: today's P&L -")
    assert "open positions stay protected" in sig.reason and sol not in _rows(svc)
    alerts = [receiver.next(), receiver.next()]  # the stop that fired, then the limit
    assert [a["title"] for a in alerts] == [f"stop fired: {btc}", "wave-trader: daily loss limit hit"]
    assert alerts[1]["message"] == sig.reason
    receiver.stop()
    st = client.call("status")
    assert st.limits.halted and st.limits.reason == sig.reason
    assert st.health.loss_limit_hit and "HALTED by the daily loss limit" in render.render(st)
    assert Console(client).refresh_prompt() == "wave-trader[healthy HALTED]> "  # the console's prompt
    # ETH is still open and protected: its stop-loss and trailing stop rest at the venue
    eth_row = _rows(svc)[eth]
    resting = {o.cid: o for o in svc.gateway.engine.open_orders(eth)}
    assert eth_row.phase == "trailing"
    assert resting[eth_row.stop_cid].leg is Leg.STOP and resting[eth_row.stop_cid].stop_price == eth_row.stop_price
    assert resting[eth_row.trailing_cid].leg is Leg.TRAILING

    reply = client.call("resume")
    assert "daily loss limit is lifted for the rest of today" in reply.message
    assert not client.call("status").limits.halted
    open_positions(svc, "w3", (sol, "long", 0.9))
    assert [s.outcome for s in _signals(svc, "w3")] == ["protected"]

    control_service.stop(svc)  # the operator's lift is kept across a restart (for today)
    svc, plane, client = control_service("risk.daily_loss_limit_usdt=3")
    assert client.call("status").limits.lifted_today
    open_positions(svc, "w4", (SYM["XRP"], "long", 0.9))
    assert [s.outcome for s in _signals(svc, "w4")] == ["protected"]


def test_a_stopped_out_symbol_cools_down(control_service):
    svc, plane, client = control_service("risk.cooldown_after_stop_s=600")
    btc = SYM["BTC"]
    open_positions(svc, "w1", (btc, "long", 0.9))
    svc.gateway.engine.set_price(btc, _rows(svc)[btc].stop_price - Decimal(50))
    wait_for(lambda: _rows(svc)[btc].phase == "closed", what="BTC stopped out")
    wait_for(lambda: btc in client.call("status").limits.cooldowns, what="the cooldown noted")
    open_positions(svc, "w2", (btc, "long", 0.9), (SYM["ETH"], "long", 0.8))
    by_symbol = {s.symbol: s for s in _signals(svc, "w2")}
    assert by_symbol[btc].outcome == "skipped" and "cooling down after a stop-out" in by_symbol[btc].reason
    assert by_symbol[SYM["ETH"]].outcome == "protected"
