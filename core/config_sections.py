"""The configuration's sections: one pydantic model each, with its defaults, bounds and checks.

A typo or an out-of-range value stops the service at start with a message naming the key;
`core.config` assembles these into `Config` and loads it (defaults, file, `--set`).
"""
from __future__ import annotations

import fnmatch
from decimal import Decimal
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from core.numbers import parse_decimal

MAX_SETTING = 10 ** 12
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
# Environment variables that hold venue credentials: never sent anywhere else (signals.token_env).
SECRET_ENV_PATTERNS = ("*_API_KEY", "*_API_SECRET", "*SECRET*", "*PASSPHRASE*")

# A Decimal from outside: finite, at most 40 characters, 30 digits, magnitude 1e-18 … 1e18.
BoundedDecimal = Annotated[Decimal, BeforeValidator(lambda v: parse_decimal(v, "the number"))]


class Section(BaseModel):
    """Every section: unknown keys refused, assignments validated, no inf or nan."""

    # allow_inf_nan: a deadline of `inf` (TOML has it) would wait forever
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    @field_validator("*", mode="after")
    @classmethod
    def _moderate(cls, v: Any) -> Any:
        """No setting is a number beyond 1e12: a timeout of 1e300 s overflows the clock's
        arithmetic, a count of 1e15 would be allocated."""
        if isinstance(v, (int, float)) and not isinstance(v, bool) and abs(v) > MAX_SETTING:
            raise ValueError(f"must be at most {MAX_SETTING:.0e} in magnitude")
        return v


def holds_secret(env_name: str) -> bool:
    return any(fnmatch.fnmatchcase(env_name.upper(), pat) for pat in SECRET_ENV_PATTERNS)


def is_loopback(url: str) -> bool:
    return (urlsplit(url).hostname or "") in LOOPBACK_HOSTS


def _check_url(url: str | None, what: str, schemes: tuple[str, ...]) -> None:
    if url is None:
        return
    parts = urlsplit(url)
    if parts.scheme not in schemes or not parts.hostname:
        raise ValueError(f"{what} must be a {' or '.join(s + '://' for s in schemes)} URL with a host, got {url[:80]!r}")
    if parts.username or parts.password:
        raise ValueError(f"{what} must not carry credentials (keys come from the environment)")


class ExchangeCfg(Section):
    name: Literal["paper", "binanceusdm", "bybit"] = "paper"
    api_url: str | None = None  # point the client at another base URL (contract tests)
    demo: bool = False  # Binance demo trading / Bybit demo trading
    # Milliseconds per unit of ccxt's request weight; unset: the venue's own unit, the one ccxt's
    # weights are written for (Binance 50 ms, Bybit 20 ms: at 50 ms Bybit got 2.5x less than its limits).
    rate_limit_ms: int | None = Field(default=None, ge=0)
    # ---- real venues through ccxt; keys come only from environment variables ----
    sandbox: bool = False  # Bybit testnet (Binance has no futures testnet for signed calls any more)
    ws_url: str | None = None  # websocket base; with api_url set and no ws_url, websockets stay off
    feed: Literal["auto", "websocket", "poll"] = "auto"  # auto: websocket, REST polling while it is down
    poll_interval_ms: int = Field(default=1000, ge=50)
    # Rate budget: at most rate_window_s / rate_limit_ms request weight per window, in bursts
    # (ccxt's rolling-window limiter); 0 = ccxt's leaky bucket, one request per rate_limit_ms.
    # 60 s because venues account weight per minute (Binance USD-M: 2,400/min; 50 ms per unit
    # spends half of it): start-up's account-wide reads (40 weight each) must not starve a wave.
    rate_window_s: float = Field(default=60.0, ge=0)
    # A stop the venue reports triggered (Binance TRIGGERING/TRIGGERED) but not filled after
    # this long no longer counts as protecting: alarm, and its position reconciles.
    trigger_stuck_s: float = Field(default=10.0, gt=0)
    # Account set-up at start and before a symbol's first entry (exchange/ccxt/account.py):
    # one-way position mode is required; margin mode and leverage are set and read back.
    leverage: int = Field(default=5, ge=1, le=125)
    margin_mode: Literal["isolated", "cross"] = "isolated"
    # For the liquidation estimate an entry's stop is checked against (the venues' lowest
    # maintenance-margin tiers are 0.4-1 % for majors; more for small symbols).
    maintenance_margin_pct: BoundedDecimal = Field(default=Decimal("1.0"), ge=0, lt=50)

    @model_validator(mode="after")
    def _urls(self) -> "ExchangeCfg":
        _check_url(self.api_url, "exchange.api_url", ("https", "http"))
        _check_url(self.ws_url, "exchange.ws_url", ("wss", "ws"))
        return self


