"""Alerts through apprise: delivered to a local webhook, and a dead endpoint that never
answers slows down nothing but the alerts (bounded queue, drops counted)."""
from __future__ import annotations


import pytest
from sqlalchemy import select

from persistence.models import PositionRow
from service.alerts import Alerts, urls_from_env
from tests.support.helpers import SYM, wait_for, wave
from tests.support.webhook import Receiver, Silent


@pytest.fixture
def silent():
    s = Silent()
    yield s
    s.stop()


def test_urls_come_from_the_environment_only(monkeypatch):
    monkeypatch.setenv("WAVE_TRADER_ALERT_URLS", "json://127.0.0.1:1/a, tgram://123:abc/456")
    assert urls_from_env("WAVE_TRADER_ALERT_URLS") == ["json://127.0.0.1:1/a", "tgram://123:abc/456"]
    monkeypatch.delenv("WAVE_TRADER_ALERT_URLS")
    a = Alerts(urls_from_env("WAVE_TRADER_ALERT_URLS"))
    assert not a.enabled and a.notify("stop_fired", "t", "b") is False and a.depth() == 0


def test_a_delivered_alert_reaches_the_webhook():
    r = Receiver()
    try:
        a = Alerts([r.apprise_url])
        assert a.notify("loss_limit", "daily loss limit hit", "realized -50")
        got = r.next()
        assert got["title"] == "daily loss limit hit" and got["message"] == "realized -50"
        wait_for(lambda: a.sent == 1, what="the send counted")
        a.close()
    finally:
        r.stop()


def test_a_dead_endpoint_bounds_the_queue_and_counts_drops(silent):
    a = Alerts([silent.apprise_url], queue_size=3)
    first = a.notify("stop_fired", "first", "x")
    wait_for(lambda: a.depth() == 0 and silent.held, what="the alert thread stuck on the silent endpoint")
    results = [a.notify("stop_fired", f"n{i}", "x") for i in range(10)]
    assert first and results[:3] == [True] * 3 and results[3:] == [False] * 7
    assert a.depth() == 3 and a.dropped == 7 and a.sent == 0


def test_trading_is_unaffected_by_an_endpoint_that_never_answers(start_service, silent, monkeypatch):
    monkeypatch.setenv("WAVE_TRADER_ALERT_URLS", silent.apprise_url)
    svc = start_service("alerts.queue_size=2")
    btc, eth, sol = SYM["BTC"], SYM["ETH"], SYM["SOL"]
    svc.submit(wave("w1", (btc, "long", 0.9), (eth, "long", 0.8), (sol, "long", 0.7)), "test")
    wait_for(lambda: svc.stats.waves, what="wave 1")
    with svc.db.tx("db_read") as tx:
        rows = {r.symbol: r for r in tx.scalars(select(PositionRow))}
    for sym in (btc, eth, sol):  # three stop-outs: three alerts for a queue of two behind a stuck send
        svc.gateway.engine.set_price(sym, rows[sym].stop_price - rows[sym].stop_price / 100)

    def closed():
        with svc.db.tx("db_read") as tx:
            return all(tx.get(PositionRow, rows[s].id).phase == "closed" for s in (btc, eth, sol))
    wait_for(closed, what="all three stopped out")
    wait_for(lambda: svc.alerts.queued + svc.alerts.dropped == 3, what="three alerts offered")
    svc.submit(wave("w2", (SYM["XRP"], "short", 0.9)), "test")
    wait_for(lambda: len(svc.stats.waves) == 2, what="wave 2 opened while the alerts are stuck")
    assert svc.stats.waves[1].outcomes == {"protected": 1}
    assert svc.alerts.sent == 0 and svc.alerts.failed == 0  # the first send is still waiting
    assert svc.alerts.depth() <= 2 and svc.alerts.dropped >= 0
    assert svc.alerts.queued + svc.alerts.dropped == 3


def test_an_escalated_position_alerts_that_it_needs_an_operator(start_service, monkeypatch):
    from core.faults import FaultRule

    r = Receiver()
    try:
        monkeypatch.setenv("WAVE_TRADER_ALERT_URLS", r.apprise_url)
        svc = start_service("supervisor.max_restarts=1", "supervisor.restart_window_s=60")
        btc = SYM["BTC"]
        svc.submit(wave("w", (btc, "long", .9)), "t")
        wait_for(lambda: svc.stats.waves, what="wave")
        svc.actor_faults.add(FaultRule("crash", op="recover", symbols=[btc]))
        with svc.db.tx("db_read") as tx:
            pid = tx.scalars(select(PositionRow.id)).one()
        svc.supervisor.child_failed(svc.supervisor.children[pid], "test: forced restart")
        got = r.next(timeout=20)
        assert got["title"] == f"wave-trader: {pid} needs an operator" and "restart intensity" in got["message"]
    finally:
        r.stop()


def test_health_turning_critical_alerts(monkeypatch, tmp_path):
    from core.faults import FaultRule
    from tests.support.control_support import FAST, start_controlled, stop_controlled
    from tests.support.helpers import make_config

    r = Receiver()
    monkeypatch.setenv("WAVE_TRADER_ALERT_URLS", r.apprise_url)
    svc, plane = start_controlled(make_config(tmp_path, *FAST, "health.grace_s=0",
                                              "health.coverage_critical_below=1"))
    try:
        # the trailing stop never gets placed: the position is protected but not trailing
        svc.venue_faults.add(FaultRule("hang", op="place_order", leg="trailing"))
        svc.submit(wave("w1", (SYM["BTC"], "long", 0.9)), "test")
        got = r.next(timeout=20)
        assert got["title"] == "wave-trader health CRITICAL" and "coverage" in got["message"]
    finally:
        stop_controlled(svc, plane)
        r.stop()
