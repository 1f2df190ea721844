"""The production signal source: a websocket subscription to the signal server.

Protocol (README, "Signals"): connect — with `Authorization: Bearer <token>` when the
environment variable named by `signals.token_env` is set — then send `{"op": "subscribe"}`;
the server pushes one wave per message (text or binary, the wave JSON of the file source).
A small JSON object with an `op` key and no `wave_id` is a control message: `subscribed`
(acknowledged) and `error` (logged with its reason); anything else is handed to the service
as a wave. Delivery is at least once: after a reconnect the server may resend waves, which
signal ids make harmless (recorded as duplicates, never opened twice).

The source only hands raw messages over; validation and recording are the service's. It
blocks while the service persists a wave, so a fast server is slowed by TCP flow control
(the library buffers `max_queue` frames) instead of filling memory.
"""
from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
from collections import Counter
from typing import Any, Callable
from urllib.parse import urlsplit, urlunsplit

from loguru import logger
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException
from websockets.frames import CloseCode
from websockets.sync.client import connect
from websockets.uri import parse_uri

from core.config import SignalsCfg
from core.text import printable
from signals.intake import IntakeResult

# The library's own log: INFO at most, so that a DEBUG root logger can never dump the
# handshake headers (and with them the bearer token).
_LIB_LOG = logging.getLogger("wave_trader.signals.ws")
_LIB_LOG.setLevel(logging.INFO)