class PaperCfg(Section):
    seed: int = 42
    latency_ms: float = Field(default=0, ge=0)
    jitter_ms: float = Field(default=0, ge=0)
    tick_interval_ms: float = Field(default=250, ge=0)
    volatility: float = Field(default=0.0015, ge=0)
    slippage_bps: BoundedDecimal = Field(default=Decimal(2), ge=0)
    extra_symbols: int = Field(default=0, ge=0, le=100_000)  # synthetic symbols for scale tests
    # The paper account (positions, balance, orders, prices) survives restarts like a real
    # venue's: unset = <run_dir>/paper-venue.db, "" = in memory only (gone at exit).
    state_file: str | None = None
    # Commission in % of each fill's notional; defaults are Binance USD-M's regular (VIP 0)
    # rates. Market orders and triggered stops take liquidity: they pay the taker rate.
    taker_fee_pct: BoundedDecimal = Field(default=Decimal("0.05"), ge=0, le=1, allow_inf_nan=False)
    maker_fee_pct: BoundedDecimal = Field(default=Decimal("0.02"), ge=0, le=1, allow_inf_nan=False)

    # Where prices come from: "random" (the seeded walk above), "file:DATA" (recorded candles,
    # played by a rehearsal: `bin/trader replay --prices`), "live:binanceusdm" / "live:bybit"
    # (a real venue's public price stream, no keys).
    prices: str = "random"

    @model_validator(mode="after")
    def _known_prices(self) -> "PaperCfg":
        if self.prices != "random" and not self.prices.startswith(("file:", "live:")):
            raise ValueError('prices must be "random", "file:DATA" or "live:binanceusdm|bybit"')
        if self.prices.startswith("live:") and self.prices[5:] not in ("binanceusdm", "bybit"):
            raise ValueError(f"prices: no public price stream for {self.prices[5:]!r} (binanceusdm, bybit)")
        return self


class RiskCfg(Section):
    max_positions_per_wave: int = Field(default=7, ge=1)
    max_open_positions: int = Field(default=50, ge=1)
    max_concurrent_opens: int = Field(default=0, ge=0)  # 0 = no limit
    position_notional_usdt: BoundedDecimal = Field(default=Decimal(200), gt=0)
    # fixed: position_notional_usdt each; equity_pct: that % of equity; risk_pct: the size whose
    # stop-out (at protection.stop_loss_pct) loses risk_pct % of equity
    sizing: Literal["fixed", "equity_pct", "risk_pct"] = "fixed"
    equity_pct: BoundedDecimal = Field(default=Decimal(2), gt=0, le=100, allow_inf_nan=False)
    risk_pct: BoundedDecimal = Field(default=Decimal("0.5"), gt=0, le=10, allow_inf_nan=False)
    max_position_usdt: BoundedDecimal = Field(default=Decimal(0), ge=0, allow_inf_nan=False)  # per trade; 0 = none
    max_exposure_usdt: BoundedDecimal = Field(default=Decimal(0), ge=0, allow_inf_nan=False)  # all open; 0 = none
    balance_refresh_s: float = Field(default=5.0, gt=0)  # how often equity is re-read for sizing
    # Stop taking waves once today's P&L (realized + unrealized) is this far below zero;
    # 0 = no limit. Open positions stay protected; `resume` or the next day lifts it.
    daily_loss_limit_usdt: BoundedDecimal = Field(default=Decimal(0), ge=0, allow_inf_nan=False)
    cooldown_after_stop_s: float = Field(default=0.0, ge=0)  # a stopped-out symbol waits; 0 = off


