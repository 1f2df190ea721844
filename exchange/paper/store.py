"""The paper venue's own durable memory: a small SQLite file, separate from the trader's database.

A real venue keeps our positions, balance and orders whatever happens to the trader process;
this store gives the paper venue the same property, so a restart after `kill -9` resumes the
same paper account and recovery reconciles against it exactly as it would against Binance.

The engine hands over journal entries in mutation order; `write` applies a batch of them in
one transaction, so what is on disk is always a prefix of the engine's history (never half of
a fill). Decimals are stored as text: exact on the way back.
"""
from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from core.files import private_file

FORMAT = "1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS prices (symbol TEXT PRIMARY KEY, price TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS positions (symbol TEXT PRIMARY KEY, qty TEXT NOT NULL, entry TEXT);
CREATE TABLE IF NOT EXISTS orders (
    cid TEXT PRIMARY KEY, symbol TEXT NOT NULL, leg TEXT NOT NULL, side TEXT NOT NULL,
    qty TEXT NOT NULL, stop_price TEXT, activation TEXT, callback_pct TEXT,
    status TEXT NOT NULL, filled_qty TEXT NOT NULL, avg_price TEXT,
    activated INTEGER NOT NULL, best TEXT, seq INTEGER NOT NULL, fee TEXT NOT NULL DEFAULT '0',
    close_position INTEGER NOT NULL DEFAULT 0, parent TEXT);
CREATE INDEX IF NOT EXISTS ix_orders_open ON orders (status) WHERE status = 'open';
CREATE TABLE IF NOT EXISTS trades (
    seq INTEGER PRIMARY KEY, cid TEXT NOT NULL, symbol TEXT NOT NULL, side TEXT NOT NULL,
    qty TEXT NOT NULL, price TEXT NOT NULL);
