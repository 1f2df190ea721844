"""The fault table (README: Supervision, deadlines and fault rehearsal) against real actors, the real paper venue and real SQLite."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

from sqlalchemy import func, select

from core.client_ids import epoch_of
from core.faults import FaultRule
from persistence.models import EventRow, OrderRow, PositionRow, SignalRow
from service.invariants import check_invariants, settle
from tests.support.helpers import SYM, wait_for, wave
from tests.service.test_wave_flow import BarrierGateway

ROOT = Path(__file__).resolve().parents[2]
# Short enough that a hang is restarted within seconds, long enough that a shared CI core
# never pushes an innocent call past its deadline (the counts of restarts below are exact).
FAST = ("deadlines.venue_call_s=2", "deadlines.db_call_s=2", "deadlines.operation_s=4",
        "deadlines.protect_s=10")


def _position(svc, symbol):
    with svc.db.tx("db_read") as tx:
        return tx.scalars(select(PositionRow).where(PositionRow.symbol == symbol)).one()


def _outcomes(svc, wave_id):
    with svc.db.tx("db_read") as tx:
        return {s.symbol: (s.outcome, s.reason) for s in tx.scalars(select(SignalRow).where(SignalRow.wave_id == wave_id))}


def _venue_orders(svc, symbol):
    return [o for o in svc.gateway.engine.open_orders(symbol)]


def test_wave_of_7_with_2s_calls_is_protected_without_waiting(start_service):
    svc = start_service("paper.latency_ms=2000", "deadlines.venue_call_s=10", "deadlines.operation_s=15",
                        wrap_gateway=lambda inner: BarrierGateway(inner, 7))
    gw = svc.ctx.gateway
    names = ["BTC", "ETH", "SOL", "XRP", "DOGE", "ADA", "AVAX"]
    svc.submit(wave("w", *[(SYM[n], "long", 1 - i / 10) for i, n in enumerate(names)]), "t")
    wait_for(lambda: svc.stats.waves, timeout=40, what="wave of 7 at 2 s per call")
    assert not gw.broken, "an entry waited for another position"
    assert svc.stats.waves[0].outcomes == {"protected": 7}
    assert not check_invariants(svc)


def test_hung_db_write_is_replaced_and_the_wave_completes(start_service):
    svc = start_service(*FAST)
    svc.db_faults.add(FaultRule("hang", op="db_write", symbols=[SYM["ETH"]], times=1))
    svc.submit(wave("w", (SYM["BTC"], "long", .9), (SYM["ETH"], "long", .8), (SYM["SOL"], "short", .7),
                    (SYM["XRP"], "long", .6)), "t")
    wait_for(lambda: svc.stats.waves, timeout=30, what="wave completion despite a hung write")
    assert svc.stats.waves[0].outcomes == {"protected": 4}
    assert svc.supervisor.stats.restarts == 1
    assert svc.supervisor.abandoned_alive() == 1, "the stuck thread is abandoned, not joined"
    eth = _position(svc, SYM["ETH"])
    assert eth.epoch == 2 and eth.phase == "trailing"
    assert all(_position(svc, SYM[n]).epoch == 1 for n in ("BTC", "SOL", "XRP")), "others untouched"
    assert settle(svc) and not check_invariants(svc)


def test_stop_fails_with_502_once_then_succeeds(start_service):
    svc = start_service(*FAST)
    svc.venue_faults.add(FaultRule("unavailable", op="place_order", leg="stop", symbols=[SYM["BTC"]], times=1))
    svc.submit(wave("w", (SYM["BTC"], "long", .9)), "t")
    wait_for(lambda: svc.stats.waves, what="wave")
    assert _outcomes(svc, "w")[SYM["BTC"]][0] == "protected"
    with svc.db.tx("db_read") as tx:
        stops = list(tx.scalars(select(OrderRow).where(OrderRow.leg == "s").order_by(OrderRow.created_ts)))
        kinds = list(tx.scalars(select(EventRow.kind).where(EventRow.position_id == stops[0].position_id)))
    assert [s.status for s in stops] == ["not_found", "open"]  # looked up before re-sending
    assert "order_outcome_unknown" in kinds and "retrying" in kinds
    assert [o.cid for o in _venue_orders(svc, SYM["BTC"]) if o.leg.value == "s"] == [stops[1].cid]


def test_stop_that_keeps_failing_closes_the_position(start_service):
    svc = start_service(*FAST, "protection.max_attempts=3")
    svc.venue_faults.add(FaultRule("unavailable", op="place_order", leg="stop", symbols=[SYM["BTC"]]))
    svc.submit(wave("w", (SYM["BTC"], "long", .9)), "t")
    wait_for(lambda: svc.stats.waves, what="wave")
    outcome, reason = _outcomes(svc, "w")[SYM["BTC"]]
    assert outcome == "emergency_closed" and "protection failed" in reason and "attempt 3" in reason
    assert SYM["BTC"] not in {p.symbol for p in svc.gateway.engine.positions()}
    assert _position(svc, SYM["BTC"]).phase == "emergency_closed"


def test_timeout_on_an_accepted_order_adopts_it_without_duplicate(start_service):
    svc = start_service(*FAST)
    svc.venue_faults.add(FaultRule("timeout_accepted", op="place_order", leg="entry", symbols=[SYM["BTC"]], times=1))
    svc.venue_faults.add(FaultRule("timeout_accepted", op="place_order", leg="stop", symbols=[SYM["BTC"]], times=1))
    svc.submit(wave("w", (SYM["BTC"], "long", .9)), "t")
    wait_for(lambda: svc.stats.waves, what="wave")
    assert _outcomes(svc, "w")[SYM["BTC"]][0] == "protected"
    p = _position(svc, SYM["BTC"])
    with svc.db.tx("db_read") as tx:
        legs = list(tx.execute(select(OrderRow.leg, OrderRow.status)).all())
    assert sorted(legs) == [("e", "filled"), ("s", "open"), ("t", "open")], "adopted, nothing re-sent"
    (venue,) = [v for v in svc.gateway.engine.positions() if v.symbol == SYM["BTC"]]
    assert venue.qty == p.qty
    assert len([o for o in _venue_orders(svc, SYM["BTC"]) if o.leg.value == "s"]) == 1


def test_old_epoch_actor_that_wakes_up_is_fenced(start_service):
    svc = start_service(*FAST)
    svc.venue_faults.add(FaultRule("hang", op="place_order", leg="stop", symbols=[SYM["BTC"]], times=1))
    svc.db_faults.add(FaultRule("hang", op="db_write", symbols=[SYM["ETH"]], times=1))
    svc.submit(wave("w", (SYM["BTC"], "long", .9), (SYM["ETH"], "short", .8)), "t")
    wait_for(lambda: svc.stats.waves, timeout=30, what="wave")
    assert svc.stats.waves[0].outcomes == {"protected": 2}
    assert svc.supervisor.abandoned_alive() == 2
    with svc.db.tx("db_read") as tx:
        before = tx.scalar(select(func.count()).select_from(EventRow).where(EventRow.epoch == 1)), \
            tx.scalar(select(func.count()).select_from(OrderRow).where(OrderRow.epoch == 1))
    stale = svc.supervisor.abandoned
    svc.venue_faults.release()
    svc.db_faults.release()
    wait_for(lambda: not svc.supervisor.abandoned_alive(), what="abandoned threads to wake and stand down")
    for _, _, thread in stale:
        thread.join(timeout=5)
    with svc.db.tx("db_read") as tx:
        after = tx.scalar(select(func.count()).select_from(EventRow).where(EventRow.epoch == 1)), \
            tx.scalar(select(func.count()).select_from(OrderRow).where(OrderRow.epoch == 1))
    assert after == before, "an old epoch changed the database after its replacement"
    for sym in ("BTC", "ETH"):
        p = _position(svc, SYM[sym])
        assert p.epoch == 2 and p.phase == "trailing"
        cids = [o.cid for o in _venue_orders(svc, SYM[sym])]
        assert cids and all(epoch_of(c) == 2 for c in cids), f"old-epoch order at venue: {cids}"
    assert settle(svc) and not check_invariants(svc)


def test_crash_loop_is_bounded_then_escalated(start_service):
    svc = start_service(*FAST, "supervisor.max_restarts=2", "supervisor.restart_window_s=60")
    svc.submit(wave("w", (SYM["BTC"], "long", .9), (SYM["ETH"], "long", .8)), "t")
    wait_for(lambda: svc.stats.waves, what="wave")
    svc.actor_faults.add(FaultRule("crash", op="recover", symbols=[SYM["BTC"]]))
    btc = _position(svc, SYM["BTC"])
    svc.supervisor.child_failed(svc.supervisor.children[btc.id], "test: forced restart")
    wait_for(lambda: svc.supervisor.stats.escalations, timeout=20, what="escalation")
    wait_for(lambda: _position(svc, SYM["BTC"]).phase == "closed", what="escalated position closed")
    p = _position(svc, SYM["BTC"])
    assert svc.supervisor.stats.restarts == 2 and p.needs_attention and "intensity" in p.attention_reason
    assert SYM["BTC"] not in {v.symbol for v in svc.gateway.engine.positions()}
    assert not _venue_orders(svc, SYM["BTC"]), "escalation leaves no resting orders behind"
    assert _outcomes(svc, "w")[SYM["BTC"]][0] == "protected", "the outcome stays the one given"
    assert _position(svc, SYM["ETH"]).phase == "trailing" and _position(svc, SYM["ETH"]).epoch == 1


def test_stuck_thread_does_not_block_exit(tmp_path):
    """`bin/trader run` with a DB write that never returns still completes and exits."""
    waves = tmp_path / "w.jsonl"
    waves.write_text(wave("w", (SYM["BTC"], "long", .9), (SYM["ETH"], "long", .8)) + "\n")
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'''run_dir = "{tmp_path}"
[control]
metrics_port = 0
[database]
url = "sqlite:///{tmp_path}/t.db"
[signals]
source = "file:{waves}"
[paper]
tick_interval_ms = 0
[log]
file = ""
[deadlines]
venue_call_s = 2
db_call_s = 2
operation_s = 4
shutdown_s = 3
[[faults.db]]
kind = "hang"
op = "db_write"
symbols = ["{SYM["ETH"]}"]
times = 1
''')
    proc = subprocess.run([str(ROOT / "bin/trader"), "run", "--config", str(cfg), "--waves", "1", "--json", "--quiet"],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["outcomes"] == {"protected": 2} and summary["restarts"] == 1
    assert summary["abandoned_threads"] == 1


def test_a_position_that_can_be_neither_protected_nor_closed_is_escalated_and_settled(start_service):
    """Stop refused, exit refused every time: retried, restarted past protect_s, escalated; the
    direct close fails too — the signal still gets its one outcome and the wave completes."""
    svc = start_service(*FAST, "deadlines.protect_s=0.5", "supervisor.max_restarts=1")
    for leg in ("stop", "exit"):
        svc.venue_faults.add(FaultRule("invalid", op="place_order", leg=leg, symbols=[SYM["BTC"]]))
    svc.submit(wave("w", (SYM["BTC"], "long", .9), (SYM["ETH"], "long", .8)), "t")
    wait_for(lambda: svc.stats.waves, timeout=30, what="the wave to complete")
    outcome, reason = _outcomes(svc, "w")[SYM["BTC"]]
    assert outcome == "unprotected" and "flagged for the operator" in reason
    p = _position(svc, SYM["BTC"])
    assert p.needs_attention and p.active_symbol == SYM["BTC"], "still held: no new position on it"
    assert svc.supervisor.stats.escalations == 1
    assert svc.stats.waves[0].outcomes == {"protected": 1, "unprotected": 1}
    assert svc.summary()["ts_coverage"] == 0.5
