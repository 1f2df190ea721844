"""Backpressure: one wave opens at a time; later waves wait in a bounded inbox, the oldest
waiting wave is dropped when it is full, a wave that went stale waiting is skipped, and a
restarted coordinator re-queues what was waiting. Every signal keeps exactly one outcome."""
from __future__ import annotations

import re
import time

import pytest
from sqlalchemy import select

from actors.inbox import QueuedWave, WaveInbox
from actors.messages import CoordinatorStatus
from persistence.models import PositionRow, SignalRow, WaveRow
from tests.support.helpers import SYM, GateGateway, wait_for, wave


@pytest.fixture
def gated(start_service):
    """Start a service whose entries wait at a gate; the gate opens at teardown in any case,
    so a failing test does not leave actors blocked for the shutdown deadline."""
    gates = []

    def _start(*overrides):
        svc = start_service(*overrides, wrap_gateway=GateGateway)
        gw = svc.ctx.gateway
        gates.append(gw.gate)
        return svc, gw
    yield _start
    for g in gates:
        g.set()


def _status(svc) -> dict:
    return svc._coordinator.ask(CoordinatorStatus(), timeout=5)


def _waves(svc) -> dict[str, WaveRow]:
    with svc.db.tx("db_read") as tx:
        return {w.id: w for w in tx.scalars(select(WaveRow))}


def _signals(svc) -> dict[str, SignalRow]:
    with svc.db.tx("db_read") as tx:
        return {s.id: s for s in tx.scalars(select(SignalRow))}


def _symbols_with_positions(svc) -> set[str]:
    with svc.db.tx("db_read") as tx:
        return set(tx.scalars(select(PositionRow.symbol)))


def test_inbox_keeps_its_bound_by_dropping_the_oldest():
    box = WaveInbox(2)
    waves = [QueuedWave(f"w{i}", 0.0, ()) for i in range(4)]
    assert box.offer(waves[0]) == [] and box.offer(waves[1]) == []
    assert box.offer(waves[2]) == [waves[0]]
    assert box.ids() == ["w1", "w2"] and "w2" in box and "w0" not in box
    assert box.pop() is waves[1] and len(box) == 1
    assert WaveInbox(0).offer(waves[3]) == [waves[3]]  # no room at all: the newcomer itself


def test_waves_queue_behind_an_opening_wave_and_the_oldest_is_dropped_when_full(gated):
    svc, gw = gated("signals.inbox_size=2")
    assert svc.submit(wave("w1", (SYM["BTC"], "long", 0.9)), "t").status == "opening"
    assert svc.submit(wave("w2", (SYM["ETH"], "long", 0.9)), "t").status == "queued"
    assert svc.submit(wave("w3", (SYM["SOL"], "long", 0.9)), "t").status == "queued"
    assert svc.submit(wave("w4", (SYM["XRP"], "long", 0.9), (SYM["ADA"], "short", 0.5)), "t").status == "queued"
    assert svc.submit(wave("w4", (SYM["XRP"], "long", 0.9), (SYM["ADA"], "short", 0.5)), "t").status == "duplicate"

    # w2 was the oldest waiting wave: dropped for w4, its signal skipped with the reason
    assert _status(svc)["inbox"] == ["w3", "w4"]
    sigs, waves = _signals(svc), _waves(svc)
    assert sigs["w2-0"].outcome == "skipped"
    assert sigs["w2-0"].reason == "dropped from the full inbox (signals.inbox_size=2) for the newer wave w4"
    assert waves["w2"].status == "complete" and waves["w2"].reason == sigs["w2-0"].reason
    assert waves["w3"].status == waves["w4"].status == "queued"
    assert sigs["w3-0"].outcome is None and sigs["w4-1"].outcome is None
    assert _symbols_with_positions(svc) == {SYM["BTC"]}  # nothing behind w1 has started

    gw.gate.set()
    wait_for(lambda: len(svc.stats.waves) == 4, what="all four waves final")
    assert [w.wave_id for w in svc.stats.waves] == ["w2", "w1", "w3", "w4"]
    sigs = _signals(svc)
    assert {k: v.outcome for k, v in sigs.items()} == {
        "w1-0": "protected", "w2-0": "skipped", "w3-0": "protected", "w4-0": "protected", "w4-1": "protected"}
    assert _symbols_with_positions(svc) == {SYM[n] for n in ("BTC", "SOL", "XRP", "ADA")}
    assert sum(sum(w.outcomes.values()) for w in svc.stats.waves) == len(sigs)
    assert _status(svc)["inbox"] == []


def test_with_no_inbox_a_wave_arriving_during_another_is_skipped(gated):
    svc, gw = gated("signals.inbox_size=0")
    assert svc.submit(wave("w1", (SYM["BTC"], "long", 0.9)), "t").status == "opening"
    res = svc.submit(wave("w2", (SYM["ETH"], "long", 0.9)), "t")
    assert res.status == "complete" and res  # taken, and already final
    assert _signals(svc)["w2-0"].reason == "not opened: a wave was still opening and signals.inbox_size=0"
    gw.gate.set()
    wait_for(lambda: len(svc.stats.waves) == 2, what="both waves final")


def test_a_wave_that_went_stale_in_the_inbox_is_skipped_not_opened(gated):
    svc, gw = gated("signals.max_age_s=30")
    svc.submit(wave("w1", (SYM["BTC"], "long", 0.9)), "t")
    ts = time.time() - 29.5  # fresh enough to be taken, not to be opened after the wait below
    assert svc.submit(wave("w2", (SYM["ETH"], "long", 0.9), ts=ts), "t").status == "queued"
    wait_for(lambda: time.time() - ts > 30.2, timeout=5, what="w2 to pass signals.max_age_s")
    gw.gate.set()
    wait_for(lambda: len(svc.stats.waves) == 2, what="both waves final")
    s = _signals(svc)["w2-0"]
    # the age is when w2 was admitted, after w1 settled: past 30 s, by how much depends on the machine
    m = re.fullmatch(r"expired in the inbox: wave is (\d+)s old, older than signals.max_age_s=30", s.reason)
    assert s.outcome == "skipped" and m and int(m[1]) >= 30, s.reason
    assert SYM["ETH"] not in _symbols_with_positions(svc)


def test_a_restarted_coordinator_requeues_the_waiting_waves(gated):
    svc, gw = gated()
    svc.submit(wave("w1", (SYM["BTC"], "long", 0.9)), "t")
    assert svc.submit(wave("w2", (SYM["ETH"], "long", 0.9)), "t").status == "queued"
    old = svc._coordinator
    svc.supervisor.children["coordinator"].crashed(RuntimeError("injected by the test"))
    wait_for(lambda: svc._coordinator is not old and svc._coordinator.is_alive(), what="a new coordinator")
    assert _status(svc)["inbox"] == ["w2"]  # still waiting: w1 is still opening
    assert _symbols_with_positions(svc) == {SYM["BTC"]}
    gw.gate.set()
    wait_for(lambda: {s.id: s.outcome for s in _signals(svc).values()} == {"w1-0": "protected", "w2-0": "protected"},
             what="both signals protected after the restart")
    # the wave row is completed in the transaction after its last outcome's
    wait_for(lambda: _waves(svc)["w2"].status == "complete", what="w2 complete")