class ProtectionCfg(Section):
    stop_loss_pct: BoundedDecimal = Field(default=Decimal("2.0"), gt=0, lt=50)
    trailing_activation_pct: BoundedDecimal = Field(default=Decimal("1.0"), ge=0, lt=100)
    trailing_callback_pct: BoundedDecimal = Field(default=Decimal("0.5"), ge=Decimal("0.1"), le=20)
    trailing_mode: Literal["native", "emulated"] = "native"
    # How the first stop-loss reaches the venue (core/entry_protocol.py): "stop_first" (a
    # close-position stop acknowledged before the entry is sent), "attached" (the stop rides on
    # the entry order), "after_fill" (placed once the fill is known), or "auto": the venue's
    # own window-closing form when its gateway carries it.
    entry_mode: Literal["auto", "stop_first", "attached", "after_fill"] = "auto"
    max_attempts: int = Field(default=3, ge=1, le=10)
    retry_backoff_s: float = Field(default=0.5, ge=0)
    replace_min_interval_s: float = Field(default=1.0, ge=0)


class DeadlinesCfg(Section):
    venue_call_s: float = Field(default=10.0, gt=0)
    db_call_s: float = Field(default=5.0, gt=0)
    operation_s: float = Field(default=15.0, gt=0)  # an actor's deadline for one operation
    protect_s: float = Field(default=30.0, gt=0)
    wave_s: float = Field(default=120.0, gt=0)
    shutdown_s: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _calls_fit_in_operation(self) -> "DeadlinesCfg":
        if max(self.venue_call_s, self.db_call_s) >= self.operation_s:
            raise ValueError("deadlines.venue_call_s and db_call_s must be shorter than operation_s")
        return self


class SupervisorCfg(Section):
    max_restarts: int = Field(default=3, ge=0)
    restart_window_s: float = Field(default=60.0, gt=0)
    backoff_base_s: float = Field(default=0.2, ge=0)
    backoff_max_s: float = Field(default=5.0, ge=0)
    watchdog_interval_s: float = Field(default=0.1, gt=0)


class DatabaseCfg(Section):
    url: str | None = None  # unset: the SQLite file <run_dir>/wave-trader.db
    pool_size: int = Field(default=10, ge=1)
    pool_timeout_s: float = Field(default=5.0, gt=0)
    auto_create: bool = True  # create the schema on an empty database; never upgrade silently
    # the one-owner lease (persistence/lease.py) is checked this often; losing it halts trading
    lease_check_s: float = Field(default=2.0, gt=0)


class SignalsCfg(Section):
    source: str = "demo"  # "demo" | path to a JSON-lines file | ws://… or wss://… (signal server)
    # A file's waves: "now" re-stamps each to its arrival (trade a recorded day today);
    # "recorded" keeps each wave's own ts and judges it at that time (`bin/trader replay`).
    file_clock: Literal["now", "recorded"] = "now"
    demo_interval_s: float = Field(default=5.0, gt=0)
    demo_wave_size: int = Field(default=7, ge=1)
    max_wave_size: int = Field(default=50, ge=1)
    max_age_s: float = Field(default=900.0, gt=0)
    # backpressure: waves that arrive while one is still opening wait here; when it is full
    # the oldest waiting wave is dropped (its signals skipped with the reason), see README
    inbox_size: int = Field(default=3, ge=0)
    # websocket source: the token is read from this environment variable, never from a file
    token_env: str = "WAVE_TRADER_SIGNALS_TOKEN"
    max_frame_bytes: int = Field(default=1_048_576, ge=1024, le=64 << 20)
    open_timeout_s: float = Field(default=10.0, gt=0)
    ping_interval_s: float = Field(default=20.0, gt=0)  # a silent server is dropped after 2× this
    reconnect_min_s: float = Field(default=0.5, gt=0)
    reconnect_max_s: float = Field(default=30.0, gt=0)
    # rejected messages recorded one by one (a row and an ERROR line) per minute; the rest counted
    reject_burst: int = Field(default=20, ge=0, le=100_000)

    @model_validator(mode="after")
    def _known_source(self) -> "SignalsCfg":
        if self.token_env and holds_secret(self.token_env):
            raise ValueError(f"token_env {self.token_env!r} names a variable for venue credentials; the "
                             "signal server would receive it as its bearer token — use a variable of its own")
        if self.source.startswith(("ws://", "wss://")):
            if not urlsplit(self.source).hostname:
                raise ValueError(f"source {self.source!r} has no host")
        elif "://" in self.source and not self.source.startswith("file:"):
            raise ValueError("source must be demo, a file path (file:PATH) or a ws:// / wss:// URL")
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("reconnect_max_s must not be shorter than reconnect_min_s")
        return self


class LogCfg(Section):
    level: str = "INFO"
    file: str | None = None  # unset: <run_dir>/log/wave-trader.log; "" = no log file
    status_interval_s: float = Field(default=10.0, ge=0)


