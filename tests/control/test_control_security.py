"""The control socket under hostile or clumsy input: permissions, ownership of the path,
malformed, unknown, invalid and oversized requests — and no secret in anything it shows."""
from __future__ import annotations

import json
import os
import socket
import stat
import urllib.request

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from control import protocol as p
from control.commands import masked_db_url
from control.replies import ActionReply
from service.control_plane import ControlPlane
from control.server import ControlServer, ServiceAlreadyRunning, SocketLock, respond
from tests.support.control_support import FAST, open_positions
from tests.support.helpers import SYM, make_config

FAKE_SECRET = "sEcReT-7f3a9c1d2e4b-do-not-leak"


def _exchange(path, *frames: bytes) -> list[dict]:
    """Send frames on one connection; read one reply per frame (or until the server closes)."""
    replies = []
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(str(path))
        f = s.makefile("rb")
        for frame in frames:
            try:
                s.sendall(frame)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server gave up on this frame; its error reply may still be waiting
            line = f.readline()
            if not line:
                break
            replies.append(json.loads(line))
    return replies


def test_socket_is_owner_only_and_gone_after_stop(control_service):
    svc, plane, client = control_service()
    path = plane.lock.path
    mode = os.lstat(path).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
    assert stat.S_IMODE(os.stat(path.with_name(path.name + ".lock")).st_mode) == 0o600
    assert client.call("status").pid == os.getpid()
    control_service.stop(svc)
    assert not path.exists()


def test_a_live_service_keeps_its_socket_and_a_stale_one_is_replaced(control_service, tmp_path):
    svc, plane, client = control_service()
    with pytest.raises(ServiceAlreadyRunning, match=f"pid {os.getpid()}"):
        ControlPlane(make_config(tmp_path, *FAST))
    assert client.call("health").status == "healthy"  # the refused newcomer changed nothing

    stale = tmp_path / "other" / "control.sock"
    stale.parent.mkdir()
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(stale))
    s.close()  # left behind by a killed process: nobody holds its lock
    lock = SocketLock(stale)
    server = ControlServer(lock, lambda cmd, args: p.COMMANDS["health"][1].model_validate(
        client.call("health").model_dump()))
    server.start()
    try:
        assert _exchange(stale, p.encode_request("health"))[0]["ok"] is True
    finally:
        server.stop()
    not_a_socket = tmp_path / "file.sock"
    not_a_socket.write_text("precious")
    with pytest.raises(ServiceAlreadyRunning, match="not a socket"):
        ControlServer(SocketLock(not_a_socket), lambda c, a: None).start()
    assert not_a_socket.read_text() == "precious"


def test_bad_requests_get_clear_errors_and_the_service_keeps_trading(control_service):
    svc, plane, client = control_service()
    path = plane.lock.path
    replies = _exchange(
        path,
        b"this is not json\n",
        b'["a", "list"]\n',
        b'{"v": 1, "cmd": "rm -rf /", "args": {}}\n',
        b'{"v": 1, "cmd": "set", "args": {"param": "callback", "value": "lots"}}\n',
        b'{"v": 1, "cmd": "close", "args": {"target": "BTC", "extra": 1}}\n',
        b'{"v": 2, "cmd": "status"}\n',
        b'{"v": 1, "cmd": "__import__(\'os\').system(\'id\')"}\n',
        b'{"v": 1, "id": "x1", "cmd": "health"}\n',  # the same connection still works
    )
    codes = [r["error"]["code"] if not r["ok"] else "ok" for r in replies]
    assert codes == ["malformed", "malformed", "unknown_command", "bad_arguments", "bad_arguments",
                     "unsupported_version", "unknown_command", "ok"]
    assert replies[-1]["id"] == "x1"
    assert "known: status" in replies[2]["error"]["message"]
    assert any("value" in d for d in replies[3]["error"]["details"])
    assert any("extra" in d for d in replies[4]["error"]["details"])

    big = b'{"v": 1, "cmd": "status", "args": {"pad": "' + b"x" * (cfg_max(plane) + 10) + b'"}}\n'
    replies = _exchange(path, big, p.encode_request("health"))
    assert [r["ok"] or r["error"]["code"] for r in replies] == ["too_large", True]  # the line is skipped
    assert "longer than 65536 bytes" in replies[0]["error"]["message"]
    endless = b"x" * (cfg_max(plane) * 20)  # no newline within the bound: error, then the connection ends
    replies = _exchange(path, endless, p.encode_request("health"))
    assert replies[0]["error"]["code"] == "too_large" and "connection closed" in replies[0]["error"]["message"]

    with pytest.raises(p.ProtocolError) as e:
        client.call("close", target="DOGE")  # a real symbol with no open position
    assert e.value.code == "not_found"
    with pytest.raises(p.ProtocolError) as e:
        client.call("set", param="callback", value="25", symbol="BTC")  # past Binance's 20
    assert e.value.code == "bad_arguments" and "less than or equal to 20" in e.value.message
    # after all that the service still takes and protects a wave
    open_positions(svc, "after-abuse", (SYM["BTC"], "long", 0.9))
    assert svc.stats.waves[-1].outcomes == {"protected": 1}
    assert client.call("status").health.trailing == 1


