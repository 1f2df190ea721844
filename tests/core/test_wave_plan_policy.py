"""The coordinator's ranking and slot policy, one plan at a time (core/wave_plan.py), for any
room: entries of other waves in flight, slots already taken, symbols already held. The whole
waves played in tests/core/test_wave_plan_properties.py keep `opening_total` equal to the wave's own
`opening`; here it ranges freely, and each rule is checked on its own."""
from __future__ import annotations

from dataclasses import dataclass, replace

from hypothesis import given
from hypothesis import strategies as st

from actors.coordinator import skip_kind
from core.wave_plan import Plan, Room, plan

SYMBOLS = "ABCDEFGH"
HELD_REASON = "{} already has an open position"


@dataclass(frozen=True)
class Sig:
    id: str
    symbol: str
    rank: int


@st.composite
def cases(draw) -> tuple[list[Sig], Room]:
    symbols = draw(st.lists(st.sampled_from(SYMBOLS), max_size=12))
    reserves = [Sig(f"s{i}", sym, i + 1) for i, sym in enumerate(symbols)]
    target = draw(st.integers(0, 6))
    opened = draw(st.integers(0, target + 1))
    opening = draw(st.integers(0, 3))
    room = Room(target=target, opened=opened, opening=opening,
                opening_total=opening + draw(st.integers(0, 4)),  # plus other waves' entries
                held=frozenset(draw(st.sets(st.sampled_from(SYMBOLS), max_size=4))),
                max_open=draw(st.integers(1, 10)), max_concurrent=draw(st.integers(0, 6)))
    return reserves, room


def _held_skips(p: Plan[Sig]) -> list[Sig]:
    return [s for s, r in p.skip if r == HELD_REASON.format(s.symbol)]


@given(cases())
def test_the_plan_takes_signals_in_ranking_order(case):
    """Launched and held-skipped signals are a prefix of the ranking, in its order; what waits
    is the rest, in order: nothing ranked lower is taken before something ranked higher."""
    reserves, room = case
    p = plan(reserves, room)
    given_up = [s for s, r in p.skip if r.startswith("not opened:")]
    taken = sorted([*p.launch, *_held_skips(p)], key=lambda s: s.rank)
    assert taken == reserves[:len(taken)]
    assert list(p.launch) == [s for s in reserves if s in p.launch], "launches keep the ranking"
    assert list(p.waiting) + given_up == reserves[len(taken):]
    assert not (p.waiting and given_up), "a plan either keeps the rest waiting or gives it up"


@given(cases())
def test_never_more_than_the_room_allows(case):
    reserves, room = case
    p = plan(reserves, room)
    n = len(p.launch)
    assert n <= max(0, room.target - room.opened - room.opening), "more than the wave's slots"
    assert n <= max(0, room.max_open - len(room.held)), "more symbols held than max_open"
    if room.max_concurrent:
        assert n <= max(0, room.max_concurrent - room.opening_total), "more entries in flight than allowed"


@given(cases())
def test_a_held_symbol_is_skipped_never_launched_nor_queued_ahead(case):
    """A signal whose symbol is held (or launched just before it) is skipped with the reason
    when its turn comes; it never waits for the symbol to be free."""
    reserves, room = case
    p = plan(reserves, room)
    symbols = [s.symbol for s in p.launch]
    assert len(set(symbols)) == len(symbols), "one position per symbol"
    assert not set(symbols) & room.held, "a held symbol launched again"
    seen = set(room.held)
    for s in sorted([*p.launch, *_held_skips(p)], key=lambda s: s.rank):
        assert (s in p.launch) == (s.symbol not in seen), s
        seen.add(s.symbol)


@given(cases())
def test_no_slot_is_left_idle_while_a_signal_waits(case):
    """A signal still waits only because a limit binds; an outcome (opened, failed) will free
    it, so the wave is planned again then."""
    reserves, room = case
    p = plan(reserves, room)
    if p.waiting:
        n = len(p.launch)
        assert (room.opened + room.opening + n >= room.target
                or len(room.held) + n >= room.max_open
                or (room.max_concurrent and room.opening_total + n >= room.max_concurrent))
        assert room.opened < room.target, "a full wave gives the rest up"
        assert room.opening + n > 0 or len(room.held) + n < room.max_open, \
            "waiting with nothing in flight: no outcome would ever free it"


