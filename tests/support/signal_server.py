"""A real signal server for tests: the `websockets` library's server on 127.0.0.1, port 0.

It checks the bearer token (when given), expects the client's `{"op": "subscribe"}`, and then
plays the frames the test puts into its outbox, in order, across connections: a frame that
makes the client hang up is consumed, and the next connection goes on with the next frame.
Special frames drop the connection abruptly, or half-way through a fragmented message.
"""
from __future__ import annotations

import json
import logging
import queue
import socket
import threading
from dataclasses import dataclass, field
from http import HTTPStatus

from websockets.exceptions import ConnectionClosed
from websockets.sync.server import ServerConnection, serve

_QUIET = logging.getLogger("tests.support.signal_server")  # its DEBUG lines would echo the client's token
_QUIET.setLevel(logging.WARNING)


@dataclass(frozen=True)
class Drop:
    """Cut the TCP connection without a close frame."""


@dataclass(frozen=True)
class DropMidMessage:
    """Send the first fragment of `text`, then cut the connection: half a wave on the wire."""
    text: str


@dataclass(frozen=True)
class Frame:
    data: str | bytes
    text: bool | None = None  # bytes with text=True: a text frame that is not valid UTF-8
    hangup: bool = False  # the client is expected to close on it: wait for that before going on


@dataclass
class SignalServer:
    token: str | None = None
    outbox: "queue.Queue[object]" = field(default_factory=queue.Queue)
    subscribes: list[str] = field(default_factory=list)
    auth_headers: list[str | None] = field(default_factory=list)
    connections: int = 0
    refused: int = 0

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._held: object | None = None  # taken from the outbox, not yet delivered
        self._server = serve(self._handle, "127.0.0.1", 0, process_request=self._check_token,
                             max_size=None, ping_interval=None, logger=_QUIET)
        self._thread = threading.Thread(target=self._server.serve_forever, name="signal-server", daemon=True)
        self._thread.start()
        self.url = f"ws://127.0.0.1:{self._server.socket.getsockname()[1]}/signals"

    def send(self, *frames: object) -> None:
        for f in frames:
            self.outbox.put(f if not isinstance(f, (str, bytes)) else Frame(f))

    def send_json(self, obj: object) -> None:
        self.send(json.dumps(obj))

    def close(self) -> None:
        self._stop.set()
        self._server.shutdown()
        self._thread.join(10)

    def _check_token(self, conn: ServerConnection, request):
        auth = request.headers.get("Authorization")
        self.auth_headers.append(auth)
        if self.token is not None and auth != f"Bearer {self.token}":
            self.refused += 1
            return conn.respond(HTTPStatus.UNAUTHORIZED, "unknown token\n")
        return None

    def _handle(self, ws: ServerConnection) -> None:
        self.connections += 1
        try:
            self.subscribes.append(ws.recv(timeout=10))
            while not self._stop.is_set():
                if self._held is None:
                    try:
                        self._held = self.outbox.get(timeout=0.05)
                    except queue.Empty:
                        continue
                item, self._held = self._held, None
                if isinstance(item, Drop):
                    ws.socket.shutdown(socket.SHUT_RDWR)
                    return
                if isinstance(item, DropMidMessage):
                    half = len(item.text) // 2

                    def fragments():
                        yield item.text[:half]
                        ws.socket.shutdown(socket.SHUT_RDWR)
                        yield item.text[half:]
                    try:
                        ws.send(fragments())
                    except (OSError, ConnectionClosed):
                        pass
                    return
                try:
                    ws.send(item.data, text=item.text)
                except ConnectionClosed:
                    self._held = item  # not delivered: the next connection sends it
                    return
                if item.hangup:
                    for _ in ws:  # until the client closes the connection
                        pass
                    return
        except (ConnectionClosed, OSError, TimeoutError):
            return
