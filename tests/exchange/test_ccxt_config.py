"""Venue configuration: refusals at start, and keys only from the environment."""
from __future__ import annotations

import pytest

from core.config import ConfigError, load_config
from exchange.ccxt.build import credentials


def test_native_trailing_on_bybit_is_refused_at_start():
    with pytest.raises(ConfigError, match="trailing_mode"):
        load_config(None, ["exchange.name=bybit", "protection.trailing_mode='native'"])
    assert load_config(None, ["exchange.name=bybit", "protection.trailing_mode='emulated'"]).exchange.name == "bybit"
    # left unset, the trailing mode follows the venue: Bybit has only the emulated kind
    assert load_config(None, ["exchange.name=bybit"]).protection.trailing_mode == "emulated"
    assert load_config(None, []).protection.trailing_mode == "native"


def test_account_set_up_keys_are_bounded():
    x = load_config(None, []).exchange
    assert (x.leverage, x.margin_mode, x.maintenance_margin_pct) == (5, "isolated", 1)
    for bad in ("exchange.leverage=0", "exchange.leverage=126", "exchange.margin_mode='portfolio'",
                "exchange.maintenance_margin_pct=-1"):
        with pytest.raises(ConfigError, match=bad.split("=")[0].split(".")[1]):
            load_config(None, [bad])


def test_binance_has_no_sandbox_any_more():
    with pytest.raises(ConfigError, match="demo"):
        load_config(None, ["exchange.name=binanceusdm", "exchange.sandbox=true"])


def test_keys_come_from_the_environment_only(monkeypatch):
    monkeypatch.delenv("BINANCE_API_KEY", raising=False)
    monkeypatch.delenv("BINANCE_API_SECRET", raising=False)
    with pytest.raises(ConfigError, match="BINANCE_API_KEY and BINANCE_API_SECRET"):
        credentials(("BINANCE_API_KEY", "BINANCE_API_SECRET"), None)
    with pytest.raises(ConfigError):  # a remote api_url is a real venue: keys required
        credentials(("BINANCE_API_KEY", "BINANCE_API_SECRET"), "https://demo-fapi.binance.com")
    assert credentials(("BINANCE_API_KEY", "BINANCE_API_SECRET"), "http://127.0.0.1:9") == ("local-key", "local-secret")
    monkeypatch.setenv("BINANCE_API_KEY", "k1")
    monkeypatch.setenv("BINANCE_API_SECRET", "s1")
    assert credentials(("BINANCE_API_KEY", "BINANCE_API_SECRET"), None) == ("k1", "s1")


def test_there_is_no_config_key_for_secrets():
    with pytest.raises(ConfigError, match="api_key"):
        load_config(None, ["exchange.api_key='abc'"])