@given(cases())
def test_the_rest_is_given_up_only_when_no_outcome_can_free_a_slot(case):
    reserves, room = case
    p = plan(reserves, room)
    for s, reason in p.skip:
        if reason.startswith("not opened: wave full"):
            assert room.opened >= room.target
            assert reason == f"not opened: wave full ({room.target} positions); rank {s.rank}"
        elif reason.startswith("not opened: max_open_positions"):
            assert room.opening == 0 and not p.launch and len(room.held) >= room.max_open
        else:
            assert reason == HELD_REASON.format(s.symbol)


@given(cases(), st.data())
def test_a_failed_entry_frees_its_slot_for_the_next_ranked_free_signal(case, data):
    """One of this wave's entries fails: its symbol and slot are free again, and the next plan
    launches the best waiting signal whose symbol is free, if no other limit binds."""
    reserves, room = case
    room = replace(room, max_open=100)  # only the wave's slots and the concurrency limit bind
    first = plan(reserves, room)
    in_flight = list(first.launch)
    if not in_flight or not first.waiting:
        return
    failed = data.draw(st.sampled_from(in_flight))
    held = (room.held | {s.symbol for s in in_flight}) - {failed.symbol}
    opening, total = room.opening + len(in_flight) - 1, room.opening_total + len(in_flight) - 1
    after = plan(list(first.waiting), replace(room, opening=opening, opening_total=total, held=frozenset(held)))
    if room.max_concurrent and total >= room.max_concurrent:
        assert not after.launch, "another wave's entries still fill the concurrency limit"
        return
    free = [s for s in first.waiting if s.symbol not in held]
    if free:
        assert after.launch[:1] == (free[0],), "the freed slot goes to the next-ranked free signal"
        assert all(s.symbol in held for s in first.waiting[:first.waiting.index(free[0])]), \
            "the ones ranked above it are skipped, their symbols held"


def test_other_waves_in_flight_hold_back_this_one_until_an_outcome():
    sigs = [Sig("a", "A", 1), Sig("b", "B", 2)]
    busy = Room(target=2, opened=0, opening=0, opening_total=3, held=frozenset("XYZ"), max_open=10,
                max_concurrent=3)
    p = plan(sigs, busy)
    assert not p.launch and not p.skip and p.waiting == tuple(sigs)
    p = plan(sigs, Room(2, 0, 0, 2, frozenset("XY"), 10, max_concurrent=3))  # one of theirs came back
    assert p.launch == (sigs[0],) and p.waiting == (sigs[1],)


def test_a_full_account_with_nothing_opening_gives_the_wave_up():
    sigs = [Sig("a", "A", 1), Sig("b", "B", 2)]
    p = plan(sigs, Room(target=2, opened=0, opening=0, opening_total=0, held=frozenset("XY"), max_open=2))
    assert not p.launch and not p.waiting
    assert [r for _s, r in p.skip] == ["not opened: max_open_positions=2 reached; rank 1",
                                       "not opened: max_open_positions=2 reached; rank 2"]
    # the same account with one of this wave's entries in flight: its outcome may free a symbol
    p = plan(sigs, Room(target=2, opened=0, opening=1, opening_total=1, held=frozenset("XY"), max_open=2))
    assert not p.launch and not p.skip and p.waiting == tuple(sigs)


def test_skips_are_counted_by_kind_without_symbol_or_rank():
    assert skip_kind("BTC/USDT:USDT already has an open position") == "already has an open position"
    assert skip_kind("not opened: wave full (3 positions); rank 7") == "not opened: wave full (3 positions)"
    assert skip_kind("not opened: max_open_positions=5 reached; rank 12") == \
        "not opened: max_open_positions=5 reached"
    assert skip_kind("ETH/USDT:USDT cooling down after a stop-out (42s left of risk.cooldown_after_stop_s)") == \
        "cooling down after a stop-out (risk.cooldown_after_stop_s)"
    assert skip_kind("BTC/USDT:USDT already has an open position") == \
        skip_kind("SOL/USDC:USDC already has an open position"), "one kind, whatever the symbol"
