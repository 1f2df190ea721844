"""The service's one timer thread (actors/scheduler.py): callbacks run in due order, not in the
order they were asked for, a failing callback does not stop the others, and close ends it."""
from __future__ import annotations

import threading
import time

from actors.scheduler import Scheduler
from tests.support.helpers import wait_for


def test_callbacks_run_in_due_order():
    s = Scheduler()
    ran: list[str] = []
    try:
        s.call_later(0.15, lambda: ran.append("late"))
        s.call_later(0.05, lambda: ran.append("early"))
        s.call_later(-1, lambda: ran.append("now"))  # a negative delay is due at once
        wait_for(lambda: len(ran) == 3, timeout=5, what="three callbacks")
        assert ran == ["now", "early", "late"]
    finally:
        s.close()


def test_a_callback_is_not_run_before_it_is_due():
    s = Scheduler()
    done = threading.Event()
    at: list[float] = []
    t0 = time.monotonic()
    try:
        s.call_later(0.2, lambda: (at.append(time.monotonic() - t0), done.set()))
        assert done.wait(5)
        assert at[0] >= 0.2
    finally:
        s.close()


def test_a_failing_callback_does_not_stop_the_timer():
    s = Scheduler()
    ran = threading.Event()
    try:
        s.call_later(0, lambda: 1 / 0)
        s.call_later(0.01, ran.set)
        assert ran.wait(5), "the callback after a failing one never ran"
    finally:
        s.close()


def test_close_ends_the_thread_and_drops_what_was_pending():
    s = Scheduler()
    ran = threading.Event()
    s.call_later(0.3, ran.set)
    s.close()
    s._thread.join(timeout=5)
    assert not s._thread.is_alive()
    assert not ran.wait(0.5)
