"""/metrics and /healthz scraped over real HTTP on the loopback interface."""
from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from core.faults import FaultRule
from tests.support.control_support import open_positions
from tests.support.helpers import SYM, wait_for, wave


def scrape(plane) -> dict[tuple[str, tuple], float]:
    assert plane.metrics_url().startswith("http://127.0.0.1:")
    text = urllib.request.urlopen(plane.metrics_url() + "/metrics", timeout=10).read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def healthz(plane) -> tuple[int, dict]:
    try:
        resp = urllib.request.urlopen(plane.metrics_url() + "/healthz", timeout=10)
        return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_metrics_show_coverage_restarts_and_call_latency(control_service):
    svc, plane, client = control_service()
    open_positions(svc, "w1", (SYM["BTC"], "long", 0.9), (SYM["ETH"], "short", 0.8))
    m = scrape(plane)
    assert m[("wavetrader_positions_open", ())] == 2
    assert m[("wavetrader_trailing_coverage_ratio", ())] == 1.0
    assert m[("wavetrader_supervisor_restarts_total", ())] == 0
    assert m[("wavetrader_venue_call_seconds_count", (("op", "place_order"),))] == 6  # entry, stop, trailing × 2
    assert m[("wavetrader_venue_call_seconds_sum", (("op", "place_order"),))] > 0
    assert m[("wavetrader_db_call_seconds_count", ())] > 0
    assert m[("wavetrader_signal_outcomes", (("outcome", "protected"),))] == 2
    assert m[("wavetrader_health", (("status", "healthy"),))] == 1
    # the venue's record of entry fill → stop resting: after_fill here, so each was one call naked
    assert m[("wavetrader_protection_gap_seconds_count", ())] == 2
    assert m[("wavetrader_protection_gap_seconds_bucket", (("le", "0.0"),))] == 0
    code, body = healthz(plane)
    assert code == 200 and body["status"] == "healthy" and body["coverage"] == 1.0

    client.call("restart", target="ETH")
    m = wait_for(lambda: (m := scrape(plane)).get(("wavetrader_venue_call_seconds_count", (("op", "positions"),)))
                 and m, what="the restarted actor's reconciliation calls")
    assert m[("wavetrader_supervisor_restarts_total", ())] == 1
    assert m[("wavetrader_venue_call_seconds_count", (("op", "positions"),))] >= 1  # the reconciliation
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(plane.metrics_url() + "/nothing-here", timeout=10)
    assert e.value.code == 404


def test_healthz_is_503_while_a_position_is_unprotected_past_the_critical_threshold(control_service):
    svc, plane, client = control_service("deadlines.operation_s=60", "deadlines.protect_s=60",
                                         "health.unprotected_critical_s=0")
    svc.venue_faults.add(FaultRule("hang", op="place_order", leg="stop", symbols=[SYM["SOL"]]))
    svc.submit(wave("w1", (SYM["SOL"], "long", 0.9)), "t")
    wait_for(lambda: plane.health.report().status == "critical", what="critical health")
    code, body = healthz(plane)
    assert code == 503 and body["status"] == "critical" and body["unprotected"] == 1
    assert "unprotected" in body["reasons"][0]
    m = scrape(plane)
    assert m[("wavetrader_health", (("status", "critical"),))] == 1
    assert m[("wavetrader_positions_unprotected", ())] == 1
    assert m[("wavetrader_unprotected_max_seconds", ())] > 0


def test_a_taken_metrics_port_does_not_stop_trading(control_service):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        svc, plane, client = control_service(f"control.metrics_port={port}")
        assert plane.metrics_url() is None and "Address already in use" in plane.http_error
        assert client.call("status").metrics_url is None
        open_positions(svc, "w1", (SYM["BTC"], "long", 0.9))
        assert client.call("health").trailing == 1
