"""The metrics endpoint and the control socket stay bounded under slow or many clients: a
fixed number of threads, a deadline per connection that a dripping client cannot extend, and
no traceback on stderr for a client's failure."""
from __future__ import annotations

import json
import os
import socket
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from control import protocol as p
from control.replies import ActionReply
from control.server import ControlServer, SocketLock
from tests.support.helpers import wait_for
from tests.support.trader_process import Trader, said


def _threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def _get(url: str, timeout: float = 10) -> int:
    try:
        return urllib.request.urlopen(url, timeout=timeout).status
    except urllib.error.HTTPError as e:
        return e.code


def test_slow_metrics_clients_cannot_exhaust_threads_or_flood_stderr(tmp_path):
    with Trader(tmp_path) as t:
        t.wait_ready()
        status = t.ctl("status", "--json")
        url = json.loads(status.stdout)["metrics_url"]
        assert url, said(status)
        host, port = urlsplit(url).hostname, urlsplit(url).port
        assert _get(url + "/healthz") == 200
        before = _threads(t.proc.pid)
        slow = []
        for _ in range(120):  # connect, then never send a request
            s = socket.create_connection((host, port), timeout=10)
            slow.append(s)
        try:
            wait_for(lambda: _get(url + "/healthz", timeout=5) == 503, timeout=20, what="the cap refusing at once")
            grown = _threads(t.proc.pid) - before
            assert grown <= 10, f"{grown} threads more for 120 idle connections"
            # the held ones are cut at their deadline (10 s by default), then scrapes work again
            wait_for(lambda: _get(url + "/healthz", timeout=5) == 200, timeout=40, what="slots freed by the deadline")
        finally:
            for s in slow:
                s.close()
        assert t.ctl("health").returncode == 0
        assert t.stop() == 130
    out = t.output()
    assert "Traceback" not in out and "TimeoutError" not in out, out[-3000:]


def _server(tmp_path, **kw):
    reply = ActionReply(message="ok")
    server = ControlServer(SocketLock(tmp_path / "c.sock"), lambda cmd, args: reply, **kw)
    server.start()
    return server


def _drip(path, stop_after_s: float, every_s: float = 0.2, connected=None) -> float | None:
    """Send one byte of a frame every `every_s`; the time at which the server cut us off."""
    t0 = time.monotonic()
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(path))
        if connected is not None:
            connected.release()
        s.settimeout(every_s)
        while time.monotonic() - t0 < stop_after_s:
            try:
                s.sendall(b"{")
                if s.recv(1) == b"":
                    return time.monotonic() - t0
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                return time.monotonic() - t0
    return None


def test_a_dripping_control_client_is_cut_at_the_idle_deadline(tmp_path):
    server = _server(tmp_path, idle_timeout_s=1.0, max_connections=2)
    try:
        cut = _drip(server.path, stop_after_s=8.0)
        assert cut is not None, "a byte every 0.2 s kept the connection open for 8 s (idle deadline 1 s)"
    finally:
        server.stop()


def test_dripping_clients_do_not_keep_operators_busy_past_the_deadline(tmp_path):
    import threading

    server = _server(tmp_path, idle_timeout_s=2.0, max_connections=2)
    try:
        connected = threading.Semaphore(0)
        drippers = [threading.Thread(target=_drip, args=(server.path, 8.0), kwargs={"connected": connected},
                                     daemon=True) for _ in range(2)]
        for d in drippers:
            d.start()
        for _ in drippers:  # both in the accept queue before the operator: the server takes them first
            assert connected.acquire(timeout=5)

        def answered():
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(5)
                s.connect(str(server.path))
                try:
                    s.sendall(p.encode_request("health"))
                except BrokenPipeError:
                    pass  # refused before we spoke: the reason is waiting to be read
                return json.loads(s.makefile("rb").readline())
        wait_for(lambda: (answered().get("error") or {}).get("code") == "busy", timeout=5,
                 what="the cap holding while the drippers are within their deadline")
        wait_for(lambda: answered().get("ok") is True, timeout=6, what="an operator served after the drippers' deadline")
    finally:
        server.stop()
