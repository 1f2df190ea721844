"""The control server: a Unix socket in the run directory, owner-only, one thread per client.

Ownership of the socket path is an advisory lock on `<socket>.lock`, held for the life of
the process: the kernel drops it when the process dies however it dies, so "is a live
service using this path?" has an exact answer. A socket file left without its lock holder is
stale and is removed. The socket is bound under a temporary name, made 0600, then renamed
into place, so it is never reachable at its real path with looser permissions. Peers must be
our own user (or root): checked with SO_PEERCRED on top of the file mode.
"""
from __future__ import annotations

import errno
import fcntl
import os
import secrets
import socket
import socketserver
import stat
import threading
import time
from pathlib import Path
from typing import Callable

from loguru import logger
from pydantic import BaseModel

from control import protocol as p
from control.client import peer_uid
from control.bounded import BoundedMixIn
from core.files import open_private, safe_dir

MAX_PATH = 107  # sun_path is 108 bytes including the terminating NUL
QUIET_COMMANDS = {"status", "positions", "position", "waves", "wave", "health", "supervisor", "events"}

Handler = Callable[[str, BaseModel], BaseModel]


class ServiceAlreadyRunning(RuntimeError):
    """Another live process holds this control socket."""


class SocketLock:
    """The claim on a socket path; acquire before starting anything else."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).absolute()
        if len(os.fsencode(self.path)) > MAX_PATH:
            raise ValueError(f"control socket path is {len(os.fsencode(self.path))} bytes, more than a Unix "
                             f"socket allows ({MAX_PATH}); set control.socket to a shorter path")
        safe_dir(self.path.parent)  # another user who can write here could replace the socket
        lock_path = self.path.with_name(self.path.name + ".lock")
        fd = open_private(lock_path)  # O_NOFOLLOW: a planted symlink is refused, never written through
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise ServiceAlreadyRunning(
                    f"another wave-trader service (pid {holder}) is running with control socket "
                    f"{self.path}; attach with `bin/trader console`, or give this one another run_dir") from None
            raise
        try:
            if not stat.S_ISSOCK(os.lstat(self.path).st_mode):  # a symlink or a file: never replaced
                os.close(fd)
                raise ServiceAlreadyRunning(f"{self.path} exists and is not a socket; refusing to replace it")
        except FileNotFoundError:
            pass
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock; the file stays (unlinking would race)
            self._fd = None


class _Server(BoundedMixIn, socketserver.UnixStreamServer):
    allow_reuse_address = False


class ControlServer:
    def __init__(self, lock: SocketLock, handler: Handler, *, max_frame_bytes: int = 65536,
                 max_connections: int = 16, idle_timeout_s: float = 30.0) -> None:
        self.lock, self.path, self.handler = lock, lock.path, handler
        self.max_frame_bytes, self.max_connections = max_frame_bytes, max_connections
        self.idle_timeout_s = idle_timeout_s
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.requests = 0

    def start(self) -> None:
        self._remove_stale()
        srv = _Server(str(self.path), self._handler_class(), bind_and_activate=False)
        srv.init_bounded(self.max_connections, self.idle_timeout_s,
                         p.encode_error(p.ProtocolError(p.BUSY, "too many control connections; try again")),
                         "control")
        tmp = self.path.with_name(f".ctl-{secrets.token_hex(4)}")
        try:
            srv.socket.bind(str(tmp))
            os.chmod(tmp, 0o600)
            os.rename(tmp, self.path)
            srv.server_address = str(self.path)
            srv.server_activate()
        except BaseException:
            srv.server_close()
            tmp.unlink(missing_ok=True)
            raise
        self._server = srv
        self._thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="control-server", daemon=True)
        self._thread.start()
        logger.info("control: listening on {} (owner-only)", self.path)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
            try:
                if stat.S_ISSOCK(os.lstat(self.path).st_mode):
                    self.path.unlink()
            except FileNotFoundError:
                pass
        self.lock.release()

    def _remove_stale(self) -> None:
        try:
            mode = os.lstat(self.path).st_mode
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(mode):
            raise ServiceAlreadyRunning(f"{self.path} exists and is not a socket; refusing to replace it")
        logger.warning("control: removing stale socket {} (its service is gone)", self.path)
        self.path.unlink()

    # ---- per connection ------------------------------------------------------------------

    def _handler_class(self) -> type[_Conn]:
        """A connection handler bound to this server (socketserver builds one per connection)."""
        return type("Conn", (_Conn,), {"control": self, "timeout": self.idle_timeout_s})

    def answer(self, frame: bytes, uid: int | None = None) -> bytes:
        self.requests += 1
        return respond(frame, self.handler, uid)


class _Conn(socketserver.StreamRequestHandler):
    """Each frame must arrive whole within idle_timeout_s of the connection becoming
    idle (the accept loop cuts it otherwise, however slowly it drips in); the time the
    service spends answering is bounded by the commands' own deadlines instead."""

    control: ControlServer  # set on the subclass ControlServer._handler_class makes
    server: _Server

    def handle(self) -> None:
        uid = peer_uid(self.connection)
        if uid is not None and uid not in (os.getuid(), 0):
            self._send(p.encode_error(p.ProtocolError(p.FORBIDDEN, "not the service's user")))
            return
        while True:
            self.server.arm(self.request, self.control.idle_timeout_s)
            try:
                line = self.rfile.readline(self.control.max_frame_bytes + 1)
            except (TimeoutError, OSError):
                return
            if not line:
                return
            if len(line) > self.control.max_frame_bytes and not line.endswith(b"\n"):
                recovered = self._skip_rest_of_line()
                self._send(p.encode_error(p.ProtocolError(
                    p.TOO_LARGE, f"frame longer than {self.control.max_frame_bytes} bytes"
                                 + ("; skipped" if recovered else "; connection closed"))))
                if recovered:
                    continue
                self._linger()
                return
            self.server.arm(self.request, None)  # commands bound their own waits
            if not self._send(self.control.answer(line.rstrip(b"\r\n"), uid)):
                return

    def _skip_rest_of_line(self) -> bool:
        """Discard the rest of an oversized frame, up to a bound: frames are lines, so
        the connection can go on; replying before the client finished sending would
        reset the connection and lose the error."""
        budget = 16 * self.control.max_frame_bytes
        while budget > 0:
            try:
                chunk = self.rfile.readline(min(budget, 65536))
            except (TimeoutError, OSError):
                return False
            if not chunk:
                return False
            if chunk.endswith(b"\n"):
                return True
            budget -= len(chunk)
        return False

    def _linger(self) -> None:
        """Closing with unread input resets the connection and the client loses our
        error; so stop writing, then drain briefly (bounded) before closing."""
        try:
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(1.0)
            budget = 8 * self.control.max_frame_bytes
            while budget > 0 and (chunk := self.connection.recv(65536)):
                budget -= len(chunk)
        except OSError:
            pass

    def _send(self, data: bytes) -> bool:
        self.server.arm(self.request, self.control.idle_timeout_s)  # a client that does not read
        try:
            self.wfile.write(data)
            self.wfile.flush()
            return True
        except OSError:
            return False


def respond(frame: bytes, handler: Handler, uid: int | None = None) -> bytes:
    """One frame in, one reply frame out; never raises."""
    if not frame.strip():
        return p.encode_error(p.ProtocolError(p.MALFORMED, "empty frame"))
    try:
        rid, cmd, args = p.decode_request(frame)
    except p.ProtocolError as e:
        logger.info("control: refused a request: {} ({})", e.code, e.message)
        return p.encode_error(e)
    t0 = time.monotonic()
    try:
        data = handler(cmd, args)
    except p.ProtocolError as e:
        e.request_id, e.cmd = rid, cmd
        return p.encode_error(e)
    except Exception as e:
        logger.exception("control: {} failed", cmd)
        return p.encode_error(p.ProtocolError(p.INTERNAL, f"{cmd} failed: {type(e).__name__}: {e}",
                                              request_id=rid, cmd=cmd))
    if cmd not in QUIET_COMMANDS:
        logger.info("control: operator {} {} (uid {}) -> {} in {:.2f}s", cmd,
                    args.model_dump_json(exclude_defaults=True), uid, getattr(data, "message", "ok"),
                    time.monotonic() - t0)
    return p.encode_reply(cmd, data, rid)


