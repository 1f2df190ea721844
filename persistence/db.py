"""Engine creation with a timeout on every call, for the embedded SQLite and for PostgreSQL.

No DB call may hang an actor forever (a frozen call must not freeze a wave): SQLite gets a busy timeout and
immediate write transactions, PostgreSQL a connect, statement and lock timeout, and both a
pool timeout. Anything that still stalls is the supervisor's to handle.
"""
from __future__ import annotations

import re
import threading
from contextlib import contextmanager
from typing import Iterator

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

from core.faults import FaultPlan
from core.files import private_file
from persistence.db_faults import DbFaults
from persistence.errors import DbTimeout


_SECRET_QUERY = re.compile(r"(?i)pass|secret|token|key|auth")


def masked_url(url: str) -> str:
    """A database URL fit to show anywhere: password and credential-like query values masked."""
    try:
        u = make_url(url)
        query = "&".join(f"{k}={'***' if _SECRET_QUERY.search(k) else v}" for k, v in u.query.items())
        return u.set(query={}).render_as_string(hide_password=True) + (f"?{query}" if query else "")
    except Exception:
        return "<unparseable database url>"


def database_problem(url: str, e: BaseException) -> str:
    """A database error at start, in words: what failed and what to check, no traceback."""
    orig = getattr(e, "orig", None) or e
    text = str(orig).splitlines()[0][:200] if str(orig) else type(orig).__name__
    hint = ""
    low = text.lower()
    if "readonly" in low or "read-only" in low or "permission" in low:
        hint = "; the database (or its directory) is read-only to this user: make it writable"
    elif "full" in low or "no space" in low:
        hint = "; the disk is full: free space, then start again (open positions keep their resting stops)"
    return f"database {masked_url(url)}: {type(orig).__name__}: {text}{hint}"


def make_engine(url: str, *, call_timeout_s: float = 5.0, pool_size: int = 10,
                pool_timeout_s: float = 5.0, statement_timeout_s: float | None = None) -> Engine:
    """`statement_timeout_s` overrides how long one PostgreSQL statement may run (migrations);
    lock waits still give up after half of `call_timeout_s`."""
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        if u.database and u.database != ":memory:" and not u.database.startswith("file:"):
            private_file(u.database)  # 0600 before SQLite opens it: its -wal and -shm take this mode
        engine = create_engine(
            u, pool_size=pool_size, max_overflow=pool_size * 2, pool_timeout=pool_timeout_s,
            connect_args={"timeout": call_timeout_s, "check_same_thread": False},
        )
        _sqlite_pragmas(engine, call_timeout_s)
        return engine
    if u.get_backend_name() == "postgresql":
        ms = int(call_timeout_s * 1000)
        stmt_ms = int((statement_timeout_s or call_timeout_s) * 1000)
        return create_engine(
            u, pool_size=pool_size, max_overflow=pool_size * 2, pool_timeout=pool_timeout_s,
            pool_pre_ping=True,
            connect_args={
                "connect_timeout": max(1, int(call_timeout_s)),
                # A wait for a row lock gives up first (half the budget), so the error names
                # the real cause; any statement at all is cancelled at the full budget.
                "options": f"-c statement_timeout={stmt_ms} -c lock_timeout={max(1, ms // 2)} "
                           f"-c idle_in_transaction_session_timeout={ms * 4}",
            },
        )
    raise ValueError(f"unsupported database backend {u.get_backend_name()!r} (sqlite or postgresql)")


def _sqlite_pragmas(engine: Engine, timeout_s: float) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None  # let us issue BEGIN IMMEDIATE ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute(f"PRAGMA busy_timeout={int(timeout_s * 1000)}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        # Take the write lock up front: a deferred transaction that upgrades later can fail
        # with SQLITE_BUSY at once, without waiting for the busy timeout.
        conn.exec_driver_sql("BEGIN IMMEDIATE")


class Database:
    """One engine and session factory, plus the fault hooks operators rehearse with."""

    def __init__(self, url: str, *, call_timeout_s: float = 5.0, pool_size: int = 10,
                 pool_timeout_s: float = 5.0, faults: FaultPlan | None = None):
        self.url = url
        self.call_timeout_s = call_timeout_s
        self.engine = make_engine(url, call_timeout_s=call_timeout_s, pool_size=pool_size,
                                  pool_timeout_s=pool_timeout_s)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.faults = faults if faults is not None else FaultPlan()
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        self._injected = DbFaults(self.faults, server_side_latency=not self.is_sqlite)
        # SQLite has one writer and every transaction here begins IMMEDIATE; queueing for it on
        # an in-process lock (bounded by the call timeout) replaces the busy handler's sleep-
        # and-retry, which starves some of a thousand concurrent actors past their timeout.
        # It is held only for one short transaction, never across a venue call.
        self._one_writer = threading.Lock() if self.is_sqlite else None

    @contextmanager
    def tx(self, op: str = "db_write", symbol: str | None = None) -> Iterator[Session]:
        """A transaction; injected faults apply per operation and symbol."""
        rule = self._injected.before(op, symbol)
        if self._one_writer is not None and not self._one_writer.acquire(timeout=self.call_timeout_s):
            raise DbTimeout(f"database busy for {self.call_timeout_s:g}s ({op})")
        try:
            with self._sessions.begin() as session:
                self._injected.inside(rule, session)
                yield session
        finally:
            if self._one_writer is not None:
                self._one_writer.release()

    def dispose(self) -> None:
        self.engine.dispose()
