"""One owner per database: a lease that no second process can take while the first one lives.

Two traders on one database fence each other's positions and both trade the account, so a run
takes the lease before it reads or writes anything, whatever its run_dir:

- SQLite: an exclusive `flock` on `<database file>.owner`, opened without following a symbolic
  link and owner-only (0600). The kernel drops it when the process dies, however it dies. The
  file holds the owner (pid, host, since, run_dir) for a refused second process to name.
- The paper account (its state file) is a venue account of its own: locked the same way, beside
  its file, so two runs never trade one paper account whatever their databases.
- PostgreSQL: a session advisory lock (`pg_try_advisory_lock`) held on a connection of its own,
  outside the pool. Advisory locks are per database, so one server holds many accounts side by
  side. The owner (pid, since, host) is that session's `application_name`, the one column of
  another role's sessions that every role may read.

A held lease is checked every `interval_s`, each check bounded by a timeout: a dropped
connection (the server restarted, the session was terminated), a lock no longer held or a lock
file that is no longer the one we locked means another process may own the database now, and
`on_lost` is called once. A probe that only did not answer in time proves nothing (a busy
server, a slow disk): it is tried again, and counts as lost only after UNSURE_TRIES in a row.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import stat
import threading
import time
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

from loguru import logger
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.pool import NullPool

# pg_try_advisory_lock(int4, int4): "wave", "ownr" — one key per database, never reused.
PG_KEY = (0x77617665, 0x6F776E72)
APP_NAME_MAX = 63  # PostgreSQL truncates application_name to NAMEDATALEN - 1 bytes


UNSURE_TRIES = 3  # unanswered probes in a row before the lease counts as lost


class LeaseHeld(RuntimeError):
    """Another live process owns this database; the message names it."""


class Unsure(str):
    """A check that could not tell (its probe did not answer in time): tried again first."""


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


class Lease:
    """A held lease; `watch` starts the periodic check, `release` gives it up (idempotent)."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.lost: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self, timeout_s: float) -> str | None:
        """None while the lease is ours; otherwise why it is not."""
        return None

    def watch(self, on_lost: Callable[[str], None], interval_s: float, timeout_s: float) -> None:
        def run() -> None:
            unsure = 0
            while not self._stop.wait(interval_s):
                why = self.check(timeout_s)
                if why is None or self._stop.is_set():
                    unsure = 0
                    continue
                if isinstance(why, Unsure) and (unsure := unsure + 1) < UNSURE_TRIES:
                    logger.warning("database lease: {} (try {} of {}); checking again", why, unsure, UNSURE_TRIES)
                    continue
                self.lost = f"{why} ({unsure} times in a row)" if isinstance(why, Unsure) else why
                on_lost(self.lost)
                return
        self._thread = threading.Thread(target=run, name="lease-check", daemon=True)
        self._thread.start()

    def release(self) -> None:
        self._stop.set()


class FileLease(Lease):
    def __init__(self, path: Path, fd: int) -> None:
        super().__init__(f"lock file {path}")
        self.path = path
        self._fd: int | None = fd
        self._ino = os.fstat(fd).st_ino

    def check(self, timeout_s: float) -> str | None:
        try:
            same = os.lstat(self.path).st_ino == self._ino
        except FileNotFoundError:
            same = False
        return None if same else f"{self.path} was removed or replaced: another process could lock it"

    def release(self) -> None:
        super().release()
        if self._fd is not None:
            os.close(self._fd)  # drops the flock; the file stays (unlinking it would race)
            self._fd = None


class PgLease(Lease):
    def __init__(self, engine, conn: Connection) -> None:
        super().__init__(f"advisory lock {PG_KEY} on database {engine.url.database}")
        self._engine = engine
        self._conn: Connection | None = conn
        self._io = threading.Lock()

    def check(self, timeout_s: float) -> str | None:
        result: list[str | None] = []

        def probe() -> None:
            try:
                with self._io:
                    conn = self._conn
                    assert conn is not None, "the lease was released"
                    held = conn.execute(text(
                        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                        "AND pid = pg_backend_pid() AND classid = :a AND objid = :b AND objsubid = 2"),
                        {"a": PG_KEY[0], "b": PG_KEY[1]}).scalar()
                result.append(None if held else "the advisory lock is no longer held by our session")
            except Exception as e:
                result.append(f"the lease connection failed: {type(e).__name__}: {str(e).strip()[:200]}")

        t = threading.Thread(target=probe, name="lease-probe", daemon=True)
        t.start()
        t.join(timeout_s)
        if not result:
            return Unsure(f"the lease connection did not answer within {timeout_s:g}s")
        return result[0]

    def release(self) -> None:
        super().release()
        conn, self._conn = self._conn, None
        if conn is not None:
            def close() -> None:  # closing the session drops the lock; never wait on a dead server
                try:
                    conn.close()
                except Exception:
                    pass
                self._engine.dispose()
            t = threading.Thread(target=close, name="lease-release", daemon=True)
            t.start()
            t.join(2.0)


