from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import settings
from loguru import logger

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.helpers import make_config  # noqa: E402

# Fixtures every test may ask for by name: the PostgreSQL test cluster and its per-test database,
# a Service with its control plane, a second local user.
pytest_plugins = ["tests.support.pg", "tests.support.control_support", "tests.support.local_user"]

# A per-example deadline measures the machine, not the code: a shared CI core that stalls one
# example for 200 ms would fail a property that holds. Correctness is what the properties check.
settings.register_profile("wave-trader", deadline=None)
settings.load_profile("wave-trader")


@pytest.fixture(autouse=True)
def _quiet_logs():
    logger.remove()
    logger.add(sys.stderr, level="WARNING", format="{time:HH:mm:ss.SSS} {level} {thread.name} {message}")
    yield


@pytest.fixture
def start_service(tmp_path):
    """Factory: start a Service on a test config (no signal source); shut down at teardown."""
    from service.app import Service

    started = []

    def _start(*overrides: str, cfg=None, db_url: str | None = None, source: bool = False, wrap_gateway=None):
        svc = Service(cfg or make_config(tmp_path, *overrides, db_url=db_url), wrap_gateway=wrap_gateway)
        svc.start(with_source=source)
        started.append(svc)
        return svc

    yield _start
    for svc in started:
        for plan in (svc.venue_faults, svc.db_faults, svc.actor_faults):
            plan.release()  # wake abandoned threads so they can be fenced and end
        svc.shutdown()
