"""Property tests of the client id format: what is formatted parses back to its parts, every
id that parses formats back to itself, and foreign ids are never read as ours."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from core import client_ids as ci
from core.types import Leg

position_ids = st.text("0123456789abcdef", min_size=1, max_size=12)
numbers = st.integers(0, 10**6)
legs = st.sampled_from(list(Leg))


@given(position_ids, legs, numbers, numbers)
def test_an_order_id_parses_back_to_its_parts(pid, leg, epoch, seq):
    cid = ci.order_cid(pid, leg, epoch, seq)
    assert ci.parse(cid) == ci.ClientId(pid, leg, epoch, seq, guardian=False)
    assert (ci.position_id_of(cid), ci.leg_of(cid), ci.epoch_of(cid)) == (pid, leg, epoch)
    assert ci.is_ours(cid) and not ci.is_guardian_cid(cid)
    assert len(cid) <= 36


@given(position_ids, st.sampled_from([Leg.STOP, Leg.EXIT]), numbers, numbers)
def test_a_guardian_id_reads_as_its_positions_leg_and_never_as_an_actors(pid, leg, epoch, n):
    cid = ci.guardian_cid(pid, epoch, leg, n)
    assert ci.parse(cid) == ci.ClientId(pid, leg, epoch, n, guardian=True)
    assert ci.is_guardian_cid(cid) and ci.leg_of(cid) is leg
    assert all(cid != ci.order_cid(pid, lg, epoch, n) for lg in Leg)


@given(position_ids, numbers, numbers)
def test_an_attached_stop_is_derived_from_its_entry_and_back(pid, epoch, seq):
    entry = ci.order_cid(pid, Leg.ENTRY, epoch, seq)
    stop = ci.attached_cid(entry)
    assert ci.parse(stop) == ci.ClientId(pid, Leg.STOP, epoch, seq)
    assert ci.attached_entry_cid(stop) == entry
    assert ci.attached_entry_cid(ci.guardian_cid(pid, epoch, Leg.STOP, seq)) is None
    assert ci.reissued(entry, seq + 1) == ci.order_cid(pid, Leg.ENTRY, epoch, seq + 1)


@given(st.text(max_size=40))
def test_every_id_that_parses_formats_back_to_itself(text):
    parsed = ci.parse(text)
    assert parsed is None or str(parsed) == text


@given(st.text(max_size=40).filter(lambda t: not t.startswith("wt-")), position_ids,
       st.characters().filter(lambda c: c not in "estxgq"), numbers, st.text(max_size=8))
def test_foreign_ids_parse_to_none(text, pid, tag, n, tail):
    foreign = [text, f"wt-{pid}-{tag}{n}-{n}", f"wt-{pid}-e{n}-{n}-{tail}", f"wt-{pid}-e{n}{tail}x-1",
               f"wt--e{n}-{n}", f"wt-{pid}-e0{n}-{n}", f"wt-{pid}-e{n}-"]
    for cid in foreign:
        assert ci.parse(cid) is None and ci.position_id_of(cid) is None and not ci.is_ours(cid), cid


def test_foreign_examples():
    for cid in ["", "wt", "wt-p1", "wt-p1-e1", "abc-p1-e1-1", "wt-p1-z1-1", "wt-p1-e1-x", "wt-p1-ex-1",
                "wt--e1-1", "wt-p1--1", "wt-p1-e01-1", "wt-p1-e1-01", "wt-p1-e1-1-1", "web_order_42"]:
        assert ci.parse(cid) is None, cid
    assert ci.leg_of("wt-abc123-s2-3") is Leg.STOP and ci.epoch_of("wt-abc123-g7-3") == 7
