"""Fixtures for control-plane tests: a real Service with its real control plane attached."""
from __future__ import annotations

import pytest

from tests.support.helpers import make_config, wait_for, wave

# The database p99 threshold is raised: with a few dozen statements the p99 is the slowest one,
# and one slow fsync on a shared CI disk must not turn a "healthy" assertion into "degraded".
FAST = ("control.metrics_port=0", "control.request_timeout_s=5", "health.sample_interval_s=0.05",
        "health.db_p99_degraded_s=30")


def start_controlled(cfg):
    """Exactly the order `bin/trader run` uses: claim the socket, build, attach, start."""
    from service.control_plane import ControlPlane
    from service.app import Service

    plane = ControlPlane(cfg)
    try:
        svc = Service(cfg, metrics=plane.metrics)
    except BaseException:
        plane.stop()
        raise
    plane.attach(svc)
    svc.start(with_source=False)
    plane.start()
    return svc, plane


def stop_controlled(svc, plane) -> None:
    for plan in (svc.venue_faults, svc.db_faults, svc.actor_faults):
        plan.release()
    plane.stop()
    svc.shutdown()


@pytest.fixture
def control_service(tmp_path):
    """Factory: (svc, plane, client) on a test config; everything stopped at teardown."""
    from control.client import ControlClient

    running = []

    def _start(*overrides: str, cfg=None):
        cfg = cfg or make_config(tmp_path, *FAST, *overrides)
        svc, plane = start_controlled(cfg)
        running.append((svc, plane))
        return svc, plane, ControlClient(plane.lock.path, timeout_s=20)

    def _stop(svc) -> None:
        for item in list(running):
            if item[0] is svc:
                running.remove(item)
                stop_controlled(*item)

    _start.stop = _stop
    yield _start
    for item in reversed(running):
        stop_controlled(*item)


def open_positions(svc, wave_id: str, *signals) -> None:
    """Submit a wave and wait until every signal has its outcome."""
    n = len(svc.stats.waves)
    assert svc.submit(wave(wave_id, *signals), "test")
    wait_for(lambda: len(svc.stats.waves) > n, what=f"wave {wave_id}")


def venue_orders(svc, symbol: str) -> dict:
    """Every order the paper venue knows for a symbol, by client id."""
    orders = list(svc.gateway.engine.account.orders.items())  # one copy: actors add orders meanwhile
    return {cid: o for cid, o in orders if o.symbol == symbol}


def venue_qty(svc, symbol: str):
    return next((p.qty for p in svc.gateway.engine.positions() if p.symbol == symbol), 0)
