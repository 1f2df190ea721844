"""Rehearsing a recorded file of waves against the paper venue (`bin/trader replay`, chaos).

A rehearsal must never touch the live database or a real venue: the venue is always the
paper one, and the database is a fresh temporary SQLite file unless `--set database.url=…`
names one explicitly (a URL in the config file does not count: that is the live one).
Waves are sent in file order, each after the previous one is final, each judged at its own
`ts` (re-stamped to now only with `--restamp`). With `--prices DATA` the paper venue plays
recorded candles instead of its random walk, each wave entering at its own time on that path
(backtest/rehearsal.py), and the report is the backtest's: exits, reasons, PnL.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import func, select

from core.config import Config, load_config

if TYPE_CHECKING:
    from service.app import Service

OUTCOMES = ("protected", "emergency_closed", "failed", "skipped", "rejected", "pending")
COLUMNS = (*OUTCOMES, "duplicates")


def replay_config(config: str | None, overrides: list[str], path: Path, *, restamp: bool = False,
                  prices: Path | None = None) -> tuple[Config, str | None]:
    forced = [f"signals.source=file:{path}", f"signals.file_clock={'now' if restamp else 'recorded'}"]
    if prices is not None:
        forced.append(f"paper.prices='file:{prices}'")
    return rehearsal_config(config, overrides, forced, "replay")


def signal_table(svc: "Service", wave_ids: list[str]) -> list[dict]:
    """Every signal of these waves with its outcome and the reason for it."""
    from persistence.models import SignalRow

    with svc.db.tx("db_read") as tx:
        rows = list(tx.scalars(select(SignalRow).where(SignalRow.wave_id.in_(wave_ids)))) if wave_ids else []
    order = {w: n for n, w in enumerate(wave_ids)}
    return [{"wave": r.wave_id, "signal": r.id, "symbol": r.symbol, "side": r.side, "rank": r.rank,
             "outcome": r.outcome or "pending", "reason": r.reason}
            for r in sorted(rows, key=lambda r: (order.get(r.wave_id, 0), r.rank))]


def rehearsal_config(config: str | None, overrides: list[str], forced: list[str],
                     kind: str) -> tuple[Config, str | None]:
    """The operator's config with a rehearsal's guarantees on top (a fresh in-memory paper
    venue, a throwaway database, not the live log); returns the config and the temporary directory holding its
    database, if one was made. Shared by `replay` and `chaos`."""
    keys = {o.partition("=")[0].strip() for o in overrides}
    forced = [*forced, "exchange.name=paper"]
    tmp = None
    if "database.url" not in keys:
        tmp = tempfile.mkdtemp(prefix=f"wave-trader-{kind}-")
        forced.append(f"database.url=sqlite:///{tmp}/{kind}.db")
    if "log.file" not in keys:
        forced.append("log.file=''")  # keep the rehearsal out of the live log
    if "paper.state_file" not in keys:
        forced.append("paper.state_file=''")  # a fresh paper account, never the live one
    cfg = load_config(config, [*overrides, *forced])
    cfg.log.file = cfg.log.file or None
    return cfg, tmp


def wave_table(svc: "Service", path: Path, since: float) -> list[dict]:
    """One row per message of this replay, in file order: its outcomes, its rejection, or
    that it was a redelivery (duplicate signal ids are counted, never opened)."""
    from persistence.models import EventRow, SignalRow, WaveRow

    prefix = f"{path.name}:"
    with svc.db.tx("db_read") as tx:
        waves = list(tx.scalars(select(WaveRow).where(WaveRow.source.like(f"{prefix}%"),
                                                     WaveRow.received_ts >= since - 1)))
        ids = [w.id for w in waves]
        counts = tx.execute(select(SignalRow.wave_id, SignalRow.outcome, func.count())
                            .where(SignalRow.wave_id.in_(ids))
                            .group_by(SignalRow.wave_id, SignalRow.outcome)).all() if ids else []
        events = list(tx.scalars(select(EventRow).where(
            EventRow.kind.in_(("wave_received", "wave_duplicate")), EventRow.ts >= since - 1)))
    by_wave: dict[str, dict[str, int]] = {}
    for wid, outcome, n in counts:
        by_wave.setdefault(wid, {})[outcome or "pending"] = n
    dup_signals = {e.wave_id: len(e.data.get("duplicates", [])) for e in events if e.kind == "wave_received"}
    stamped = {e.wave_id: e.data.get("ts") for e in events if e.kind == "wave_received"}
    rows = [{"line": _line(w.source), "wave": w.id, "status": w.status, "reason": w.reason, "ts": stamped.get(w.id),
             "duplicates": dup_signals.get(w.id, 0), **{k: by_wave.get(w.id, {}).get(k, 0) for k in OUTCOMES}}
            for w in waves]
    rows += [{"line": _line(e.data["source"]), "wave": e.wave_id, "status": "duplicate", "ts": None,
              "reason": e.data.get("reason"), "duplicates": e.data.get("signals", 0), **dict.fromkeys(OUTCOMES, 0)}
             for e in events if e.kind == "wave_duplicate" and str(e.data.get("source", "")).startswith(prefix)]
    return sorted(rows, key=lambda r: r["line"])


def _line(source: str) -> int:
    tail = source.rpartition(":")[2]
    return int(tail) if tail.isdigit() else 0


def render_signals(signals: list[dict]) -> str:
    from tabulate import tabulate

    return tabulate([[s["wave"], s["signal"], s["symbol"], s["side"], s["outcome"], s["reason"] or ""]
                     for s in signals], headers=["wave", "signal", "symbol", "side", "outcome", "reason"],
                    disable_numparse=True)


def render(rows: list[dict], summary: dict) -> str:
    head = f"{'line':>5}  {'wave':<28} {'status':<9} " + " ".join(f"{k[:9]:>9}" for k in COLUMNS) + "  reason"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['line']:>5}  {r['wave'][:28]:<28} {r['status']:<9} "
                     + " ".join(f"{r[k]:>9}" for k in COLUMNS) + f"  {r['reason'] or ''}")
    totals = {k: sum(r[k] for r in rows) for k in COLUMNS}
    lines.append("-" * len(head))
    lines.append(f"{'':>5}  {'total':<28} {'':<9} " + " ".join(f"{totals[k]:>9}" for k in COLUMNS))
    lines.append(f"\n{summary['waves_completed']} waves completed, {summary['waves_rejected']} messages "
                 f"rejected; {summary['positions_opened']} positions opened, {summary['positions_protected']} "
                 f"protected (coverage {summary['ts_coverage']:.0%}); {summary['seconds']:.1f}s")
    return "\n".join(lines)
