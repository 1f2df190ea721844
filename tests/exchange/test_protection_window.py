"""The paper venue's record of each position's protection window (exchange/paper/window.py):
entry fill → first stop resting on its closing side, on the venue's clock."""
from __future__ import annotations

from exchange.paper.window import ProtectionWindow


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_position_protected_before_its_fill_has_a_window_of_zero():
    w = ProtectionWindow(Clock())
    w.opened("BTC", protected=True)
    assert w.gaps() == [0.0] and not w.naked("BTC")


def test_a_naked_position_counts_from_its_fill_to_its_first_stop():
    clock = Clock()
    w = ProtectionWindow(clock)
    w.opened("ETH", protected=False)
    assert w.naked("ETH")
    clock.now += 0.3
    assert len(w.gaps()) == 1 and abs(w.gaps()[0] - 0.3) < 1e-9, "still naked: counted until now"
    clock.now += 1.7
    w.ended("ETH")
    clock.now += 50  # after the stop rests, time no longer counts
    assert not w.naked("ETH")
    assert len(w.gaps()) == 1 and abs(w.gaps()[0] - 2.0) < 1e-9


def test_only_the_first_stop_ends_a_window_and_each_position_has_its_own():
    clock = Clock()
    w = ProtectionWindow(clock)
    w.opened("A", protected=False)
    w.opened("B", protected=True)
    clock.now += 1
    w.ended("A")
    clock.now += 1
    w.ended("A")  # a second stop (a replacement) opens nothing and ends nothing
    w.ended("B")
    assert sorted(w.gaps()) == [0.0, 1.0]
