"""Shutdown never strands a position: whatever was opening when it began ends with a stop
resting at the venue (judged from the paper venue's own books, not our rows)."""
from __future__ import annotations

import threading

from core.position_types import Leg
from tests.support.helpers import SYM, wait_for, wave


def test_a_shutdown_as_a_wave_opens_leaves_every_venue_position_with_a_resting_stop(start_service):
    # Each position row takes 300 ms to create: the shutdown begins while the coordinator is
    # still in the middle of starting the wave's positions.
    svc = start_service("paper.latency_ms=200", "risk.max_positions_per_wave=4", "deadlines.shutdown_s=10",
                        "faults.db=[{kind='latency', op='position_create', latency_ms=300}]")
    names = ["BTC", "ETH", "SOL", "XRP"]
    assert svc.submit(wave("w1", *[(SYM[n], "long", 0.9 - i / 10) for i, n in enumerate(names)]), "test")
    wait_for(lambda: svc.db_faults.rules[0].fired, what="the first position row on its way")
    svc.shutdown()
    engine = svc.gateway.engine
    sent = set(engine.account.orders)
    # Nothing of ours acts once shutdown has returned: no order reaches the venue afterwards
    # (a position started behind the shutdown's back would send its entry now).
    threading.Event().wait(2.0)
    assert set(engine.account.orders) == sent, f"sent after shutdown: {sorted(set(engine.account.orders) - sent)}"
    held = {p.symbol for p in engine.positions()}
    resting = {o.symbol for o in engine.open_orders() if o.leg is Leg.STOP}
    assert held, "the wave opened positions before the shutdown finished"
    assert held <= resting, f"held without a resting stop: {sorted(held - resting)}"
