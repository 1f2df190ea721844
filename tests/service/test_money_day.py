"""The reporting day (service/money.py `day_start`): today's midnight in the configured
timezone, which the daily loss limit and the money figures for today count from."""
from __future__ import annotations

import time
from datetime import datetime
from zoneinfo import ZoneInfo

from service.money import day_start


def _ts(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0,
        tz: str = "UTC") -> float:
    return datetime(year, month, day, hour, minute, second, tzinfo=ZoneInfo(tz)).timestamp()


def test_midnight_utc():
    assert day_start("UTC", _ts(2026, 3, 14, 15, 9, 26)) == _ts(2026, 3, 14)
    assert day_start("UTC", _ts(2026, 3, 14)) == _ts(2026, 3, 14), "midnight itself starts the day"


def test_the_day_follows_the_configured_timezone():
    now = _ts(2026, 3, 14, 2, 0)  # 02:00 UTC is still the 13th in New York
    assert day_start("America/New_York", now) == _ts(2026, 3, 13, tz="America/New_York")
    assert day_start("Asia/Tokyo", now) == _ts(2026, 3, 14, tz="Asia/Tokyo")


def test_a_day_with_a_clock_change_starts_at_its_own_midnight():
    after_the_change = _ts(2026, 3, 8, 12, 0, tz="America/New_York")  # DST began at 02:00 that day
    start = day_start("America/New_York", after_the_change)
    assert datetime.fromtimestamp(start, ZoneInfo("America/New_York")).hour == 0
    assert after_the_change - start == 11 * 3600, "23-hour day: noon is 11 h after midnight"


def test_now_by_default():
    start = day_start("UTC")
    now = time.time()
    assert 0 <= now - start < 86400
