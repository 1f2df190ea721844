"""Configuration: embedded defaults, an optional TOML file, then `--set section.key=value`.

Validated by pydantic so that a typo or an out-of-range value stops the service at start
with a message naming the key, instead of surfacing at 3 a.m. in the middle of a wave.
"""
from __future__ import annotations

import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ExchangeCfg(_Section):
    name: Literal["paper", "binanceusdm", "bybit"] = "paper"
    api_url: str | None = None  # point the client at another base URL (contract tests)
    demo: bool = False  # Binance demo trading / Bybit demo trading
    rate_limit_ms: int = Field(default=50, ge=0)
    # ---- real venues through ccxt (issue 4); keys come only from environment variables ----
    sandbox: bool = False  # Bybit testnet (Binance has no futures testnet for signed calls any more)
    ws_url: str | None = None  # websocket base; with api_url set and no ws_url, websockets stay off
    feed: Literal["auto", "websocket", "poll"] = "auto"  # auto: websocket, REST polling while it is down
    poll_interval_ms: int = Field(default=1000, ge=50)
    # Rate budget: at most rate_window_s / rate_limit_ms request weight per window, in bursts
    # (ccxt's rolling-window limiter); 0 = ccxt's leaky bucket, one request per rate_limit_ms.
    # 60 s because venues account weight per minute (Binance USD-M: 2,400/min; 50 ms per unit
    # spends half of it): start-up's account-wide reads (40 weight each) must not starve a wave.
    rate_window_s: float = Field(default=60.0, ge=0)


class PaperCfg(_Section):
    seed: int = 42
    latency_ms: float = Field(default=0, ge=0)
    jitter_ms: float = Field(default=0, ge=0)
    tick_interval_ms: float = Field(default=250, ge=0)
    volatility: float = Field(default=0.0015, ge=0)
    slippage_bps: Decimal = Field(default=Decimal(2), ge=0)
    extra_symbols: int = Field(default=0, ge=0)  # synthetic symbols for scale tests
    # The paper account (positions, balance, orders, prices) survives restarts like a real
    # venue's: unset = <run_dir>/paper-venue.db, "" = in memory only (gone at exit).
    state_file: str | None = None


class RiskCfg(_Section):
    max_positions_per_wave: int = Field(default=7, ge=1)
    max_open_positions: int = Field(default=50, ge=1)
    max_concurrent_opens: int = Field(default=0, ge=0)  # 0 = no limit
    position_notional_usdt: Decimal = Field(default=Decimal(200), gt=0)


class ProtectionCfg(_Section):
    stop_loss_pct: Decimal = Field(default=Decimal("2.0"), gt=0, lt=50)
    trailing_activation_pct: Decimal = Field(default=Decimal("1.0"), ge=0, lt=100)
    trailing_callback_pct: Decimal = Field(default=Decimal("0.5"), ge=Decimal("0.1"), le=10)
    trailing_mode: Literal["native", "emulated"] = "native"
    max_attempts: int = Field(default=3, ge=1, le=10)
    retry_backoff_s: float = Field(default=0.5, ge=0)
    replace_min_interval_s: float = Field(default=1.0, ge=0)


class DeadlinesCfg(_Section):
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


class SupervisorCfg(_Section):
    max_restarts: int = Field(default=3, ge=0)
    restart_window_s: float = Field(default=60.0, gt=0)
    backoff_base_s: float = Field(default=0.2, ge=0)
    backoff_max_s: float = Field(default=5.0, ge=0)
    watchdog_interval_s: float = Field(default=0.1, gt=0)


class DatabaseCfg(_Section):
    url: str = "sqlite:///var/wave-trader.db"
    pool_size: int = Field(default=10, ge=1)
    pool_timeout_s: float = Field(default=5.0, gt=0)
    auto_create: bool = True  # create the schema on an empty database; never upgrade silently


class SignalsCfg(_Section):
    source: str = "demo"  # "demo" | path to a JSON-lines file | ws://… or wss://… (signal server)
    demo_interval_s: float = Field(default=5.0, gt=0)
    demo_wave_size: int = Field(default=7, ge=1)
    max_wave_size: int = Field(default=50, ge=1)
    max_age_s: float = Field(default=900.0, gt=0)
    # backpressure: waves that arrive while one is still opening wait here; when it is full
    # the oldest waiting wave is dropped (its signals skipped with the reason), see README
    inbox_size: int = Field(default=3, ge=0)
    # websocket source: the token is read from this environment variable, never from a file
    token_env: str = "WAVE_TRADER_SIGNALS_TOKEN"
    max_frame_bytes: int = Field(default=1_048_576, ge=1024)
    open_timeout_s: float = Field(default=10.0, gt=0)
    ping_interval_s: float = Field(default=20.0, gt=0)  # a silent server is dropped after 2× this
    reconnect_min_s: float = Field(default=0.5, gt=0)
    reconnect_max_s: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _known_source(self) -> "SignalsCfg":
        if self.source.startswith(("ws://", "wss://")):
            if not urlsplit(self.source).hostname:
                raise ValueError(f"source {self.source!r} has no host")
        elif "://" in self.source and not self.source.startswith("file:"):
            raise ValueError("source must be demo, a file path (file:PATH) or a ws:// / wss:// URL")
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("reconnect_max_s must not be shorter than reconnect_min_s")
        return self


