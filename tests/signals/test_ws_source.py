"""The websocket signal source against a real `websockets` server on loopback: subscribe and
auth, waves end to end, a disconnect half-way through a wave and while it opens, duplicate
redelivery after reconnect, and hostile frames rejected with reasons while the next valid
wave is still processed."""
from __future__ import annotations

import json
import logging
import socket

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from loguru import logger
from sqlalchemy import func, select

from actors.messages import CoordinatorStatus
from core.config import ConfigError, SignalsCfg, load_config
from persistence.models import EventRow, PositionRow, SignalRow, WaveRow
from service.view import status_line
from signals.ws_source import WsSource, display_url
from tests.support.helpers import SYM, GateGateway, wait_for, wave
from tests.support.signal_server import Drop, DropMidMessage, Frame, SignalServer
from tests.support.hostile import dumps, json_any, signal_fields

FAST = ("signals.reconnect_min_s=0.05", "signals.reconnect_max_s=0.2", "signals.max_frame_bytes=65536")
TOKEN = "s3cret-Token-4-tests"


@pytest.fixture
def server():
    srv = SignalServer()
    yield srv
    srv.close()


@pytest.fixture
def logs():
    """Every loguru line at DEBUG and up, for asserting what an operator would read."""
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), level="DEBUG", format="{level} {message}")
    yield lines
    logger.remove(sink)


def _start(start_service, server, *overrides):
    return start_service(f"signals.source={server.url}", *FAST, *overrides, source=True)


def _health(svc) -> dict:
    return svc.signals_health()


def _outcomes(svc) -> dict[str, str | None]:
    with svc.db.tx("db_read") as tx:
        return {s.id: s.outcome for s in tx.scalars(select(SignalRow))}


def _positions_by_symbol(svc) -> dict[str, int]:
    with svc.db.tx("db_read") as tx:
        return dict(tx.execute(select(PositionRow.symbol, func.count()).group_by(PositionRow.symbol)).all())


def test_subscribes_with_the_token_and_opens_the_waves_it_receives(server, start_service, logs, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)  # even with every library logging at DEBUG, the token stays out
    monkeypatch.setenv("WAVE_TRADER_SIGNALS_TOKEN", TOKEN)
    server.token = TOKEN
    server.send(wave("w1", (SYM["BTC"], "long", 0.9), (SYM["ETH"], "short", 0.8)),
                wave("w2", (SYM["SOL"], "long", 0.7)))
    svc = _start(start_service, server)
    wait_for(lambda: len(svc.stats.waves) == 2, what="both waves final")
    assert _outcomes(svc) == {"w1-0": "protected", "w1-1": "protected", "w2-0": "protected"}
    assert [json.loads(s) for s in server.subscribes] == [{"op": "subscribe"}]
    assert server.auth_headers == [f"Bearer {TOKEN}"]
    wait_for(lambda: _health(svc)["accepted"] == 2, what="the source to count both waves")
    h = _health(svc)
    assert h["state"] == "connected" and h["connects"] == 1
    assert (h["received"], h["accepted"], h["rejected"], h["duplicates"]) == (2, 2, 0, 0)
    assert h["source"] == server.url and h["last_message_ts"] is not None
    summary = svc.summary()
    assert summary["signals"] == 3 and summary["signal_source"]["accepted"] == 2
    assert "| signals connected, 2 received, 0 rejected, 0 duplicates" in status_line(svc)
    with svc.db.tx("db_read") as tx:
        assert tx.get(WaveRow, "w1").source == server.url
    assert any("connected and subscribed" in line for line in logs)
    assert not any(TOKEN in line for line in logs) and TOKEN not in caplog.text


def test_a_refused_token_is_retried_with_backoff_and_never_logged(server, start_service, logs, monkeypatch):
    monkeypatch.setenv("WAVE_TRADER_SIGNALS_TOKEN", "wrong-" + TOKEN)
    server.token = TOKEN
    svc = _start(start_service, server)
    wait_for(lambda: server.refused >= 3, what="three refused attempts")
    h = _health(svc)
    assert h["state"] == "reconnecting" and h["connects"] == 0
    assert h["last_error"] == "server refused the connection: HTTP 401"
    assert any("HTTP 401; reconnecting in" in line for line in logs)
    assert not any(TOKEN in line for line in logs)


