"""Control commands against a real service: each request goes over the real socket and is
carried out by the position's own actor on the paper venue, with a real SQLite file."""
from __future__ import annotations

import time
from decimal import Decimal

import pytest
from sqlalchemy import select

from control import protocol as p
from core import trailing as tr
from core.config import HealthCfg
from core.faults import FaultRule
from core.position_types import Leg
from core.types import Side
from persistence.models import PositionRow, SignalRow
from service.health import HealthMonitor
from tests.support.control_support import open_positions, venue_orders, venue_qty
from tests.support.helpers import SYM, wait_for, wave


def _row(svc, symbol: str) -> PositionRow:
    with svc.db.tx("db_read") as tx:
        return tx.scalars(select(PositionRow).where(PositionRow.symbol == symbol)
                          .order_by(PositionRow.opened_ts.desc())).first()


def _open_stops(svc, symbol: str) -> list[Decimal]:
    return [o.stop_price for o in venue_orders(svc, symbol).values() if o.leg is Leg.STOP and o.status == "open"]


def test_defaults_and_pause_are_applied_and_survive_a_restart(control_service):
    svc, plane, client = control_service()
    open_positions(svc, "w1", (SYM["BTC"], "long", 0.9))
    entry = _row(svc, SYM["BTC"]).entry_price
    spec = svc.markets[SYM["BTC"]]

    reply = client.call("set", param="stop-loss", value="1")  # tighter: the stop moves up
    assert reply.defaults["stop-loss"] == Decimal(1) and len(reply.targets) == 1
    tighter = tr.initial_stop(entry, Side.LONG, Decimal(1), spec)
    wait_for(lambda: _open_stops(svc, SYM["BTC"]) == [tighter], what="BTC stop moved to the 1% level")
    assert _row(svc, SYM["BTC"]).stop_loss_pct == Decimal(1)
    assert client.call("pause").paused is True

    control_service.stop(svc)  # the process goes away; the settings must not
    svc, plane, client = control_service()
    st = client.call("status")
    assert st.paused is True and st.defaults["stop-loss"] == Decimal(1)
    open_positions(svc, "w2", (SYM["ETH"], "long", 0.9))
    with svc.db.tx("db_read") as tx:
        sig = tx.get(SignalRow, "w2-0")
    assert sig.outcome == "skipped" and "paused" in sig.reason
    assert client.call("resume").paused is False
    open_positions(svc, "w3", (SYM["ETH"], "long", 0.9))
    eth = _row(svc, SYM["ETH"])
    assert eth.phase == "trailing" and eth.stop_loss_pct == Decimal(1)
    assert eth.stop_price == tr.initial_stop(eth.entry_price, Side.LONG, Decimal(1), svc.markets[SYM["ETH"]])
    # (the in-memory paper venue forgot BTC across the restart, so recovery closes it; its row
    # keeps the operator's params either way)
    assert _row(svc, SYM["BTC"]).stop_loss_pct == Decimal(1)


def test_invalid_settings_are_refused_and_change_nothing(control_service):
    svc, plane, client = control_service()
    open_positions(svc, "w1", (SYM["BTC"], "long", 0.9))
    for param, value, words in [("callback", "0.05", "greater than or equal to 0.1"),
                                ("callback", "20.5", "less than or equal to 20"),
                                ("stop-loss", "0", "greater than 0"), ("stop-loss", "50", "less than 50"),
                                ("activation", "-1", "greater than or equal to 0")]:
        with pytest.raises(p.ProtocolError) as e:
            client.call("set", param=param, value=value)
        assert e.value.code == "bad_arguments" and words in e.value.message, (param, value, e.value.message)
    with pytest.raises(p.ProtocolError) as e:
        client.call("set", param="callback", value="1", symbol="NOPE")
    assert e.value.code == "not_found" and "not a known symbol" in e.value.message
    st = client.call("status")
    assert st.defaults == {"activation": Decimal("1.0"), "callback": Decimal("0.5"), "stop-loss": Decimal("2.0")}
    assert _row(svc, SYM["BTC"]).callback_pct == Decimal("0.5")


def test_a_stuck_actor_cannot_hang_the_console(control_service):
    svc, plane, client = control_service("deadlines.operation_s=60", "control.request_timeout_s=2")
    open_positions(svc, "w1", (SYM["BTC"], "long", 0.9), (SYM["ETH"], "long", 0.8))
    svc.actor_faults.add(FaultRule("hang", op="tick", symbols=[SYM["BTC"]]))
    svc.market_data.on_tick(SYM["BTC"], Decimal("65100"))  # BTC's actor now hangs on this tick
    wait_for(lambda: (h := svc.supervisor.children.get(_row(svc, SYM["BTC"]).id)) and h.op_name,
             what="BTC actor stuck in an operation")
    rows = {r.symbol: r for r in client.call("positions").positions}
    assert rows[SYM["BTC"]].live is False and rows[SYM["BTC"]].stop is not None  # from the database
    assert rows[SYM["ETH"]].live is True
    sup = {c.symbol: c for c in client.call("supervisor").children}
    assert sup[SYM["BTC"]].op.startswith("tick") and sup[SYM["BTC"]].op_left_s > 0
    # a request to the stuck actor is queued, and the reply says it is not confirmed yet
    reply = client.call("set", param="callback", value="0.9", symbol="BTC")
    assert "not confirmed" in reply.message
    assert client.call("close", target="ETH").message.startswith(f"{SYM['ETH']}: closed at")