def cfg_max(plane) -> int:
    return plane.cfg.control.max_frame_bytes


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(
    st.binary(max_size=300),
    st.integers(1, 60000).map(lambda n: b"[" * n),  # nesting deep enough to exhaust a recursive parser
    st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                 lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
                 max_leaves=12).map(lambda o: json.dumps(o).encode()),
    st.fixed_dictionaries({"v": st.sampled_from([1, 1, 2, "1", True]),
                           "cmd": st.sampled_from([*p.COMMANDS, "nope", 3]),
                           "args": st.dictionaries(st.sampled_from(["target", "param", "value", "limit", "confirm",
                                                                    "symbol", "after_id", "x"]),
                                                   st.one_of(st.text(max_size=12), st.integers(), st.booleans(),
                                                             st.none()), max_size=3)})
      .map(lambda o: json.dumps(o).encode()),
))
def test_any_frame_gets_exactly_one_well_formed_reply(frame):
    """Whatever arrives, the server answers one JSON line: a typed result or a coded error."""
    seen = []

    def handler(cmd, args):
        seen.append((cmd, args))
        return ActionReply(message="ok")

    reply = respond(frame, handler)
    assert reply.endswith(b"\n") and reply.count(b"\n") == 1
    obj = json.loads(reply)
    assert obj["v"] == p.VERSION
    if obj["ok"]:
        assert seen and isinstance(seen[0][1], p.COMMANDS[seen[0][0]][0])
    else:
        assert obj["error"]["code"] in {p.MALFORMED, p.UNSUPPORTED_VERSION, p.UNKNOWN_COMMAND, p.BAD_ARGUMENTS}
        assert not seen and obj["error"]["message"]


def test_secrets_never_appear_in_status_logs_or_metrics(control_service, tmp_path, monkeypatch):
    for var in ("BINANCE_API_KEY", "BINANCE_API_SECRET", "BYBIT_API_KEY", "BYBIT_API_SECRET"):
        monkeypatch.setenv(var, FAKE_SECRET)
    from service.logs import setup_logging

    log = tmp_path / "service.log"
    setup_logging("DEBUG", str(log), quiet=True)
    svc, plane, client = control_service()
    open_positions(svc, "w1", (SYM["BTC"], "long", 0.9), (SYM["ETH"], "short", 0.8))
    client.call("set", param="callback", value="0.7")
    client.call("close", target="ETH")
    shown = [client.call(cmd).model_dump_json() for cmd in ("status", "positions", "health", "supervisor", "events", "waves")]
    shown.append(client.call("position", target="BTC").model_dump_json())
    base = plane.metrics_url()
    for path in ("/metrics", "/healthz"):
        shown.append(urllib.request.urlopen(base + path, timeout=10).read().decode())
    from loguru import logger
    logger.complete()
    shown.append(log.read_text())
    assert "control: operator set" in shown[-1]  # the log did record the operator's actions
    for text in shown:
        assert FAKE_SECRET not in text
    assert "hunter2" not in masked_db_url("postgresql+psycopg://trader:hunter2@db.internal:5432/wave")
    assert "***" in masked_db_url("postgresql+psycopg://trader:hunter2@db.internal:5432/wave")
