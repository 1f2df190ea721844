"""Every configuration key, described: the one-line help of `bin/trader config` and the README's
configuration table, both generated from the pydantic models (types, bounds, defaults).

A description written as `Field(description=…)` in `core/config_sections.py` wins; the ones below fill
in the rest (kept apart so the models stay short). A key without a description fails
`tests/test_config_command.py`.
"""
from __future__ import annotations

import json
import types
import typing
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel

from core import config as c

DESCRIPTIONS: dict[str, str] = {
    "run_dir": "directory of the paper account, the control socket, and the default database and log",
    # exchange
    "exchange.name": "the venue: the paper venue, Binance USD-M futures or Bybit linear (through ccxt)",
    "exchange.api_url": "another REST base URL for the venue (a local fake venue; loopback needs no keys)",
    "exchange.demo": "Binance demo trading / Bybit demo trading instead of the live account",
    "exchange.rate_limit_ms": "ms per unit of request weight (the venue's rate limit, spent in bursts)",
    "exchange.sandbox": "Bybit testnet (Binance USD-M has none for signed calls)",
    "exchange.ws_url": "websocket base URL; with api_url set and this unset, websockets stay off",
    "exchange.feed": "prices over websockets with REST polling while they are down, or one of them only",
    "exchange.poll_interval_ms": "REST polling interval for prices and fills while websockets are down",
    "exchange.rate_window_s": "window of the request-weight budget (0: one request per rate_limit_ms)",
    "exchange.trigger_stuck_s": "a stop the venue reports triggered but not filled this long no longer counts as protecting",
    "exchange.leverage": "leverage set and verified per traded symbol before its first entry",
    "exchange.margin_mode": "margin mode set and verified per traded symbol (Bybit unified: account-wide)",
    "exchange.maintenance_margin_pct": "maintenance margin for the liquidation estimate an entry's stop is checked against",
    # paper
    "paper.seed": "seed of the paper venue's random walk (same seed, same prices)",
    "paper.latency_ms": "simulated round trip of every paper venue call",
    "paper.jitter_ms": "random extra latency, up to this much, per call",
    "paper.tick_interval_ms": "how often the paper market moves (0: only when a test sets prices)",
    "paper.volatility": "random-walk volatility per second of the paper prices",
    "paper.slippage_bps": "slippage of paper market fills, in basis points against us",
    "paper.extra_symbols": "synthetic symbols added to the paper universe (scale tests)",
    "paper.state_file": "the paper account's own file (unset: <run_dir>/paper-venue.db; \"\": in memory)",
    "paper.prices": "where paper prices come from: random (the seeded walk), live:binanceusdm / live:bybit (public stream)",
    "paper.taker_fee_pct": "commission on fills that take liquidity, % of notional (Binance USD-M VIP 0: 0.05)",
    "paper.maker_fee_pct": "commission on resting limit fills, % of notional (Binance USD-M VIP 0: 0.02)",
    # risk
    "risk.max_positions_per_wave": "positions one wave may open (best scores first)",
    "risk.max_open_positions": "positions open on the account at once",
    "risk.max_concurrent_opens": "positions opening at the same moment (0: no limit)",
    "risk.position_notional_usdt": "size of each position in USDT with sizing = fixed",
    "risk.sizing": "fixed USDT, a % of equity, or the size whose stop-out loses risk_pct % of equity",
    "risk.equity_pct": "with sizing = equity_pct: each position's notional as a % of equity",
    "risk.risk_pct": "with sizing = risk_pct: % of equity lost if the stop-loss is hit (fees aside); the size is capped at equity × `exchange.leverage`",
    "risk.max_position_usdt": "cap on one position's notional in USDT (0: none)",
    "risk.max_exposure_usdt": "cap on the notional of all open positions together in USDT (0: none)",
    "risk.balance_refresh_s": "how often the venue's equity is re-read for sizing by equity",
    "risk.daily_loss_limit_usdt": "stop taking waves when today's realized + unrealized P&L is below -this (0: off)",
    "risk.cooldown_after_stop_s": "seconds a symbol is not traded after a stop-out (0: off)",
    # protection
    "protection.stop_loss_pct": "stop-loss distance from the entry, %",
    "protection.trailing_activation_pct": "profit from the entry, %, at which the trailing stop starts",
    "protection.trailing_callback_pct": "how far the trailing stop follows the best price, % (venue: 0.1-10)",
    "protection.trailing_mode": "native: the venue trails; emulated: the service moves the stop-loss",
    "protection.entry_mode": "auto (the venue's window-closing form), stop_first, attached or after_fill (README: entry protocols)",
    "protection.max_attempts": "attempts for a protective order before the position is closed",
    "protection.retry_backoff_s": "first retry delay of a protective order (doubles each attempt)",
    "protection.replace_min_interval_s": "emulated trailing: least time between two stop replacements",
    # deadlines
    "deadlines.venue_call_s": "timeout of every venue call",
    "deadlines.db_call_s": "timeout of every database call (statement, lock, pool)",
    "deadlines.operation_s": "an actor's deadline for one operation; past it the supervisor restarts it",
    "deadlines.protect_s": "longest a position may stay without a resting stop before a restart",
    "deadlines.wave_s": "time a wave has to give every signal its outcome before it counts as late",
    "deadlines.shutdown_s": "how long shutdown waits for in-flight work",
    # supervisor
    "supervisor.max_restarts": "restarts within restart_window_s before a child is escalated (closed, flagged)",
    "supervisor.restart_window_s": "window of the restart intensity",
    "supervisor.backoff_base_s": "first restart backoff (jittered, doubling)",
    "supervisor.backoff_max_s": "longest restart backoff",
    "supervisor.watchdog_interval_s": "how often deadlines are checked",
    # database
    "database.url": "SQLAlchemy URL: sqlite:///FILE or postgresql+psycopg://user@host/db (password from PGPASSWORD)",
    "database.pool_size": "database connections kept open",
    "database.pool_timeout_s": "wait for a free connection before the call fails",
    "database.auto_create": "create the schema on an empty database (an old schema is never upgraded silently)",
    "database.lease_check_s": "how often the one-owner lease is checked; losing it halts trading",
    # signals
    "signals.source": "demo, a JSON-lines file (file:PATH, relative to where you run bin/trader) or ws:// / wss://",
    "signals.demo_interval_s": "seconds between demo waves",
    "signals.demo_wave_size": "signals per demo wave",
    "signals.max_wave_size": "signals a wave may carry (a larger one is rejected)",
    "signals.max_age_s": "a wave older than this is skipped",
    "signals.inbox_size": "waves waiting while one opens; when full the oldest waiting one is dropped",
    "signals.token_env": "environment variable holding the signal server's bearer token",
    "signals.max_frame_bytes": "largest websocket frame accepted",
    "signals.open_timeout_s": "websocket handshake timeout",
    "signals.ping_interval_s": "keepalive ping interval (a silent server is dropped after twice this)",
    "signals.reconnect_min_s": "first reconnect delay",
    "signals.reconnect_max_s": "longest reconnect delay",
    "signals.file_clock": "file source: now re-stamps each wave to the time it is read; recorded keeps its own ts",
    "signals.reject_burst": "refused messages per minute that get a row and an ERROR line; the rest are counted",
    # log
    "log.level": "log level on stderr and in the file",
    "log.file": "log file, rotated (unset or \"\": none)",
    "log.status_interval_s": "seconds between live-view status lines (0: none)",
    # faults
    "faults.seed": "seed of the injected faults (the same run twice fails the same way)",
    "faults.venue": "faults injected into venue calls (README: fault injection)",
    "faults.db": "faults injected into database calls",
    "faults.actor": "faults injected into actors (crash, hang)",
    "faults.*[].kind": "latency, unavailable, timeout_accepted, timeout_lost, invalid, hang, crash, slow_reply",
    "faults.*[].op": "the call it applies to (place_order, db_write, tick, …) or *",
    "faults.*[].leg": "entry, stop, trailing, exit or *",
    "faults.*[].symbols": "symbols it applies to (empty: every symbol)",
    "faults.*[].probability": "chance per call",
    "faults.*[].times": "how many times at most (0: unlimited)",
    "faults.*[].latency_ms": "added latency for kind = latency / slow_reply",
    # recovery
    "recovery.unknown_venue_position": "a venue position we do not know at start: adopt and protect, close, or report",
    "recovery.reconcile_timeout_s": "start-up waits this long at most for reconciliation",
    "recovery.progress_every_s": "progress line interval of a large recovery",
    # control
    "control.socket": "the control socket (unset: <run_dir>/control.sock)",
    "control.max_frame_bytes": "largest control request",
    "control.max_connections": "control connections at once",
    "control.request_timeout_s": "bound of every actor ask a control command makes",
    "control.metrics_host": "/metrics and /healthz address (loopback only)",
    "control.metrics_port": "/metrics and /healthz port (0: any free port; -1: off)",
    "control.idle_timeout_s": "a control connection is closed after this long, however it drips",
    "control.metrics_max_connections": "metrics connections served at once; more get 503",
    "control.metrics_timeout_s": "a metrics connection's deadline",
    # health
    "health.sample_interval_s": "how often health is computed",
    "health.log_interval_s": "periodic health line (0: only on a change)",
    "health.grace_s": "entry to trailing stop before a position counts as uncovered",
    "health.unprotected_degraded_s": "a position without a resting stop this long: degraded",
    "health.unprotected_critical_s": "a position without a resting stop this long: critical",
    "health.coverage_degraded_below": "trailing coverage below this: degraded",
    "health.coverage_critical_below": "trailing coverage below this: critical",
    "health.abandoned_critical": "abandoned actor threads alive at which health is critical",
    "health.venue_p99_degraded_s": "venue p99 latency above this: degraded",
    "health.db_p99_degraded_s": "database p99 latency above this: degraded",
    "health.latency_window": "calls kept for the p50/p99",
    # report, alerts
    "report.timezone": "IANA time zone of the reporting day (today's P&L, the daily loss limit)",
    "alerts.urls_env": "environment variable with the apprise URLs (space or comma separated; never in a file)",
    "alerts.queue_size": "alerts waiting to be sent; more are dropped and counted",
    "backtest.fee_bps": "backtest commission per fill, basis points of its notional",
    "guardian.enabled": "run the guardian: it reads the venue's positions and resting orders and judges protection from them",
    "guardian.interval_s": "seconds between two guardian reads of the venue (one positions read + one open-orders read)",
    "guardian.grace_s": "a venue position without a resting protective stop this long: health critical and an emergency stop",
    "guardian.emergency_stop": "place an emergency reduce-only stop (or close at market) past grace_s; false: report only",
    "guardian.max_budget_share": "largest share of the venue's request budget the guardian's reads may take",
}