def acquire(url: str, *, run_dir: str, timeout_s: float = 5.0) -> Lease:
    """Take the lease on the database at `url`, or raise LeaseHeld naming its owner."""
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        path = _sqlite_file(u)
        if path is None:
            return Lease("in-memory database (private to this process)")
        db = Path(os.path.realpath(path))  # one lock per file, however its path is spelled
        return acquire_file(db.with_name(db.name + ".owner"), f"the database {db}", run_dir)
    if u.get_backend_name() == "postgresql":
        return _pg_lease(url, timeout_s)
    raise ValueError(f"unsupported database backend {u.get_backend_name()!r} (sqlite or postgresql)")


def _sqlite_file(u) -> str | None:
    """The file behind a SQLite URL (None: in memory). With `uri=true` the database is named
    as a URI, `file:PATH?mode=…`: the lock goes beside PATH, never into a `file:` directory."""
    db = u.database or ""
    if str(u.query.get("uri", "")).lower() in ("true", "1") and db.startswith("file:"):
        if str(u.query.get("mode", "")).lower() == "memory":
            return None
        db = urlsplit(db).path
    return None if db in ("", ":memory:") else db


def acquire_file(path: Path, what: str, run_dir: str) -> FileLease:
    """An exclusive lock on `path` for `what` (a database, a paper account), or LeaseHeld."""
    path = path.absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, 0o600)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise LeaseHeld(f"{path} is a symbolic link; refusing to follow it for the database lock") from None
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise LeaseHeld(f"{path} is not a regular file; refusing to use it as the database lock")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            raise LeaseHeld(_refusal(what, _file_owner(fd))) from None
        os.fchmod(fd, 0o600)
        now = time.time()
        owner = {"pid": os.getpid(), "host": socket.gethostname(), "since": _iso(now),
                 "run_dir": str(Path(run_dir).absolute())}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(owner) + "\n").encode(), 0)
        return FileLease(path, fd)
    except BaseException:
        os.close(fd)
        raise


def _file_owner(fd: int) -> str:
    raw = os.pread(fd, 4096, 0).decode(errors="replace").strip()
    try:
        o = json.loads(raw)
        return f"pid {o['pid']} on {o['host']}, since {o['since']}, run_dir {o['run_dir']}"
    except (ValueError, KeyError, TypeError):
        return "a process that has not recorded itself yet (starting)" if not raw else f"unreadable owner {raw[:80]!r}"


def _refusal(what: str, owner: str) -> str:
    return (f"another wave-trader owns {what}: {owner}. One process per database and "
            f"account: stop that one first, or give this one its own database (see README, "
            f"'One owner per database')")


def _pg_lease(url: str, timeout_s: float) -> PgLease:
    ms = int(timeout_s * 1000)
    # everything a refused process needs in the one column every role may read of other sessions
    name = (f"wave-trader pid={os.getpid()} since={_iso(time.time())} host={socket.gethostname()}"
            .encode()[:APP_NAME_MAX].decode(errors="ignore"))
    engine = create_engine(url, poolclass=NullPool, connect_args={
        "connect_timeout": max(1, int(timeout_s)), "application_name": name,
        # The server's side too: if our host dies without closing the connection, the server
        # ends the session (and frees the lock for a successor) in seconds, not TCP's 2 hours.
        "options": f"-c statement_timeout={ms} -c lock_timeout={max(1, ms // 2)} "
                   f"-c tcp_keepalives_idle=5 -c tcp_keepalives_interval=2 -c tcp_keepalives_count=3 "
                   f"-c tcp_user_timeout={ms}",
        # and ours: a server that vanishes is noticed by the next check
        "keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2, "keepalives_count": 3,
        "tcp_user_timeout": ms,
    }).execution_options(isolation_level="AUTOCOMMIT")
    conn = engine.connect()
    try:
        got = conn.execute(text("SELECT pg_try_advisory_lock(:a, :b)"), {"a": PG_KEY[0], "b": PG_KEY[1]}).scalar()
        if not got:
            row = conn.execute(text(
                "SELECT a.application_name, a.client_addr FROM pg_locks l "
                "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
                "AND l.classid = :a AND l.objid = :b AND l.objsubid = 2 AND l.database = "
                "(SELECT oid FROM pg_database WHERE datname = current_database())"),
                {"a": PG_KEY[0], "b": PG_KEY[1]}).first()
            owner = "a session that has gone since (try again)" if row is None else (
                f"{row.application_name or 'a session of another role'}"
                f"{'' if row.client_addr is None else f' from {row.client_addr}'}")
            raise LeaseHeld(_refusal(f"the database {engine.url.database} on "
                                     f"{engine.url.host or 'the local socket'}", owner))
    except BaseException:
        conn.close()
        engine.dispose()
        raise
    logger.debug("database lease: advisory lock {} held as {!r}", PG_KEY, name)
    return PgLease(engine, conn)