RECV_POLL_S = 0.25  # how often a connected source notices stop()
CLOSE_TIMEOUT_S = 2.0
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def display_url(url: str) -> str:
    """The URL without credentials or query string: what logs and records may show."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class WsSource:
    """Subscribes to a signal server and keeps subscribed: reconnects with jittered
    exponential backoff, and tells how it is doing through `health()` and the log."""

    def __init__(self, url: str, submit: Callable[[str | bytes, str], IntakeResult],
                 reject: Callable[[str, str], IntakeResult], cfg: SignalsCfg, *,
                 seed: int | None = None) -> None:
        parse_uri(url)  # a malformed URL stops the start, not the 3 a.m. reconnect loop
        self.url, self.name = url, display_url(url)
        self.submit, self.reject, self.cfg = submit, reject, cfg
        self._rng = random.Random(seed)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ws-signals", daemon=True)
        self.state = "idle"
        self.counts: Counter[str] = Counter()
        self.connects = 0
        self.last_error: str | None = None
        self.connected_since: float | None = None
        self.last_message_ts: float | None = None
        self.next_attempt_ts: float | None = None
        self._delivered = False  # the current connection delivered a message

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def health(self) -> dict[str, Any]:
        return {"source": self.name, "state": self.state, "connects": self.connects,
                "connected_since": self.connected_since, "last_message_ts": self.last_message_ts,
                "next_attempt_ts": self.next_attempt_ts, "last_error": self.last_error,
                "received": self.counts["received"],
                "accepted": sum(self.counts[s] for s in ("opening", "queued", "complete")),
                "rejected": self.counts["rejected"], "duplicates": self.counts["duplicate"],
                "not_taken": self.counts["not_taken"], "errors": self.counts["errors"]}

    # ---- the connection loop -----------------------------------------------------------

    def backoff_s(self, attempt: int) -> float:
        """Exponential from reconnect_min_s, capped at reconnect_max_s; the upper half is
        random so that many clients of one server do not reconnect in lockstep."""
        cap = min(self.cfg.reconnect_max_s, self.cfg.reconnect_min_s * 2 ** min(attempt, 30))
        return cap / 2 + self._rng.uniform(0, cap / 2)

    def _run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            self.state = "connecting" if attempt == 0 else "reconnecting"
            self._delivered = False
            try:
                self._session()
                reason = "server closed the connection"
            except ConnectionClosed as e:
                reason = self._closed(e)
            except InvalidStatus as e:
                reason = f"server refused the connection: HTTP {e.response.status_code}"
            except (OSError, TimeoutError, EOFError, WebSocketException) as e:  # incl. a close mid-handshake
                reason = f"{type(e).__name__}: {printable(e, 200)}"
            except Exception as e:  # a library or protocol surprise must not end the source
                logger.exception("signal source {}: unexpected error", self.name)
                reason = f"{type(e).__name__}: {printable(e, 200)}"
            self.connected_since = None
            if self._stop.is_set():
                break
            if self._delivered:  # the server was really up: start the backoff again from the bottom
                attempt = 0
            delay = self.backoff_s(attempt)
            attempt += 1
            self.last_error, self.state = reason, "reconnecting"
            self.next_attempt_ts = time.time() + delay
            logger.warning("signal source {}: {}; reconnecting in {:.1f}s (attempt {})",
                           self.name, reason, delay, attempt)
            self._stop.wait(delay)
        self.state = "stopped"

    def _session(self) -> None:
        """One connection, from handshake to close (or stop())."""
        token = os.environ.get(self.cfg.token_env) if self.cfg.token_env else None
        headers = {"Authorization": f"Bearer {token}"} if token else None
        host = urlsplit(self.url).hostname or ""
        with connect(self.url, additional_headers=headers, open_timeout=self.cfg.open_timeout_s,
                     ping_interval=self.cfg.ping_interval_s, ping_timeout=self.cfg.ping_interval_s,
                     close_timeout=CLOSE_TIMEOUT_S, max_size=self.cfg.max_frame_bytes,
                     proxy=None if host in _LOOPBACK else True, logger=_LIB_LOG) as ws:
            ws.send(json.dumps({"op": "subscribe"}))
            self.connects += 1
            self.state, self.connected_since, self.next_attempt_ts = "connected", time.time(), None
            logger.info("signal source {}: connected and subscribed (connection {})", self.name, self.connects)
            while not self._stop.is_set():
                try:
                    msg = ws.recv(timeout=RECV_POLL_S)
                except TimeoutError:
                    continue
                self._delivered = True
                self._handle(msg)

    def _closed(self, e: ConnectionClosed) -> str:
        """Why a connection ended; a frame the library refused to read is recorded as a
        rejected message, since it never reaches the service."""
        code = e.sent.code if e.sent is not None else None
        if code == CloseCode.MESSAGE_TOO_BIG:
            reason = f"frame larger than signals.max_frame_bytes={self.cfg.max_frame_bytes}; connection closed (1009)"
            self.counts["received"] += 1
            self.counts[self.reject(reason, self.name).status] += 1
            return reason
        if code == CloseCode.INVALID_DATA:
            reason = "text frame is not valid UTF-8; connection closed (1007)"
            self.counts["received"] += 1
            self.counts[self.reject(reason, self.name).status] += 1
            return reason
        frame = e.rcvd or e.sent
        if frame is None:
            return "connection lost without a close frame"
        return f"connection closed ({frame.code}{' ' + printable(frame.reason, 80) if frame.reason else ''})"

    # ---- messages ----------------------------------------------------------------------

    def _handle(self, msg: str | bytes) -> None:
        self.last_message_ts = time.time()
        ctrl = _control(msg)
        if ctrl is not None:
            op = str(ctrl.get("op"))[:32]
            if op == "error":
                logger.warning("signal source {}: server error: {}", self.name, printable(ctrl.get("reason"), 200))
            elif op == "subscribed":
                logger.info("signal source {}: subscription acknowledged", self.name)
            return
        self.counts["received"] += 1
        try:
            result = self.submit(msg, self.name)
        except Exception:
            self.counts["errors"] += 1
            logger.exception("signal source {}: handing a message over failed", self.name)
            return
        self.counts[result.status] += 1


def _control(msg: str | bytes) -> dict | None:
    """A small object with an `op` and no `wave_id`; everything else is a wave candidate."""
    if len(msg) > 512:
        return None
    try:
        obj = json.loads(msg)
    except (ValueError, RecursionError):
        return None
    if isinstance(obj, dict) and "op" in obj and "wave_id" not in obj:
        return obj
    return None