class LogCfg(_Section):
    level: str = "INFO"
    file: str | None = "var/log/wave-trader.log"
    status_interval_s: float = Field(default=10.0, ge=0)


class FaultCfg(_Section):
    kind: str
    op: str = "*"
    leg: str = "*"
    symbols: list[str] = []
    probability: float = Field(default=1.0, ge=0, le=1)
    times: int = Field(default=0, ge=0)
    latency_ms: int = Field(default=0, ge=0)


class FaultsCfg(_Section):
    seed: int = 7
    venue: list[FaultCfg] = []
    db: list[FaultCfg] = []
    actor: list[FaultCfg] = []


class ControlCfg(_Section):
    """The operator's control plane: a Unix socket for the console and one-shot commands, and
    an HTTP endpoint on the loopback interface for /healthz and Prometheus /metrics."""

    socket: str | None = None  # default: <run_dir>/control.sock
    max_frame_bytes: int = Field(default=65536, ge=1024, le=1 << 20)
    max_connections: int = Field(default=16, ge=1)
    request_timeout_s: float = Field(default=5.0, gt=0)  # bounds every actor ask a command makes
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=9464, ge=-1, le=65535)  # 0: any free port; -1: no HTTP endpoint

    @model_validator(mode="after")
    def _loopback_only(self) -> "ControlCfg":
        if self.metrics_host not in ("127.0.0.1", "::1", "localhost"):
            raise ValueError("control.metrics_host must be a loopback address (127.0.0.1, ::1, localhost)")
        return self


class HealthCfg(_Section):
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


class GuardianCfg(_Section):
    """The guardian: an independent watch over the venue's own view of our protection."""

    enabled: bool = True
    # One positions read and one open-orders read per round, issued together. On venues with
    # a request-weight budget the interval is stretched to keep within `max_budget_share`.
    interval_s: float = Field(default=2.0, gt=0)
    grace_s: float = Field(default=10.0, ge=0)  # naked longer than this: critical, emergency stop
    emergency_stop: bool = True  # false: report only, never place an order
    max_budget_share: float = Field(default=0.25, gt=0, le=1)


class RecoveryCfg(_Section):
    """What a start does with state left by a previous run (see service/recovery.py POLICY)."""

    unknown_venue_position: Literal["adopt", "close", "report"] = "adopt"
    reconcile_timeout_s: float = Field(default=60.0, gt=0)  # start-up waits this long at most
    progress_every_s: float = Field(default=1.0, gt=0)


class Config(_Section):
    exchange: ExchangeCfg = ExchangeCfg()
    paper: PaperCfg = PaperCfg()
    risk: RiskCfg = RiskCfg()
    protection: ProtectionCfg = ProtectionCfg()
    deadlines: DeadlinesCfg = DeadlinesCfg()
    supervisor: SupervisorCfg = SupervisorCfg()
    database: DatabaseCfg = DatabaseCfg()
    signals: SignalsCfg = SignalsCfg()
    log: LogCfg = LogCfg()
    faults: FaultsCfg = FaultsCfg()
    recovery: RecoveryCfg = RecoveryCfg()
    run_dir: str = "var"
    control: ControlCfg = ControlCfg()
    health: HealthCfg = HealthCfg()
    guardian: GuardianCfg = GuardianCfg()

    @model_validator(mode="after")
    def _venue_can_do_it(self) -> "Config":
        """Refuse combinations a venue cannot honour, at start, instead of mid-wave."""
        name = self.exchange.name
        if name == "bybit" and self.protection.trailing_mode == "native":
            raise ValueError("protection.trailing_mode: bybit has no native percent trailing stop "
                             "(ccxt would send a market close); use trailing_mode = \"emulated\"")
        if name == "binanceusdm" and self.exchange.sandbox:
            raise ValueError("exchange.sandbox: Binance USD-M has no testnet for signed calls; "
                             "use exchange.demo = true (demo trading)")
        if self.exchange.demo and self.exchange.sandbox:
            raise ValueError("exchange.demo and exchange.sandbox: choose one")
        return self


class ConfigError(ValueError):
    """A configuration problem, worded for the operator who has to fix it."""


def _parse_value(raw: str) -> Any:
    """`--set` values are TOML literals when they parse as one (1, 0.5, true, [..]), else text."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"config file {path} is not valid TOML: {e}") from None
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects section.key=value, got {item!r}")
        node = data
        *parents, leaf = key.strip().split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: {part} is not a section")
        node[leaf] = _parse_value(raw.strip())
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        lines = [f"  {'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors()]
        raise ConfigError("invalid configuration:\n" + "\n".join(lines)) from None
