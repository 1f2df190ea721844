"""A local webhook receiver on 127.0.0.1 for apprise's `json://` alerts (tests only)."""
from __future__ import annotations

import json
import queue
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver:
    """Collects every JSON body POSTed to it; `apprise_url` is what WAVE_TRADER_ALERT_URLS takes."""

    def __init__(self) -> None:
        self.received: queue.Queue[dict] = queue.Queue()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.received.put(json.loads(body or b"{}"))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def apprise_url(self) -> str:
        return f"json://127.0.0.1:{self.server.server_address[1]}/alerts"

    def next(self, timeout: float = 10.0) -> dict:
        return self.received.get(timeout=timeout)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Silent:
    """Accepts connections and never answers: an alert endpoint that is down the worst way."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
                self.held.append(conn)  # read nothing, answer nothing
            except OSError:
                continue

    @property
    def apprise_url(self) -> str:
        return f"json://127.0.0.1:{self.sock.getsockname()[1]}/alerts?rto=30&cto=30"

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)
        for c in self.held:
            c.close()
        self.sock.close()
