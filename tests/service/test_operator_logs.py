"""The log tells the story at the right level: a protective order's trouble at WARNING, an
emergency close at ERROR, one line per wave with its skips counted by reason."""
from __future__ import annotations

import pytest
from loguru import logger

from core.faults import FaultRule
from tests.support.helpers import SYM, wait_for, wave


@pytest.fixture
def log_lines():
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m).rstrip()), level="DEBUG", format="{level} {message}")
    yield lines
    logger.remove(sink)


def test_a_502_on_a_stop_its_lookup_and_retry_are_warnings(start_service, log_lines):
    svc = start_service()
    svc.venue_faults.rules.append(FaultRule("unavailable", op="place_order", leg="stop", times=1))
    svc.submit(wave("w1", (SYM["BTC"], "long", 0.9)), "test")
    wait_for(lambda: svc.stats.waves, what="the wave")
    assert svc.stats.waves[0].outcomes == {"protected": 1}
    warn = [x for x in log_lines if x.startswith("WARNING ")]
    assert any("stop order" in x and "502 Bad Gateway" in x and "looking it up by client id" in x for x in warn), warn
    assert any("lookup of stop order" in x and "never placed" in x for x in warn), warn
    assert any("stop order not placed; retrying in" in x for x in warn), warn


def test_an_emergency_close_is_an_error(start_service, log_lines):
    svc = start_service()
    svc.venue_faults.rules.append(FaultRule("invalid", op="place_order", leg="stop"))
    svc.submit(wave("w1", (SYM["BTC"], "long", 0.9)), "test")
    wait_for(lambda: svc.stats.waves, what="the wave")
    assert svc.stats.waves[0].outcomes == {"emergency_closed": 1}
    errors = [x for x in log_lines if x.startswith("ERROR ") and SYM["BTC"] in x]
    assert any("emergency_closed: emergency: protection failed" in x for x in errors), log_lines


def test_one_line_per_wave_counts_its_skips(start_service, log_lines):
    svc = start_service()
    svc.submit(wave("w1", (SYM["BTC"], "long", 0.9), (SYM["ETH"], "long", 0.8)), "test")
    wait_for(lambda: svc.stats.waves, what="wave 1")
    svc.submit(wave("w2", (SYM["BTC"], "long", 0.9), (SYM["ETH"], "long", 0.8), (SYM["SOL"], "long", 0.7)), "test")
    wait_for(lambda: len(svc.stats.waves) == 2, what="wave 2")
    info = [x for x in log_lines if x.startswith("INFO ")]
    assert not [x for x in info if "signal w2-" in x], "no INFO line per skipped signal"
    (done,) = [x for x in info if x.startswith("INFO wave w2 complete in")]
    assert done.endswith("1 protected, 2 skipped; skipped 2: already has an open position"), done
