"""The wave plan's rules as properties (hypothesis): whole waves are played through it the way
the coordinator uses it — launches that open, fail, or are refused because the symbol was
taken meanwhile, outcomes arriving in any order — and checked after every step."""
from __future__ import annotations

import random
from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from core.wave_plan import Room, plan

SYMBOLS = "ABCDEFGH"


@dataclass(frozen=True)
class Sig:
    id: str
    symbol: str
    rank: int


@st.composite
def waves(draw):
    symbols = draw(st.lists(st.sampled_from(SYMBOLS), max_size=14))
    signals = [Sig(f"s{i}", sym, i + 1) for i, sym in enumerate(symbols)]
    fates = {s.id: draw(st.sampled_from(["opened", "failed", "busy"])) for s in signals}
    return dict(signals=signals, fates=fates,
                held=frozenset(draw(st.sets(st.sampled_from(SYMBOLS), max_size=3))),
                target=draw(st.integers(0, 6)), max_open=draw(st.integers(1, 10)),
                max_concurrent=draw(st.integers(0, 4)), seed=draw(st.integers(0, 2**16)))


class Coordinator:
    """Plays one wave through `plan` as actors/coordinator_intake.py does, checking as it goes."""

    def __init__(self, w: dict) -> None:
        self.w = w
        self.reserves = list(w["signals"])
        self.held = set(w["held"])
        self.opening: dict[str, Sig] = {}
        self.opened = 0
        self.outcomes: dict[str, tuple[str, str]] = {}
        self.launched: list[Sig] = []

    def decide(self, s: Sig, outcome: str, reason: str) -> None:
        assert s.id not in self.outcomes, f"{s.id} got a second outcome"
        self.outcomes[s.id] = (outcome, reason)

    def fill(self) -> None:
        w = self.w
        while True:
            before = self.reserves
            p = plan(before, Room(w["target"], self.opened, len(self.opening), len(self.opening),
                                  frozenset(self.held), w["max_open"], w["max_concurrent"]))
            assert sorted(x.id for x in [*p.launch, *(s for s, _ in p.skip), *p.waiting]) == \
                sorted(x.id for x in before), "the plan neither loses nor invents a signal"
            assert list(p.waiting) == [s for s in before if s in p.waiting], "waiting keeps the ranking"
            for s in p.launch:
                assert all(s.rank < x.rank for x in p.waiting), "best-ranked first"
            self.reserves = list(p.waiting)
            for s, reason in p.skip:
                if reason.startswith("not opened: wave full"):
                    assert self.opened >= w["target"]
                elif reason.startswith("not opened: max_open_positions"):
                    assert not self.opening and not p.launch and len(self.held) >= w["max_open"]
                else:
                    assert reason == f"{s.symbol} already has an open position"
                    assert s.symbol in self.held or s.symbol in {x.symbol for x in p.launch if x.rank < s.rank}
                self.decide(s, "skipped", reason)
            refused = False
            for s in p.launch:
                self.launched.append(s)
                if w["fates"][s.id] == "busy":  # another wave or process took the symbol first
                    self.decide(s, "skipped", f"{s.symbol} already has an open position")
                    self.held.add(s.symbol)
                    refused = True
                    continue
                self.opening[s.id] = s
                self.held.add(s.symbol)
            assert self.opened + len(self.opening) <= w["target"], "more positions than the wave's slots"
            assert not w["max_concurrent"] or len(self.opening) <= w["max_concurrent"]
            assert len(self.held) <= max(w["max_open"], len(w["held"])) + sum(
                1 for s in self.launched if w["fates"][s.id] == "busy"), "more open than max_open"
            if not refused:
                return

    def report(self, rng: random.Random) -> None:
        s = self.opening.pop(rng.choice(sorted(self.opening)))
        if self.w["fates"][s.id] == "opened":
            self.opened += 1
            self.decide(s, "protected", "")
        else:
            self.held.discard(s.symbol)  # a failed entry frees its symbol and its slot
            self.decide(s, "failed", "")


@given(waves())
def test_every_signal_gets_exactly_one_outcome_and_no_wave_exceeds_its_slots(w):
    c = Coordinator(w)
    rng = random.Random(w["seed"])
    c.fill()
    while c.opening:
        c.report(rng)
        c.fill()
    assert not c.reserves, "a signal left waiting with nothing in flight"
    assert set(c.outcomes) == {s.id for s in w["signals"]}
    assert c.opened <= w["target"]
    ranks = [s.rank for s in c.launched]
    assert ranks == sorted(ranks), "launches go down the ranking: a replacement is the next-ranked"


@given(waves())
def test_a_failed_entry_is_replaced_by_the_next_ranked_free_signal(w):
    """With nothing else limiting, every slot a failure frees goes to the best waiting signal
    whose symbol is free: the wave ends with min(target, tradeable) opened."""
    w = dict(w, max_open=100, max_concurrent=0, held=frozenset())
    c = Coordinator(w)
    rng = random.Random(w["seed"])
    c.fill()
    while c.opening:
        c.report(rng)
        c.fill()
    assert c.opened <= w["target"]
    if c.opened < w["target"]:  # the wave did not fill: every signal was tried or its symbol held
        for s in w["signals"]:
            outcome, reason = c.outcomes[s.id]
            assert s in c.launched or reason == f"{s.symbol} already has an open position", (s, reason)


def test_a_worked_example_of_the_plan():
    """Worked example: 2 slots, one symbol held, the best signal's entry fails."""
    sigs = [Sig("a", "A", 1), Sig("b", "B", 2), Sig("c", "A", 3), Sig("d", "C", 4), Sig("e", "D", 5)]
    p = plan(sigs, Room(target=2, opened=0, opening=0, opening_total=0, held=frozenset({"B"}), max_open=10))
    assert [s.id for s in p.launch] == ["a", "d"]
    assert [(s.id, r) for s, r in p.skip] == [("b", "B already has an open position"),
                                              ("c", "A already has an open position")]
    assert [s.id for s in p.waiting] == ["e"]
    # 'a' failed: its slot goes to the next-ranked waiting signal
    p = plan(p.waiting, Room(target=2, opened=0, opening=1, opening_total=1, held=frozenset({"B", "C"}),
                             max_open=10))
    assert [s.id for s in p.launch] == ["e"] and not p.skip and not p.waiting
    # both opened: the wave is full, the rest is given up with the reason
    p = plan([Sig("f", "E", 6)], Room(target=2, opened=2, opening=0, opening_total=0, held=frozenset(),
                                      max_open=10))
    assert [(s.id, r) for s, r in p.skip] == [("f", "not opened: wave full (2 positions); rank 6")]
