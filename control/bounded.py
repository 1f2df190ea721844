"""A socketserver with a fixed number of worker threads and a deadline on every connection.

ThreadingMixIn starts a thread per connection with no limit: enough slow clients exhaust the
process's threads, and then it is the actors that cannot start one. Here at most
`max_connections` are served at once (the rest are refused at once, politely), workers are
reused, and a connection that has not delivered its request by its deadline is shut down by
the accept loop — however slowly it drips bytes, since the deadline is not reset by a byte
the way a socket timeout is. Client errors are logged at DEBUG, never as a traceback on stderr.
"""
from __future__ import annotations

import queue
import socket
import threading
import time
from typing import TYPE_CHECKING, Any

from loguru import logger


class BoundedMixIn:
    """Mix in before a socketserver server class; call `init_bounded` before serving."""

    max_connections, deadline_s, refusal, pool_name = 16, 30.0, b"", "server"

    if TYPE_CHECKING:  # provided by the socketserver server class this is mixed into
        def shutdown_request(self, request: Any) -> None: ...
        def finish_request(self, request: Any, client_address: Any) -> None: ...

    def __init__(self, *args, **kwargs) -> None:
        self._work: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._workers = 0
        self._idle = 0
        self._active: dict[socket.socket, float | None] = {}  # connection -> deadline (None: unbounded now)
        super().__init__(*args, **kwargs)  # type: ignore[call-arg]  # may bind (and fail) here

    def init_bounded(self, max_connections: int, deadline_s: float, refusal: bytes, name: str) -> None:
        self.max_connections, self.deadline_s, self.refusal, self.pool_name = max_connections, deadline_s, refusal, name

    # ---- accept loop ---------------------------------------------------------------------

    def process_request(self, request, client_address) -> None:
        with self._lock:
            if len(self._active) >= self.max_connections:
                full = True
            else:
                full = False
                self._active[request] = time.monotonic() + self.deadline_s
                if self._idle == 0:
                    self._workers += 1
                    threading.Thread(target=self._worker, name=f"{self.pool_name}-{self._workers}",
                                     daemon=True).start()
                else:
                    self._idle -= 1
        if full:
            self._refuse(request)
            return
        self._work.put((request, client_address))

    def _refuse(self, request) -> None:
        try:
            request.settimeout(0.2)
            request.sendall(self.refusal)
        except OSError:
            pass
        self.shutdown_request(request)

    def service_actions(self) -> None:
        """Called by serve_forever between polls: shut down connections past their deadline."""
        now = time.monotonic()
        with self._lock:
            late = [r for r, d in self._active.items() if d is not None and now > d]
            for r in late:
                self._active[r] = None
        for r in late:
            try:
                r.shutdown(socket.SHUT_RDWR)  # the worker's read or write returns at once
            except OSError:
                pass

    def arm(self, request, seconds: float | None) -> None:
        """Give `request` a new deadline from now (None: none while the service works on it)."""
        with self._lock:
            if request in self._active:
                self._active[request] = None if seconds is None else time.monotonic() + seconds

    # ---- workers -------------------------------------------------------------------------

    def _worker(self) -> None:
        while True:
            request, client_address = self._work.get()
            if request is None:
                return
            try:
                self.finish_request(request, client_address)
            except Exception:
                self.handle_error(request, client_address)
            finally:
                with self._lock:
                    self._active.pop(request, None)
                    self._idle += 1
                self.shutdown_request(request)

    def handle_error(self, request, client_address) -> None:
        logger.opt(exception=True).debug("{}: a client connection failed", self.pool_name)

    def server_close(self) -> None:
        super().server_close()  # type: ignore[misc]
        with self._lock:
            active, n = list(self._active), self._workers
        for r in active:
            try:
                r.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for _ in range(n):
            self._work.put((None, None))
