"""A failing database: the escalation's market close reaches the venue before anything is
recorded, and a database the trader cannot write stops the start with a clear message."""
from __future__ import annotations

from core.faults import FaultRule
from tests.support.helpers import SYM, wait_for, wave
from tests.supervisor.test_supervisor import FAST, _position
from tests.support.trader_process import said, trader, quiet_settings


def test_an_escalation_closes_at_the_venue_even_when_no_database_write_succeeds(start_service):
    svc = start_service(*FAST, "supervisor.max_restarts=1", "supervisor.restart_window_s=60")
    svc.submit(wave("w", (SYM["BTC"], "long", .9)), "t")
    wait_for(lambda: svc.stats.waves, what="wave")
    btc = _position(svc, SYM["BTC"])
    assert SYM["BTC"] in {p.symbol for p in svc.gateway.engine.positions()}
    for op in ("epoch_bump", "db_write", "position_create"):  # a full disk: every write fails
        svc.db_faults.add(FaultRule("crash", op=op))
    svc.actor_faults.add(FaultRule("crash", op="recover", symbols=[SYM["BTC"]]))
    svc.supervisor.child_failed(svc.supervisor.children[btc.id], "test: forced restart")
    wait_for(lambda: svc.supervisor.stats.escalations, timeout=30, what="escalation")
    wait_for(lambda: SYM["BTC"] not in {p.symbol for p in svc.gateway.engine.positions()}, timeout=20,
             what="the escalated position closed on the venue")
    # the close goes out first, the cancels right after it: the venue may be flat a moment before
    wait_for(lambda: not svc.gateway.engine.open_orders(SYM["BTC"]), timeout=10,
             what="its resting stops cancelled too")


def test_a_read_only_database_stops_the_start_with_a_clear_message(tmp_path):
    first = trader("run", *quiet_settings(tmp_path, "signals.demo_interval_s=0.2"), "--waves", "1", timeout=90)
    assert first.returncode == 0, said(first)  # a database with an open position to recover
    ro = f"database.url='sqlite:///file:{tmp_path}/t.db?mode=ro&uri=true'"  # SQLite refuses every write
    res = trader("run", *quiet_settings(tmp_path, ro), timeout=90)
    assert res.returncode == 5, said(res)
    assert "read-only" in res.stderr and "attempt to write a readonly database" in res.stderr, said(res)
    assert "Traceback" not in res.stderr
