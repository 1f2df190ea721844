"""Run `bin/trader run` as a real process, kill it with SIGKILL, and look at what it left behind:
its PostgreSQL database and its paper venue's state file, both read from outside."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from core.client_ids import position_id_of
from exchange.paper.engine import PaperEngine
from exchange.paper.store import PaperStore
from exchange.paper.universe import paper_markets, start_prices
from persistence.db import Database
from persistence.models import EventRow, OrderRow, PositionRow, SignalRow
from persistence.schema import upgrade
from tests.support.helpers import wait_for

ROOT = Path(__file__).resolve().parents[2]


def toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)


@dataclass
class Trader:
    """One trader installation: a config, a database, a venue file, a signals file."""

    tmp: Path
    db_url: str
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    proc: subprocess.Popen | None = None
    runs: int = 0

    def __post_init__(self) -> None:
        self.db = Database(self.db_url, pool_size=2)
        upgrade(self.db.engine)  # as `bin/trader db upgrade` would, before the first run
        self.venue_file = self.tmp / "paper-venue.db"
        self.signals = self.tmp / "waves.jsonl"

    def write_waves(self, *lines: str) -> None:
        self.signals.write_text("\n".join(lines) + "\n")

    def start(self, faults: list[dict] = (), **sections: dict[str, Any]) -> subprocess.Popen:
        """Start `bin/trader run`; `faults` are venue fault rules for this run only."""
        assert self.proc is None or self.proc.poll() is not None, "previous run still alive"
        self.runs += 1
        cfg: dict[str, dict[str, Any]] = {
            "database": {"url": self.db_url, "pool_size": 4},
            "signals": {"source": f"file:{self.signals}"},
            "log": {"file": str(self.tmp / f"trader-{self.runs}.log"), "status_interval_s": 0, "level": "DEBUG"},
            "supervisor": {"backoff_base_s": 0.05, "backoff_max_s": 0.2},
            # the kill points are placed between an entry's fill and its stop (after_fill)
            "protection": {"entry_mode": "after_fill"},
        }
        for name, values in [*self.settings.items(), *sections.items()]:
            cfg.setdefault(name, {}).update(values)
        lines = [f'run_dir = {toml(str(self.tmp))}']
        for name, values in cfg.items():
            lines += [f"[{name}]", *(f"{k} = {toml(v)}" for k, v in values.items())]
        lines += ["[faults]", f"venue = {toml(list(faults))}"]
        path = self.tmp / f"config-{self.runs}.toml"
        path.write_text("\n".join(lines) + "\n")
        self.stdout = self.tmp / f"stdout-{self.runs}.txt"
        self.stderr = self.tmp / f"stderr-{self.runs}.txt"
        with self.stdout.open("w") as out, self.stderr.open("w") as err:
            self.proc = subprocess.Popen([str(ROOT / "bin" / "trader"), "run", "--config", str(path), "--json"],
                                         cwd=ROOT, stdout=out, stderr=err, start_new_session=True)
        return self.proc

    def kill(self) -> None:
        """`kill -9`: no shutdown code runs, in-flight calls are simply gone."""
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def finish(self, timeout: float = 60) -> dict:
        """Wait for a run to end by itself; its JSON summary (last stdout line)."""
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"trader run {self.runs} did not finish in {timeout}s\n{self.log_tail()}")
        assert rc == 0, f"trader run {self.runs} exited {rc}\n{self.log_tail()}"
        return json.loads(self.stdout.read_text().strip().splitlines()[-1])

    def log_tail(self, n: int = 40) -> str:
        return "\n".join(self.stderr.read_text().splitlines()[-n:])

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # ---- what it left behind -------------------------------------------------------------

    def positions(self) -> dict[str, PositionRow]:
        with self.db.tx("db_read") as tx:
            return {r.symbol: r for r in tx.scalars(select(PositionRow).order_by(PositionRow.opened_ts))}

    def orders(self) -> list[OrderRow]:
        with self.db.tx("db_read") as tx:
            return list(tx.scalars(select(OrderRow).order_by(OrderRow.created_ts)))

    def outcomes(self) -> dict[str, str | None]:
        with self.db.tx("db_read") as tx:
            return dict(tx.execute(select(SignalRow.id, SignalRow.outcome)).all())

    def events(self) -> int:
        with self.db.tx("db_read") as tx:
            return tx.scalar(select(func.count()).select_from(EventRow))

    def venue_orders(self) -> dict[str, dict]:
        """The venue's orders by client id, as its own file has them right now."""
        if not self.venue_file.exists():
            return {}
        store = PaperStore(self.venue_file, readonly=True)
        try:
            return {o["cid"]: o for o in store.load().orders}
        except sqlite3.OperationalError:  # the trader is still creating the file
            return {}
        finally:
            store.close()

    def venue_orders_by_position(self) -> dict[str, dict[str, int]]:
        """How many orders of each leg the venue ever accepted, per position."""
        out: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for cid, o in self.venue_orders().items():
            if (pid := position_id_of(cid)) is not None:
                out[pid][o["leg"]] += 1
        return out

    def venue(self, extra_symbols: int = 0) -> PaperEngine:
        """The venue reopened on its file (only once the trader is down)."""
        assert not self.alive()
        return PaperEngine(paper_markets(extra_symbols), start_prices(extra_symbols),
                           store=PaperStore(self.venue_file))

    def wait_protected(self, timeout: float) -> float:
        """Seconds from the trader's start (its first log line: the interpreter is up, imports
        done) until every open position is past entry with its stop resting at the venue.
        The interpreter's start-up is not the service's to answer for: on a loaded machine it
        alone can take seconds, so it gets its own generous wait."""
        log = self.tmp / f"trader-{self.runs}.log"
        wait_for(lambda: log.exists() and "wave-trader starting" in log.read_text(), timeout=60,
                 what="the trader to start")
        t0 = time.monotonic()

        def protected() -> bool:
            rows = [r for r in self.positions().values()
                    if r.phase not in ("closed", "failed", "emergency_closed")]
            resting = {c for c, o in self.venue_orders().items() if o["status"] == "open"}
            return bool(rows) and all(r.phase in ("protected", "trailing") and r.stop_cid in resting
                                      for r in rows)

        wait_for(protected, timeout=timeout, what="every open position protected at the venue")
        return time.monotonic() - t0
