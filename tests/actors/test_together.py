"""`actors.together`: a reconcile's independent reads go out at once, errors come back in order."""
from __future__ import annotations

import threading

import pytest

from actors.together import together


def test_reads_run_at_the_same_time_and_come_back_by_name():
    meet = threading.Barrier(3, timeout=10)  # broken, not passed, if the calls ran one by one

    def read(value):
        def call():
            meet.wait()
            return value
        return call

    assert together({"positions": read([]), "open orders": read(["o"]), "price": read(7)}) == {
        "positions": [], "open orders": ["o"], "price": 7}


def test_the_first_error_in_order_is_raised_after_every_call_finished():
    finished = []

    def fail(e):
        def call():
            finished.append(e)
            raise e
        return call

    first, second = LookupError("first"), ValueError("second")
    with pytest.raises(LookupError, match="first"):
        together({"a": fail(first), "b": lambda: finished.append("b"), "c": fail(second)})
    assert len(finished) == 3


def test_helper_threads_never_hold_the_process_at_exit():
    seen = []
    together({"here": lambda: None, "there": lambda: seen.append(threading.current_thread().daemon)})
    assert seen == [True]


def test_nothing_to_read_returns_nothing():
    assert together({}) == {}