"""

# Journal entries: (kind, key, value). Kinds and their values:
#   "price"    symbol -> Decimal
#   "position" symbol -> (qty, entry | None)
#   "order"    cid    -> tuple in ORDER_FIELDS order
#   "trade"    seq    -> (cid, symbol, side, qty, price)
#   "meta"     key    -> str
Entry = tuple[str, Any, Any]
ORDER_FIELDS = ("cid", "symbol", "leg", "side", "qty", "stop_price", "activation", "callback_pct",
                "status", "filled_qty", "avg_price", "activated", "best", "fee", "close_position", "parent")
# Columns added to the orders table after its first version, with their definitions: a file
# written before them gains them at open (a stop without them was an ordinary reduce-only one).
# (an account from before fees were charged: its fills paid none)
_ADDED_ORDER_COLUMNS = {"fee": "TEXT NOT NULL DEFAULT '0'", "close_position": "INTEGER NOT NULL DEFAULT 0",
                        "parent": "TEXT"}


def _txt(v: Decimal | None) -> str | None:
    return None if v is None else str(v)


def _dec(v: str | None) -> Decimal | None:
    return None if v is None else Decimal(v)


@dataclass
class StoredAccount:
    """What the store remembers, as plain values for the engine to rebuild itself from."""

    prices: dict[str, Decimal] = field(default_factory=dict)
    positions: dict[str, tuple[Decimal, Decimal | None]] = field(default_factory=dict)
    orders: list[dict[str, Any]] = field(default_factory=list)  # in placement order
    meta: dict[str, str] = field(default_factory=dict)
    trades: int = 0


class PaperStore:
    """One connection, used by one writer at a time (the engine serializes calls to `write`)."""

    def __init__(self, path: str | Path, *, timeout_s: float = 5.0, readonly: bool = False) -> None:
        self.path = Path(path)
        if readonly:  # an observer (tests, tools) while the venue runs in another process
            self._conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=timeout_s,
                                         isolation_level=None, check_same_thread=False)
            return
        private_file(self.path)  # the account is ours alone: 0600, never through a symlink
        self._conn = sqlite3.connect(self.path, timeout=timeout_s, isolation_level=None,
                                     check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")  # survives a process kill; cheap commits
        self._conn.executescript(_SCHEMA)
        have = {row[1] for row in self._conn.execute("PRAGMA table_info(orders)")}
        for col, ddl in _ADDED_ORDER_COLUMNS.items():
            if col not in have:
                self._conn.execute(f"ALTER TABLE orders ADD COLUMN {col} {ddl}")
        self._conn.execute("INSERT OR IGNORE INTO meta VALUES ('format', ?)", (FORMAT,))
        fmt = self._conn.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()[0]
        if fmt != FORMAT:
            raise RuntimeError(f"paper venue state {self.path} has format {fmt}, expected {FORMAT}")

    def load(self) -> StoredAccount:
        c = self._conn
        acc = StoredAccount()
        acc.prices = {s: Decimal(p) for s, p in c.execute("SELECT symbol, price FROM prices")}
        acc.positions = {s: (Decimal(q), _dec(e)) for s, q, e in
                         c.execute("SELECT symbol, qty, entry FROM positions")}
        cols = ", ".join(ORDER_FIELDS)
        for row in c.execute(f"SELECT {cols} FROM orders ORDER BY seq"):
            o = dict(zip(ORDER_FIELDS, row))
            for k in ("qty", "stop_price", "activation", "callback_pct", "filled_qty", "avg_price", "best", "fee"):
                o[k] = _dec(o[k])
            o["activated"] = bool(o["activated"])
            o["close_position"] = bool(o["close_position"])
            acc.orders.append(o)
        acc.meta = dict(c.execute("SELECT key, value FROM meta"))
        acc.trades = c.execute("SELECT COALESCE(MAX(seq), 0) FROM trades").fetchone()[0]
        return acc

    def write(self, seq0: int, batch: list[Entry]) -> None:
        """Apply journal entries (oldest first) in one transaction; `seq0` numbers new orders."""
        c = self._conn
        c.execute("BEGIN IMMEDIATE")
        try:
            for n, (kind, key, value) in enumerate(batch):
                if kind == "price":
                    c.execute("INSERT INTO prices VALUES (?, ?) ON CONFLICT(symbol) DO UPDATE "
                              "SET price = excluded.price", (key, str(value)))
                elif kind == "position":
                    c.execute("INSERT INTO positions VALUES (?, ?, ?) ON CONFLICT(symbol) DO UPDATE "
                              "SET qty = excluded.qty, entry = excluded.entry",
                              (key, str(value[0]), _txt(value[1])))
                elif kind == "order":
                    vals = [(_txt(v) if isinstance(v, Decimal) else v) for v in value]
                    vals[2] = str(vals[2])  # Leg → its one-letter value
                    cols = ", ".join(ORDER_FIELDS)
                    c.execute(f"INSERT INTO orders ({cols}, seq) VALUES ({', '.join('?' * (len(ORDER_FIELDS) + 1))}) "
                              f"ON CONFLICT(cid) DO UPDATE SET "
                              + ", ".join(f"{f} = excluded.{f}" for f in ORDER_FIELDS[1:]),
                              (*vals, seq0 + n))
                elif kind == "trade":
                    cid, symbol, side, qty, price = value
                    c.execute("INSERT INTO trades VALUES (?, ?, ?, ?, ?, ?)",
                              (key, cid, symbol, side, str(qty), str(price)))
                elif kind == "meta":
                    c.execute("INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE "
                              "SET value = excluded.value", (key, str(value)))
                else:
                    raise ValueError(f"unknown journal entry kind {kind!r}")
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise

    def trades(self) -> list[tuple[int, str, str, str, Decimal, Decimal]]:
        """The venue's fill history, oldest first (what `fetch_my_trades` would return)."""
        return [(seq, cid, sym, side, Decimal(q), Decimal(p)) for seq, cid, sym, side, q, p in
                self._conn.execute("SELECT seq, cid, symbol, side, qty, price FROM trades ORDER BY seq")]

    def close(self) -> None:
        self._conn.close()