REQUIRED = "(required)"


@dataclass(frozen=True, slots=True)
class KeyInfo:
    key: str
    type: str
    default: Any
    current: Any
    description: str

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "type": self.type, "default": _plain(self.default),
                "current": _plain(self.current), "description": self.description}


def _plain(v: Any) -> Any:
    if isinstance(v, Decimal):
        return str(v)
    if isinstance(v, BaseModel):
        return v.model_dump(mode="json")
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


def _type_name(t: Any, metadata: list[Any]) -> str:
    origin, args = typing.get_origin(t), typing.get_args(t)
    if origin is Literal:
        name = "one of " + ", ".join(str(a) for a in args)
    elif origin in (typing.Union, types.UnionType):
        parts = [_type_name(a, []) for a in args if a is not type(None)]
        name = " or ".join(parts) + (" (or unset)" if type(None) in args else "")
    elif origin is list:
        name = f"list of {_type_name(args[0], [])}" if args else "list"
    elif isinstance(t, type) and issubclass(t, BaseModel):
        name = "table"
    else:
        name = {bool: "boolean", int: "integer", float: "number", Decimal: "decimal", str: "text"}.get(t, str(t))
    bounds = []
    for m in metadata:
        for attr, sym in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<")):
            if getattr(m, attr, None) is not None:
                bounds.append(f"{sym} {getattr(m, attr)}")
    return name + (f" ({', '.join(bounds)})" if bounds else "")