def test_disconnects_mid_wave_and_redelivery_open_each_position_once(server, start_service, logs):
    w1 = wave("w1", (SYM["BTC"], "long", 0.9), (SYM["ETH"], "short", 0.8), (SYM["SOL"], "long", 0.7))
    w2 = wave("w2", (SYM["XRP"], "long", 0.9), (SYM["BTC"], "short", 0.5))
    server.send(DropMidMessage(w1),  # connection 1: half of w1 on the wire, then the line dies
                w1, Drop(),          # connection 2: w1 whole, then dropped while w1 is opening
                w1, w2)              # connection 3: the server redelivers w1, then sends w2
    # w1's entries wait at the gate: it is opening through the drop
    svc = start_service(f"signals.source={server.url}", *FAST, wrap_gateway=GateGateway)
    gate = svc.ctx.gateway
    svc.source = svc._make_source()
    svc.source.start()
    try:
        counts = lambda: tuple(_health(svc)[k] for k in ("received", "accepted", "duplicates", "rejected"))  # noqa: E731
        wait_for(lambda: counts() == (3, 2, 1, 0), what="w1 taken once, its redelivery a duplicate, w2 queued")
        assert _health(svc)["connects"] == 3 and server.connections == 3
        assert svc._coordinator.ask(CoordinatorStatus(), timeout=5)["inbox"] == ["w2"]
    finally:
        gate.gate.set()
    wait_for(lambda: len(svc.stats.waves) == 2, what="both waves final")
    assert _outcomes(svc) == {"w1-0": "protected", "w1-1": "protected", "w1-2": "protected",
                              "w2-0": "protected", "w2-1": "skipped"}
    assert _positions_by_symbol(svc) == {SYM["BTC"]: 1, SYM["ETH"]: 1, SYM["SOL"]: 1, SYM["XRP"]: 1}
    venue = [p.symbol for p in svc.gateway.engine.positions()]
    assert sorted(venue) == sorted(_positions_by_symbol(svc))  # no second order for a redelivered signal
    with svc.db.tx("db_read") as tx:
        dup = tx.scalars(select(EventRow).where(EventRow.kind == "wave_duplicate")).all()
    assert [(e.wave_id, e.data["reason"]) for e in dup] == [("w1", "wave id already received; redelivery ignored")]
    warnings = [line for line in logs if "reconnecting in" in line]
    assert any("connection lost without a close frame" in line for line in warnings)


def test_redelivery_after_a_restart_is_recognised_from_the_database(server, start_service):
    w1 = wave("w1", (SYM["BTC"], "long", 0.9))
    server.send(w1)
    first = _start(start_service, server)
    wait_for(lambda: len(first.stats.waves) == 1, what="w1 final")
    first.shutdown()
    assert first.source.join(5) and _health(first)["state"] == "stopped"
    # the server replays its recent waves to the new process: w1 again, and a new wave that
    # reuses w1's signal id next to a fresh one
    server.send(w1, json.dumps({"wave_id": "w2", "signals": [
        {"id": "w1-0", "symbol": SYM["BTC"], "side": "long", "score": 0.9},
        {"id": "w2-1", "symbol": SYM["ETH"], "side": "long", "score": 0.5}]}))
    second = _start(start_service, server)
    wait_for(lambda: len(second.stats.waves) == 1, what="w2 final")
    wait_for(lambda: _health(second)["duplicates"] == 1, what="w1 counted as a duplicate")
    assert _outcomes(second) == {"w1-0": "protected", "w2-1": "protected"}
    with second.db.tx("db_read") as tx:
        assert tx.get(WaveRow, "w2").n_signals == 1
        received = tx.scalars(select(EventRow).where(EventRow.wave_id == "w2", EventRow.kind == "wave_received")).one()
    assert received.data["duplicates"] == ["w1-0"]
    assert _positions_by_symbol(second) == {SYM["BTC"]: 1, SYM["ETH"]: 1}


def _rejected_waves(svc) -> list[WaveRow]:
    with svc.db.tx("db_read") as tx:
        return list(tx.scalars(select(WaveRow).where(WaveRow.status == "rejected").order_by(WaveRow.received_ts)))


class Probe:
    """After each hostile frame, a valid wave: when it is final, the frame before it has been
    handled, and the source and the service evidently still work."""

    def __init__(self, svc, server) -> None:
        self.svc, self.server, self.n = svc, server, 0

    def __call__(self) -> None:
        self.n += 1
        wid = f"probe-{self.n}"
        self.server.send(wave(wid, (SYM["BTC"], "long", 0.5)))
        wait_for(lambda: any(w.wave_id == wid for w in self.svc.stats.waves), what=f"{wid} final")


HOSTILE = [
    (Frame("x" * 200_000, hangup=True), "frame larger than signals.max_frame_bytes=65536; connection closed (1009)"),
    (Frame(b'{"wave_id": "w\xff"}', text=True, hangup=True), "text frame is not valid UTF-8; connection closed (1007)"),
    (Frame(b'{"wave_id": "w\xff", "signals": []}'), "not valid JSON"),  # a binary frame: ours to refuse
    (Frame("[" * 30_000 + "]" * 30_000), "not valid JSON: nested too deeply"),
    (Frame('{"wave_id": "deep", "signals": [{"id": "a", "symbol": ' + "[" * 900 + "]" * 900 + "}]}"), None),
    (Frame(json.dumps({"wave_id": "n", "ts": 10 ** 400, "signals": [{}]})), "ts must be a finite"),
    (Frame("not json at all"), "not valid JSON"),
    (Frame(json.dumps({"wave_id": "big", "signals": [{}] * 51})), "more than signals.max_wave_size=50"),
]


