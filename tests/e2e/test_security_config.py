"""Hostile configuration: files that are not small UTF-8 TOML, a token variable that holds a
venue secret, and credentials that would travel without TLS."""
from __future__ import annotations

import os

import pytest

from core.config import ConfigError, load_config
from exchange.ccxt.build import credentials
from exchange.ccxt.venues import VENUES
from control.commands import masked_db_url as masked_url
from tests.support.trader_process import said, trader


@pytest.mark.parametrize("content, words", [
    (b"[a]\nx = " + b"[" * 5000 + b"]" * 5000 + b"\n", "nested"),
    (b"a = " + b"{b = " * 40 + b"1" + b"}" * 40 + b"\n", "nested more than 8 levels"),
    (b"[exchange]\nname = \"paper\xff\xfe\"\n", "not UTF-8"),
    (b"# " + b"x" * ((1 << 20) + 10) + b"\n", "larger than"),
])
def test_hostile_config_files_are_clear_errors(tmp_path, content, words):
    path = tmp_path / "c.toml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=words):
        load_config(path)


def test_a_directory_a_device_or_a_fifo_as_config_is_refused_by_a_real_process(tmp_path):
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)  # nobody ever writes: an open that waits for a writer would hang the start
    for path in (str(tmp_path), "/dev/zero", str(fifo)):
        res = trader("run", "--config", path, timeout=60)
        assert res.returncode == 2 and "not a regular file" in res.stderr, said(res)
        assert "Traceback" not in res.stderr


@pytest.mark.parametrize("name", sorted({n for v in VENUES.values() for n in v.key_env}
                                        | {"MY_EXCHANGE_SECRET", "okx_api_key"}))
def test_token_env_may_not_name_a_venue_credential(name):
    with pytest.raises(ConfigError, match="venue credentials"):
        load_config(None, [f"signals.token_env='{name}'"])


def test_a_bearer_token_never_travels_without_tls():
    env = {"WAVE_TRADER_SIGNALS_TOKEN": "tok"}
    with pytest.raises(ConfigError, match="use wss://"):
        load_config(None, ["signals.source='ws://signals.example:8765/v1'"], env=env)
    load_config(None, ["signals.source='ws://127.0.0.1:8765/v1'"], env=env)  # loopback: fine
    load_config(None, ["signals.source='wss://signals.example/v1'"], env=env)
    load_config(None, ["signals.source='ws://signals.example:8765/v1'"], env={})  # no token: nothing to leak


def test_venue_keys_go_to_a_remote_host_only_over_tls(monkeypatch):
    monkeypatch.setenv("BINANCE_API_KEY", "k")
    monkeypatch.setenv("BINANCE_API_SECRET", "s")
    names = VENUES["binanceusdm"].key_env
    with pytest.raises(ConfigError, match="clear text"):
        credentials(names, "http://10.1.2.3:8080")
    with pytest.raises(ConfigError, match="clear text"):
        credentials(names, "https://fapi.example", "ws://10.1.2.3/ws")
    assert credentials(names, "http://127.0.0.1:8080") == ("k", "s")
    assert credentials(names, "https://fapi.example", "wss://fstream.example") == ("k", "s")
    with pytest.raises(ConfigError, match="exchange.api_url must be"):
        load_config(None, ["exchange.api_url='file:///etc/passwd'"])
    with pytest.raises(ConfigError, match="must not carry credentials"):
        load_config(None, ["exchange.api_url='https://user:pw@fapi.example'"])
    assert os.environ["BINANCE_API_KEY"] == "k"


def test_a_password_in_the_database_url_is_masked_in_status_json(control_service, tmp_path):
    from tests.support.control_support import FAST
    from tests.support.helpers import make_config

    url = f"sqlite:///file:{tmp_path}/pw.db?uri=true&password=hunter2"
    svc, plane, client = control_service(cfg=make_config(tmp_path, *FAST, db_url=url))
    shown = client.call("status").model_dump_json()
    assert "hunter2" not in shown and "password=***" in shown
    assert "hunter2" not in masked_url("postgresql+psycopg://u:hunter2@db/w?sslpassword=hunter2&host=/s")