def _describe(key: str, field: Any) -> str:
    if field.description:
        return str(field.description)
    generic = "faults.*[]." + key.rsplit(".", 1)[-1] if key.startswith("faults.") and "[]" in key else None
    return DESCRIPTIONS.get(key) or (DESCRIPTIONS.get(generic, "") if generic else "")


def keys(cfg: c.Config | None = None) -> list[KeyInfo]:
    """Every key of the models, sections in model order; list-of-table keys as `a.b[].c`."""
    cfg = cfg or c.Config()
    out: list[KeyInfo] = []

    def walk(model: type[BaseModel], current: Any, prefix: str) -> None:
        for name, field in model.model_fields.items():
            key = f"{prefix}{name}"
            t = field.annotation
            value = getattr(current, name, None) if current is not None else None
            if isinstance(t, type) and issubclass(t, BaseModel):
                walk(t, value, key + ".")
                continue
            default = REQUIRED if field.is_required() else field.get_default(call_default_factory=True)
            # a key of each entry of a list (faults.venue[].op) has no one current value
            out.append(KeyInfo(key, _type_name(t, field.metadata), default,
                               value if current is not None else default, _describe(key, field)))
            inner = typing.get_args(t)[0] if typing.get_origin(t) is list and typing.get_args(t) else None
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                walk(inner, None, key + "[].")

    walk(c.Config, cfg, "")
    return out


def _literal(v: Any) -> str:
    """A value as `--set` takes it (a TOML literal)."""
    if v is REQUIRED:
        return v
    if v is None:
        return "unset"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return json.dumps(_plain(v))
    return str(v)


def markdown_table() -> str:
    """The README's configuration table (kept equal to this by a test)."""
    rows = ["| key | type | default | what it does |", "|---|---|---|---|"]
    for k in keys():
        default = _literal(k.default)
        rows.append(f"| `{k.key}` | {k.type} | `{default}` | {k.description} |".replace("`unset`", "unset"))
    return "\n".join(rows)


def text_table(items: list[KeyInfo]) -> str:
    lines = []
    for k in items:
        cur = "" if k.current == k.default else f"  (now {_literal(k.current)})"
        lines.append(f"{k.key} = {_literal(k.default)}{cur}\n    {k.type} — {k.description}")
    return "\n".join(lines)
