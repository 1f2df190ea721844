"""Configuration: embedded defaults, an optional TOML file, then `--set section.key=value`.

Validated by pydantic so that a typo or an out-of-range value stops the service at start
with a message naming the key, instead of surfacing at 3 a.m. in the middle of a wave.
"""
from __future__ import annotations

import os
import stat
import tomllib
from pathlib import Path
from typing import Any, Mapping

from pydantic import ValidationError, model_validator

# The sections live in `config_sections`; importers keep taking them from here.
from core.config_sections import (AlertsCfg, BacktestCfg, BoundedDecimal, ControlCfg, DatabaseCfg, DeadlinesCfg,
                                  ExchangeCfg, FaultCfg, FaultsCfg, GuardianCfg, HealthCfg, LogCfg, PaperCfg,
                                  ProtectionCfg, RecoveryCfg, ReportCfg, RiskCfg, Section, SignalsCfg,
                                  SupervisorCfg, holds_secret, is_loopback)

__all__ = ["Config", "ConfigError", "MAX_CONFIG_BYTES", "MAX_CONFIG_DEPTH", "check_transport", "load_config",
           "read_config_file",
           "AlertsCfg", "BacktestCfg", "BoundedDecimal", "ControlCfg", "DatabaseCfg", "DeadlinesCfg", "ExchangeCfg",
           "FaultCfg", "FaultsCfg", "GuardianCfg", "HealthCfg", "LogCfg", "PaperCfg", "ProtectionCfg", "RecoveryCfg",
           "ReportCfg", "RiskCfg", "SignalsCfg", "SupervisorCfg", "holds_secret", "is_loopback"]

MAX_CONFIG_BYTES = 1 << 20  # a configuration file is a few kilobytes; this is plenty
MAX_CONFIG_DEPTH = 8  # sections nest two or three deep


class Config(Section):
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
    report: ReportCfg = ReportCfg()
    alerts: AlertsCfg = AlertsCfg()
    backtest: BacktestCfg = BacktestCfg()
    guardian: GuardianCfg = GuardianCfg()

    @model_validator(mode="after")
    def _under_run_dir(self) -> "Config":
        """Whatever a run writes lives under `run_dir` unless configured elsewhere, so two runs
        with two run_dirs never share a database or a log by accident."""
        if self.database.url is None:
            self.database.url = f"sqlite:///{Path(self.run_dir) / 'wave-trader.db'}"
        if self.log.file is None:
            self.log.file = str(Path(self.run_dir) / "log" / "wave-trader.log")
        return self

    @model_validator(mode="after")
    def _venue_can_do_it(self) -> "Config":
        """Refuse combinations a venue cannot honour, at start, instead of mid-wave."""
        name = self.exchange.name
        if name == "bybit" and "trailing_mode" not in self.protection.model_fields_set:
            # The default follows the venue: Bybit has only the emulated kind.
            object.__setattr__(self, "protection", self.protection.model_copy(update={"trailing_mode": "emulated"}))
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
    except (tomllib.TOMLDecodeError, RecursionError, ValueError):  # ValueError: an int past str()'s digit limit
        return raw


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A TOML file, bounded: a regular file of at most MAX_CONFIG_BYTES, UTF-8, nested at most
    MAX_CONFIG_DEPTH deep (a directory, /dev/zero or a FIFO is refused before it is read)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # a FIFO must not block the open
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise ConfigError(f"config file {path} is not a regular file")
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is not a regular file") from None
    except OSError as e:
        raise ConfigError(f"config file {path} cannot be read: {e.strerror or e}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"config file {path} is larger than {MAX_CONFIG_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"config file {path} is not UTF-8 text (byte {e.start})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path} is not valid TOML: {e}") from None
    except RecursionError:
        raise ConfigError(f"config file {path} is nested too deeply") from None
    if _depth(data) > MAX_CONFIG_DEPTH:
        raise ConfigError(f"config file {path} is nested more than {MAX_CONFIG_DEPTH} levels deep")
    return data


def _depth(value: Any, level: int = 0) -> int:
    if level > MAX_CONFIG_DEPTH:
        return level
    children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    return max((_depth(c, level + 1) for c in children), default=level)


def check_transport(cfg: Config, env: Mapping[str, str]) -> None:
    """A bearer token for the signal server only ever travels over TLS to a remote host."""
    s = cfg.signals
    if (s.source.startswith("ws://") and not is_loopback(s.source)
            and s.token_env and env.get(s.token_env, "").strip()):
        raise ConfigError(f"signals.source {s.source.split('?')[0][:80]!r} is plain ws:// to a remote host while "
                          f"{s.token_env} is set: the token would travel in clear text; use wss://")


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                env: Mapping[str, str] | None = None) -> Config:
    data: dict[str, Any] = {}
    if path is not None:
        data = read_config_file(path)
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
        cfg = Config.model_validate(data)
    except ValidationError as e:
        lines = [f"  {'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors()]
        raise ConfigError("invalid configuration:\n" + "\n".join(lines)) from None
    check_transport(cfg, os.environ if env is None else env)
    return cfg