def test_hostile_frames_are_rejected_with_reasons_and_the_next_wave_runs(server, start_service):
    svc = _start(start_service, server, "signals.reject_burst=1000")  # a row for each, to check its reason
    probe = Probe(svc, server)
    for frame, reason in HOSTILE:
        before = len(_rejected_waves(svc))
        server.send(frame)
        probe()
        if reason is None:  # wave-shaped: recorded, with its bad signal rejected with a reason
            continue
        rejected = _rejected_waves(svc)
        assert len(rejected) == before + 1, f"no rejection recorded for {reason}"
        assert reason in rejected[-1].reason
    with svc.db.tx("db_read") as tx:
        deep = tx.get(SignalRow, "a")
    assert deep.outcome == "rejected" and deep.reason == "symbol must be a non-empty string, got a JSON list"
    h = _health(svc)
    assert h["connects"] == 3  # the two frames the library refused to read each cost a connection
    assert h["rejected"] == len([r for _, r in HOSTILE if r]) and h["errors"] == 0
    assert all(o == "protected" or o == "skipped" for k, o in _outcomes(svc).items() if k.startswith("probe"))
    server.send_json({"op": "error", "reason": "maintenance at 12:00"})  # control: logged, not a wave
    probe()
    assert _health(svc)["rejected"] == h["rejected"]


def test_hypothesis_generated_messages_never_stop_the_source(server, start_service):
    svc = _start(start_service, server, "risk.max_open_positions=50", "signals.reject_burst=1000")
    probe = Probe(svc, server)
    counter = iter(range(10**6))

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(junk=json_any.filter(lambda o: not (isinstance(o, dict) and ("wave_id" in o or "op" in o))),
           sigs=st.lists(signal_fields(), min_size=1, max_size=4), shaped=st.booleans())
    def one(junk, sigs, shaped):
        sigs = [(f, g, i) for f, g, i in sigs if not g]  # only bad signals: nothing may open
        before = len(_rejected_waves(svc))
        if shaped and sigs:
            wid = f"hyp-{next(counter)}"
            for f, _, id_good in sigs:  # signal ids are global: unique per example, as a server's
                if id_good:
                    f["id"] = f"{wid}-{f['id']}"
            server.send(dumps({"wave_id": wid, "signals": [f for f, *_ in sigs]}))
            probe()
            with svc.db.tx("db_read") as tx:
                rows = list(tx.scalars(select(SignalRow).where(SignalRow.wave_id == wid)))
            assert len(rows) == len(sigs) and all(r.outcome == "rejected" and r.reason for r in rows)
        else:
            server.send(json.dumps(junk))
            probe()
            rejected = _rejected_waves(svc)
            assert len(rejected) == before + 1 and rejected[-1].reason
    one()
    h = _health(svc)
    assert probe.n >= 30  # the examples really went over the wire
    assert h["state"] == "connected" and h["connects"] == 1 and h["errors"] == 0


def test_backoff_is_exponential_jittered_and_capped():
    cfg = SignalsCfg(reconnect_min_s=0.5, reconnect_max_s=30)
    src = WsSource("ws://127.0.0.1:1/x", lambda *a: None, lambda *a: None, cfg, seed=1)
    for attempt in range(40):
        cap = min(30.0, 0.5 * 2 ** attempt)
        delays = {src.backoff_s(attempt) for _ in range(20)}
        assert all(cap / 2 <= d <= cap for d in delays) and len(delays) > 1


def test_an_unreachable_server_shows_in_health_and_a_bad_url_stops_the_start(start_service):
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    svc = start_service(f"signals.source=ws://user:pw@127.0.0.1:{port}/feed?token=abc", *FAST, source=True)
    wait_for(lambda: _health(svc)["state"] == "reconnecting" and _health(svc)["last_error"], what="a failed attempt")
    h = _health(svc)
    assert "ConnectionRefusedError" in h["last_error"] and h["connects"] == 0
    assert h["source"] == f"ws://127.0.0.1:{port}/feed"  # no credentials, no query string
    assert display_url("wss://[::1]:9/a?b=c") == "wss://[::1]:9/a"
    with pytest.raises(Exception, match="isn't a valid URI|invalid"):
        WsSource("ws://", lambda *a: None, lambda *a: None, SignalsCfg())
    with pytest.raises(ConfigError, match="signals: Value error, source 'ws:///feed' has no host"):
        load_config(None, ["signals.source=ws:///feed"])
    with pytest.raises(ConfigError, match="a ws:// / wss:// URL"):
        load_config(None, ["signals.source=http://signals.example/feed"])
    assert load_config(None, ["signals.source=file:///tmp/w.jsonl"]).signals.source == "file:///tmp/w.jsonl"