def test_restart_close_all_and_what_the_logs_show(control_service):
    svc, plane, client = control_service()
    open_positions(svc, "w1", (SYM["BTC"], "long", 0.9), (SYM["SOL"], "short", 0.8))
    sol = _row(svc, SYM["SOL"])
    reply = client.call("restart", target=sol.id)
    assert "epoch 1 -> 2" in reply.message
    wait_for(lambda: _row(svc, SYM["SOL"]).epoch == 2 and svc.supervisor.children[sol.id].phase == "trailing",
             what="SOL restarted and trailing again")
    assert len(_open_stops(svc, SYM["SOL"])) == 1  # reconciled: still exactly one resting stop
    sup = client.call("supervisor")
    assert sup.restarts == 1 and {c.symbol: c.epoch for c in sup.children}[SYM["SOL"]] == 2

    with pytest.raises(p.ProtocolError) as e:
        client.call("close-all")
    assert e.value.code == "conflict" and "2 positions" in e.value.message
    assert venue_qty(svc, SYM["BTC"]) != 0
    reply = client.call("close-all", confirm=True)
    assert reply.message.startswith("close-all: 2 of 2 closed")
    assert venue_qty(svc, SYM["BTC"]) == 0 and venue_qty(svc, SYM["SOL"]) == 0
    assert not [o for s in (SYM["BTC"], SYM["SOL"]) for o in venue_orders(svc, s).values() if o.status == "open"]
    assert client.call("positions").positions == []

    detail = client.call("position", target="SOL")  # a closed position is still explained
    assert detail.position.phase == "closed" and detail.close_reason == "operator close-all"
    assert {o.leg for o in detail.orders} == {"e", "s", "t", "x"} and detail.venue_orders == []
    kinds = [e.kind for e in detail.events]
    assert kinds[-1] == "closed" and "reconciled" in kinds

    first = client.call("events", limit=5)
    assert len(first.events) == 5 and first.last_id == first.events[-1].id
    assert client.call("events", after_id=first.last_id).events == []
    open_positions(svc, "w2", (SYM["XRP"], "long", 0.9))
    new = client.call("events", after_id=first.last_id, limit=200).events
    assert [e.kind for e in new][:1] == ["wave_received"] and all(e.id > first.last_id for e in new)
    assert {e.position_id for e in client.call("events", target="XRP").events} == {_row(svc, SYM["XRP"]).id}

    waves = client.call("waves").waves
    assert [w.id for w in waves] == ["w2", "w1"] and waves[1].outcomes == {"protected": 2}
    w1 = client.call("wave", wave_id="w1")
    assert [(s.symbol, s.outcome) for s in w1.signals] == [(SYM["BTC"], "protected"), (SYM["SOL"], "protected")]
    with pytest.raises(p.ProtocolError) as e:
        client.call("wave", wave_id="nope")
    assert e.value.code == "not_found"


def test_health_degrades_then_goes_critical_while_a_position_is_unprotected(control_service):
    svc, plane, client = control_service("deadlines.operation_s=60", "deadlines.protect_s=60")
    svc.venue_faults.add(FaultRule("hang", op="place_order", leg="stop", symbols=[SYM["SOL"]]))
    svc.submit(wave("w1", (SYM["SOL"], "long", 0.9)), "t")
    wait_for(lambda: plane.health.report().unprotected, what="SOL open without its stop")
    mon = HealthMonitor(svc, HealthCfg(), plane.metrics, restart_window_s=60)
    now = time.monotonic()
    assert mon.report(now).status == "healthy"  # just entered: within every threshold
    later = mon.report(now + 6)
    assert later.status == "degraded" and "unprotected for more than 5s" in later.reasons[0]
    much_later = mon.report(now + 31)
    assert much_later.status == "critical"
    assert any("unprotected for more than 30s" in r for r in much_later.reasons)
    assert any("coverage 0%" in r for r in much_later.reasons)  # open past the grace without trailing
    h = client.call("health")
    assert h.open == 1 and h.protected == 0 and h.unprotected[0].symbol == SYM["SOL"]


def test_pause_holds_across_a_coordinator_restart(control_service):
    svc, plane, client = control_service()
    client.call("pause")
    sup = svc.supervisor
    old = sup.children["coordinator"]
    sup.child_failed(old, "test: coordinator crashed")
    wait_for(lambda: (h := sup.children.get("coordinator")) not in (None, old) and h.ref is not None,
             what="a new coordinator, started")
    open_positions(svc, "w-after", (SYM["BTC"], "long", 0.9))
    with svc.db.tx("db_read") as tx:
        sig = tx.get(SignalRow, "w-after-0")
    assert sig.outcome == "skipped" and "paused" in sig.reason
    assert client.call("status").paused is True
