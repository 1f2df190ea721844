"""The one owner of our client order id format: ``wt-<position>-<tag><epoch>-<seq>``.

The id is all a venue gives back about an order, so it carries what a restart needs to know
of it: the position it belongs to, its leg, and the epoch that placed it (a fenced, older run's
orders are told apart by it). The sequence number keeps every order of one position unique.
The tag is the leg's letter (`Leg`), or for the guardian's own orders a letter of its own so
that they never collide with an actor's and still read as this position's stop or close.
Venues allow ``[A-Za-z0-9_-]`` and at most 36 characters; position ids are short hex, so the
format fits, and neither part may contain the separator.

Anything not in this format is a foreign order (another client's, or a manual one): `parse`
answers None for it and every reader leaves it alone.
"""
from __future__ import annotations

from dataclasses import dataclass

from core.types import Leg

PREFIX = "wt"
_SEP = "-"
# The guardian's tags and the leg each reads as.
GUARDIAN_TAGS: dict[str, Leg] = {"g": Leg.STOP, "q": Leg.EXIT}
_GUARDIAN_TAG_OF = {leg: tag for tag, leg in GUARDIAN_TAGS.items()}


@dataclass(frozen=True, slots=True)
class ClientId:
    position_id: str
    leg: Leg
    epoch: int
    seq: int
    guardian: bool = False

    def __str__(self) -> str:
        tag = _GUARDIAN_TAG_OF[self.leg] if self.guardian else self.leg.value
        return f"{PREFIX}{_SEP}{self.position_id}{_SEP}{tag}{self.epoch}{_SEP}{self.seq}"


def order_cid(position_id: str, leg: Leg, epoch: int, seq: int) -> str:
    """Client id of a position actor's order."""
    return str(ClientId(position_id, leg, epoch, seq))


def guardian_cid(position_id: str, epoch: int, leg: Leg, n: int) -> str:
    """Client id of an order the guardian places for a position (emergency stop or close)."""
    return str(ClientId(position_id, leg, epoch, n, guardian=True))


def _number(text: str) -> int | None:
    """A decimal number as `str(int)` writes it: one spelling per value, so an id parses back
    to exactly the id it was formatted as."""
    canonical = text.isascii() and text.isdigit() and (text == "0" or not text.startswith("0"))
    return int(text) if canonical else None


def parse(cid: str) -> ClientId | None:
    """The parts of one of our client ids; None for a foreign one."""
    parts = cid.split(_SEP)
    if len(parts) != 4 or parts[0] != PREFIX or not parts[1] or not parts[2]:
        return None
    tag, epoch, seq = parts[2][0], _number(parts[2][1:]), _number(parts[3])
    guardian = tag in GUARDIAN_TAGS
    leg = GUARDIAN_TAGS[tag] if guardian else next((lg for lg in Leg if lg.value == tag), None)
    if leg is None or epoch is None or seq is None:
        return None
    return ClientId(parts[1], leg, epoch, seq, guardian)


def is_ours(cid: str) -> bool:
    return parse(cid) is not None


def position_id_of(cid: str) -> str | None:
    """The position a client order id belongs to, or None for foreign orders."""
    c = parse(cid)
    return c.position_id if c else None


def leg_of(cid: str) -> Leg | None:
    """The leg of one of our client ids; a guardian's emergency stop reads as a stop."""
    c = parse(cid)
    return c.leg if c else None


def epoch_of(cid: str) -> int | None:
    """The epoch (run of the position's actor) that placed the order."""
    c = parse(cid)
    return c.epoch if c else None


def is_guardian_cid(cid: str) -> bool:
    c = parse(cid)
    return c is not None and c.guardian


def _ours(cid: str) -> ClientId:
    c = parse(cid)
    if c is None:
        raise ValueError(f"not one of our client ids: {cid!r}")
    return c


def attached_cid(entry_cid: str) -> str:
    """The client id under which an entry's attached stop-loss is known: the entry's own id
    with the stop leg's letter, so it is unique, ours, and derivable after a restart."""
    c = _ours(entry_cid)
    return order_cid(c.position_id, Leg.STOP, c.epoch, c.seq)


def attached_entry_cid(cid: str) -> str | None:
    """The entry whose attached stop-loss is known to us as `cid`, if it can be one: one of our
    (non-guardian) stop ids. An ordinary stop never shares its sequence number with an entry,
    so the entry id derived from it is one that never existed."""
    c = parse(cid)
    if c is None or c.leg is not Leg.STOP or c.guardian:
        return None
    return order_cid(c.position_id, Leg.ENTRY, c.epoch, c.seq)


def reissued(cid: str, seq: int) -> str:
    """The same order's id under a new sequence number (a retry of an order known not placed)."""
    c = _ours(cid)
    return str(ClientId(c.position_id, c.leg, c.epoch, seq, c.guardian))
