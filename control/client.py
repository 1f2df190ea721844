"""A control client: one connection per request, so a restarted service is simply reached
again on the next command, and nothing is left half-open while an operator thinks."""
from __future__ import annotations

import os
import socket
import struct
from pathlib import Path
from typing import Any, Literal, overload

from pydantic import BaseModel

from control import protocol as p
from control import replies as r


def socket_path(cfg) -> Path:
    """`control.socket`, else `<run_dir>/control.sock` (the same rule for server and clients)."""
    return Path(cfg.control.socket) if cfg.control.socket else Path(cfg.run_dir) / "control.sock"


class NotRunning(ConnectionError):
    """No service answers on the control socket; the message says why, for the operator."""


class ControlClient:
    def __init__(self, path: str | Path, timeout_s: float = 15.0) -> None:
        self.path, self.timeout_s = Path(path), timeout_s

    # the replies whose fields callers read directly; any command answers with its reply model
    @overload
    def call(self, cmd: Literal["status"], **args: Any) -> r.StatusReply: ...
    @overload
    def call(self, cmd: Literal["positions"], **args: Any) -> r.PositionsReply: ...
    @overload
    def call(self, cmd: Literal["waves"], **args: Any) -> r.WavesReply: ...
    @overload
    def call(self, cmd: Literal["health"], **args: Any) -> r.HealthReply: ...
    @overload
    def call(self, cmd: str, **args: Any) -> BaseModel: ...

    def call(self, cmd: str, **args: Any) -> BaseModel:
        """Send one request; returns the typed reply data or raises ProtocolError/NotRunning."""
        _, data = p.decode_reply(self.raw(p.encode_request(cmd, {k: v for k, v in args.items() if v is not None})))
        return data

    def raw(self, frame: bytes) -> bytes:
        """Send bytes as they are and return one reply line (tests send malformed frames)."""
        with self._connect() as s:
            s.sendall(frame)
            return _read_line(s)

    def _connect(self) -> socket.socket:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout_s)
        try:
            s.connect(str(self.path))
        except FileNotFoundError:
            s.close()
            raise NotRunning(f"no wave-trader service is running: no control socket at {self.path}\n"
                             f"  start one with `bin/trader run` (same --config/--set), or point at it with --socket") from None
        except ConnectionRefusedError:
            s.close()
            raise NotRunning(f"no wave-trader service is running: {self.path} is a stale socket "
                             f"(its service has stopped); `bin/trader run` will replace it") from None
        except PermissionError:
            s.close()
            raise NotRunning(f"permission denied on {self.path}: the control socket belongs to "
                             f"another user (it is owner-only)") from None
        except OSError:
            s.close()
            raise
        uid = peer_uid(s)
        if uid is not None and uid not in (os.getuid(), 0):
            s.close()  # another user's process: whatever it answered would be forged
            raise NotRunning(f"refusing {self.path}: the process listening there runs as uid {uid}, not as "
                             f"this user; it is not this user's wave-trader service")
        return s


def peer_uid(conn: socket.socket) -> int | None:
    """The uid of the process at the other end of a Unix socket (SO_PEERCRED)."""
    try:
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except (OSError, AttributeError):
        return None
    return struct.unpack("3i", creds)[1]


def _read_line(s: socket.socket) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        try:
            chunk = s.recv(65536)
        except TimeoutError:
            raise p.ProtocolError(p.UNAVAILABLE, "the service did not answer in time") from None
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if chunk.endswith(b"\n"):
            break
        if size > p.MAX_REPLY_BYTES:
            raise p.ProtocolError(p.TOO_LARGE, "reply larger than the client accepts")
    if not chunks:
        raise NotRunning("the service closed the connection without answering (is it shutting down?)")
    return b"".join(chunks)
