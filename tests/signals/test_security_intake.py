"""Signal intake under abuse: a flood of refused messages is counted and sampled, not a row
and an ERROR line each; a wave made only of redelivered signals completes; a server that
hangs up mid-handshake is a reason to reconnect, not a traceback."""
from __future__ import annotations

import json
import socket
import sqlite3
import threading

from loguru import logger

from core.config import SignalsCfg
from signals.intake import IntakeResult
from signals.rejections import Rejections
from signals.ws_source import WsSource
from tests.support.control_support import open_positions
from tests.support.helpers import SYM, wait_for, wave
from tests.support.signal_server import SignalServer
from tests.support.trader_process import Trader


def _db_count(db, sql: str) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
        try:
            return conn.execute(sql).fetchone()[0]
        except sqlite3.OperationalError:  # the schema is not created yet
            return 0


def test_a_flood_of_refused_messages_is_counted_not_recorded_one_by_one(tmp_path):
    server = SignalServer()
    try:
        server.send(*[f"not json {i}" for i in range(400)])
        server.send(wave("after-flood", (SYM["BTC"], "long", 0.9)))
        with Trader(tmp_path, f"signals.source='{server.url}'") as t:
            db = tmp_path / "t.db"
            wait_for(lambda: db.exists() and _db_count(db, "select count(*) from waves where id='after-flood'"),
                     timeout=90, what="the wave after the flood")
            rows = _db_count(db, "select count(*) from waves where status='rejected'")
            events = _db_count(db, "select count(*) from events where kind='wave_rejected'")
            t.stop()
        log = (tmp_path / "log" / "t.log").read_text()
    finally:
        server.close()
    assert rows == events == 20  # signals.reject_burst per minute, then only counted
    errors = [line for line in log.splitlines() if " ERROR " in line and "wave rejected" in line]
    assert len(errors) == 20, len(errors)


def test_the_reason_store_is_bounded_and_summarises_each_window():
    now = [0.0]
    r = Rejections(burst=3, window_s=10, kinds=4, samples=5, clock=lambda: now[0])
    decisions = [r.admit(f"reason {i % 7}: got {i}")[0] for i in range(1000)]
    assert decisions[:3] == [True] * 3 and not any(decisions[3:])
    now[0] = 11
    record, summary = r.admit("not valid JSON: Expecting value")
    assert record and "997 more rejected messages" in summary
    d = r.as_dict()
    assert d["total"] == 1001 and d["unrecorded"] == 997
    assert len(d["by_reason"]) <= 5 and len(d["recent"]) == 5  # 4 kinds + "other"


def test_a_wave_of_redelivered_signal_ids_completes(control_service):
    svc, plane, client = control_service()
    open_positions(svc, "first", (SYM["BTC"], "long", 0.9))
    again = json.loads(wave("first", (SYM["BTC"], "long", 0.9)))
    again["wave_id"] = "second"  # a new wave id carrying only signals received before
    result = svc.submit(json.dumps(again), "test")
    assert result.status == "duplicate"
    assert client.call("wave", wave_id="second").wave.status == "complete"


def test_a_server_that_hangs_up_mid_handshake_logs_no_traceback():
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    stop = threading.Event()

    def serve():
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:  # closed at the end of the test
                return
            conn.recv(4096)  # the client's upgrade request
            conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgr")  # ... and gone
            conn.close()
    threading.Thread(target=serve, daemon=True).start()
    records = []
    sink = logger.add(lambda m: records.append(m.record), level="DEBUG")
    src = WsSource(f"ws://127.0.0.1:{port}/s", lambda *a: IntakeResult("complete"),
                   lambda *a: IntakeResult("rejected"), SignalsCfg(reconnect_min_s=0.05, reconnect_max_s=0.1))
    try:
        src.start()
        wait_for(lambda: sum("reconnecting" in r["message"] for r in records) >= 2, timeout=20,
                 what="two reconnect attempts")
    finally:
        src.stop()
        src.join(5)
        logger.remove(sink)
        stop.set()
        listener.close()
    assert not [r for r in records if r["exception"] is not None], [r["message"] for r in records]
    assert src.last_error and "\n" not in src.last_error
