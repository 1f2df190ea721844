"""Numbers from outside are finite and bounded wherever they enter: the control socket, the
configuration, signals and settings stored by an earlier run."""
from __future__ import annotations

import json
import time
from decimal import Decimal

import pytest
from hypothesis import given, strategies as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from control.client import ControlClient
from core.config import ConfigError, load_config
from core.numbers import MAX_ADJUSTED_EXPONENT, MAX_DIGITS, NumberRefused, parse_decimal
from persistence.models import EventRow
from persistence.schema import migration_engine, upgrade
from tests.support.trader_process import Trader, said


def _seed_settings(db_path, *values: dict) -> None:
    """A database as an earlier run left it, with `set` rows stored before values were bounded."""
    engine = migration_engine(f"sqlite:///{db_path}", 5.0)
    upgrade(engine)
    with Session(engine) as s, s.begin():
        for v in values:
            s.add(EventRow(ts=time.time(), kind="settings_changed", data={"set": v, "by": "operator"}))
    engine.dispose()


def _settings_rows(db_path) -> int:
    engine = migration_engine(f"sqlite:///{db_path}", 5.0)
    with Session(engine) as s:
        n = s.scalar(select(func.count()).select_from(EventRow).where(EventRow.kind == "settings_changed"))
    engine.dispose()
    return n


def test_a_live_trader_refuses_unbounded_numbers_and_starts_despite_a_bad_stored_one(tmp_path):
    _seed_settings(tmp_path / "t.db", {"stop-loss": "1E-999999999"}, {"callback": "0.8"})
    with Trader(tmp_path) as t:
        t.wait_ready()
        status = json.loads(t.ctl("status", "--json").stdout)
        assert status["defaults"]["stop-loss"] == "2.0"  # the configured default, not the stored value
        assert status["defaults"]["callback"] == "0.8"  # the good stored value still applies
        health = t.ctl("health", "--json")
        assert health.returncode == 1, said(health)  # degraded, with the reason
        assert any("stop-loss" in r and "ignored" in r for r in json.loads(health.stdout)["reasons"])

        res = t.ctl("set", "stop-loss", "1e-999999999")
        assert res.returncode == 1 and "out of range" in res.stderr, said(res)
        res = t.ctl("set", "activation", "1" + "0" * 60_000)
        assert res.returncode == 1 and "at most 40 characters" in res.stderr, said(res)
        res = t.ctl("set", "callback", "0.5000000000000000000001")
        assert res.returncode == 1 and "more than 12 decimal places" in res.stderr, said(res)

        client = ControlClient(t.sock, timeout_s=20)
        for frame in ({"cmd": "events", "args": {"after_id": 1e30}},
                      {"cmd": "events", "args": {"after_id": 10 ** 30}},
                      {"cmd": "close-all", "args": {"confirm": "yes"}},
                      {"cmd": "close-all", "args": {"confirm": 1}}):
            reply = json.loads(client.raw((json.dumps({"v": 1, **frame}) + "\n").encode()))
            assert reply["ok"] is False and reply["error"]["code"] == "bad_arguments", reply
        assert t.ctl("health").returncode == 1  # still up, still answering
        assert t.stop() == 130
    log = t.output()
    assert "ERROR" in log and "setting stop-loss stored in event 1 ignored" in log
    assert "Traceback" not in log
    assert _settings_rows(tmp_path / "t.db") == 2  # nothing refused was stored


@pytest.mark.parametrize("override, words", [
    ("protection.stop_loss_pct='1e-999999999'", "out of range"),
    ("protection.stop_loss_pct=" + "9" * 60_000, "at most 40 characters"),
    ("protection.stop_loss_pct=" + "9" * 30, "out of range"),  # a TOML int beyond 64 bits
    ("risk.position_notional_usdt='" + "1" * 60 + "'", "at most 40 characters"),
    ("deadlines.wave_s=inf", "finite number"),
    ("paper.latency_ms=nan", "finite number"),
    ("deadlines.shutdown_s=1e300", "at most 1e\\+12"),
    ("paper.extra_symbols=1000000000", "less than or equal to 100000"),
])
def test_config_numbers_are_bounded(override, words):
    with pytest.raises(ConfigError, match=words):
        load_config(None, [override])


@given(st.one_of(st.decimals(allow_nan=True, allow_infinity=True), st.text(max_size=60),
                 st.integers(), st.floats()))
def test_whatever_parse_decimal_accepts_is_small(raw):
    try:
        d = parse_decimal(raw, "x")
    except NumberRefused as e:
        assert str(e).startswith("x ")
        return
    assert d.is_finite() and len(d.as_tuple().digits) <= MAX_DIGITS
    assert d == 0 or abs(d.adjusted()) <= MAX_ADJUSTED_EXPONENT
    assert len(str(d)) < 64 and Decimal(str(d)) == d