class FaultCfg(Section):
    kind: str
    op: str = "*"
    leg: str = "*"
    symbols: list[str] = []
    probability: float = Field(default=1.0, ge=0, le=1)
    times: int = Field(default=0, ge=0)
    latency_ms: int = Field(default=0, ge=0)


class FaultsCfg(Section):
    seed: int = 7
    venue: list[FaultCfg] = []
    db: list[FaultCfg] = []
    actor: list[FaultCfg] = []


class ControlCfg(Section):
    """The operator's control plane: a Unix socket for the console and one-shot commands, and
    an HTTP endpoint on the loopback interface for /healthz and Prometheus /metrics."""

    socket: str | None = None  # default: <run_dir>/control.sock
    max_frame_bytes: int = Field(default=65536, ge=1024, le=1 << 20)
    max_connections: int = Field(default=16, ge=1)
    request_timeout_s: float = Field(default=5.0, gt=0)  # bounds every actor ask a command makes
    # a request must arrive whole within this of the connection going idle, however slowly it drips
    idle_timeout_s: float = Field(default=30.0, gt=0, le=3600)
    metrics_max_connections: int = Field(default=8, ge=1, le=256)
    metrics_timeout_s: float = Field(default=10.0, gt=0, le=300)  # a whole HTTP connection
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=9464, ge=-1, le=65535)  # 0: any free port; -1: no HTTP endpoint

    @model_validator(mode="after")
    def _loopback_only(self) -> "ControlCfg":
        if self.metrics_host not in ("127.0.0.1", "::1", "localhost"):
            raise ValueError("control.metrics_host must be a loopback address (127.0.0.1, ::1, localhost)")
        return self


class HealthCfg(Section):
    """Thresholds for healthy / degraded / critical (README: "Health and metrics")."""

    sample_interval_s: float = Field(default=1.0, gt=0)
    log_interval_s: float = Field(default=30.0, ge=0)  # periodic health line; 0 = off
    grace_s: float = Field(default=10.0, ge=0)  # entry → trailing stop before it counts as uncovered
    unprotected_degraded_s: float = Field(default=5.0, ge=0)
    unprotected_critical_s: float = Field(default=30.0, ge=0)
    coverage_degraded_below: float = Field(default=1.0, ge=0, le=1)
    coverage_critical_below: float = Field(default=0.9, ge=0, le=1)
    abandoned_critical: int = Field(default=20, ge=1)
    venue_p99_degraded_s: float = Field(default=5.0, gt=0)
    db_p99_degraded_s: float = Field(default=1.0, gt=0)
    latency_window: int = Field(default=500, ge=10)  # calls kept for the p50/p99 in status


class GuardianCfg(Section):
    """The guardian: an independent watch over the venue's own view of our protection."""

    enabled: bool = True
    # One positions read and one open-orders read per round, issued together. On venues with
    # a request-weight budget the interval is stretched to keep within `max_budget_share`.
    interval_s: float = Field(default=2.0, gt=0)
    grace_s: float = Field(default=10.0, ge=0)  # naked longer than this: critical, emergency stop
    emergency_stop: bool = True  # false: report only, never place an order
    max_budget_share: float = Field(default=0.25, gt=0, le=1)


class RecoveryCfg(Section):
    """What a start does with state left by a previous run (see service/recovery.py POLICY)."""

    unknown_venue_position: Literal["adopt", "close", "report"] = "adopt"
    reconcile_timeout_s: float = Field(default=60.0, gt=0)  # start-up waits this long at most
    progress_every_s: float = Field(default=1.0, gt=0)


class BacktestCfg(Section):
    """Settings only a backtest uses; latency and slippage are the paper venue's own."""

    fee_bps: Decimal = Field(default=Decimal(5), ge=0, le=1000)  # per fill, of its notional


class AlertsCfg(Section):
    """Alerts through apprise. The URLs carry tokens: they are read only from the environment."""

    urls_env: str = "WAVE_TRADER_ALERT_URLS"
    queue_size: int = Field(default=100, ge=1, le=10_000)


class ReportCfg(Section):
    """How money is reported: the day that "today" means."""

    timezone: str = "UTC"

    @model_validator(mode="after")
    def _known_zone(self) -> "ReportCfg":
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {self.timezone!r} (an IANA name: UTC, Europe/Berlin, …)") from None
        return self
