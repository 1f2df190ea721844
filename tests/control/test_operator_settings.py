"""Operator settings that outlive a restart (control/settings.py): `set` is held to the
configuration's own limits, the latest stored value of each default wins on replay, a stored
value that no longer validates falls back to the configured default (and says so), and the
last pause state is remembered."""
from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from control.settings import InvalidSetting, SettingsStore, params_with, validate
from core.position_types import Params
from persistence.db import Database
from persistence.models import EventRow
from persistence.schema import upgrade

D = Decimal
DEFAULTS = Params(D("2.0"), D("1.0"), D("0.5"), notional=D("100"))


@pytest.fixture
def store(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'settings.db'}", call_timeout_s=5)
    upgrade(db.engine)
    yield SettingsStore(db.engine)
    db.dispose()


def test_set_is_held_to_the_configuration_limits():
    assert validate("callback", D("1.5"), DEFAULTS) == D("1.5")
    with pytest.raises(InvalidSetting, match="callback 25"):
        validate("callback", D("25"), DEFAULTS)  # Binance's callback range ends at 20 %
    with pytest.raises(InvalidSetting, match="stop-loss 0"):
        validate("stop-loss", D("0"), DEFAULTS)
    with pytest.raises(InvalidSetting, match="unknown parameter 'leverage'"):
        validate("leverage", D("5"), DEFAULTS)


def test_changes_apply_by_operator_name():
    p = params_with(DEFAULTS, {"stop-loss": D("3"), "activation": D("1.5"), "callback": D("0.7")})
    assert (p.stop_loss_pct, p.activation_pct, p.callback_pct, p.notional) == (D("3"), D("1.5"), D("0.7"), D("100"))


def test_nothing_stored_replays_to_nothing(store):
    assert store.replay() == ({}, None)


def test_the_latest_value_of_each_default_and_the_last_pause_win(store):
    store.record_defaults({"callback": D("0.8")}, "alice")
    store.record_paused(True, "alice")
    store.record_defaults({"callback": D("1.2"), "stop-loss": D("3")}, "bob")
    store.record_paused(False, "bob")
    assert store.replay() == ({"callback": D("1.2"), "stop-loss": D("3")}, False)
    assert not store.problems


def test_a_stored_value_that_no_longer_validates_falls_back_to_the_default_and_is_reported(store):
    store.record_defaults({"callback": D("0.8"), "stop-loss": D("3")}, "alice")
    with Session(store.engine) as s, s.begin():  # written by an older build with wider limits
        s.add(EventRow(ts=0.0, kind="settings_changed", data={"set": {"callback": "40", "bogus": "1"}}))
    changes, paused = store.replay()
    assert changes == {"stop-loss": D("3")}, "neither the bad value nor the older one: the configured default"
    assert paused is None
    assert len(store.problems) == 1 and "setting callback stored in event" in store.problems[0]


def test_who_changed_what_is_kept_in_the_event_log(store):
    store.record_defaults({"activation": D("1.5")}, "alice")
    with Session(store.engine) as s:
        (row,) = s.scalars(select(EventRow).where(EventRow.kind == "settings_changed")).all()
    assert row.data == {"set": {"activation": "1.5"}, "by": "alice"} and row.position_id is None
