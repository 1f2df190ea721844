"""The wave plan: which of a wave's waiting signals to open now, which to give up, and why.

Pure: the coordinator asks it whenever something changed (a wave arrived, an outcome came
back, a launch was refused) and carries out the answer. The rules:

- best-ranked first: waiting signals are taken in the order given (ranked, best first);
- a signal whose symbol is held (open or opening, by any wave) is skipped, never queued;
- a wave opens at most `target` positions: launches stop while opened + opening fill it, and
  a failed entry frees its slot for the next-ranked signal still waiting;
- never more than `max_open` symbols held, never more than `max_concurrent` entries in flight
  (0 = unlimited): at either limit the rest waits for an outcome;
- the rest is given up (skipped, with the reason) only once no outcome can free a slot: the
  wave is full of opened positions, or the account is full with nothing of it still opening.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Generic, Protocol, Sequence, TypeVar


class Candidate(Protocol):
    @property
    def symbol(self) -> str: ...

    @property
    def rank(self) -> int: ...


T = TypeVar("T", bound=Candidate)


@dataclass(frozen=True, slots=True)
class Room:
    """What the coordinator knows when it plans one wave."""

    target: int  # positions this wave may open
    opened: int  # of those, opened already (an outcome said so)
    opening: int  # launched for this wave, no outcome yet
    opening_total: int  # launched for any wave, no outcome yet
    held: frozenset[str]  # symbols with a position open or opening
    max_open: int
    max_concurrent: int = 0  # 0 = unlimited


@dataclass(frozen=True, slots=True)
class Plan(Generic[T]):
    launch: tuple[T, ...]  # open these now, in this order
    skip: tuple[tuple[T, str], ...]  # give these up, with the reason
    waiting: tuple[T, ...]  # still waiting for a slot, best first


def plan(reserves: Sequence[T], room: Room) -> Plan[T]:
    launch: list[T] = []
    skip: list[tuple[T, str]] = []
    held = set(room.held)
    opening, total = room.opening, room.opening_total
    queue = deque(reserves)
    while queue and room.opened + opening < room.target and len(held) < room.max_open:
        if room.max_concurrent and total >= room.max_concurrent:
            return Plan(tuple(launch), tuple(skip), tuple(queue))  # an outcome makes room
        sig = queue.popleft()
        if sig.symbol in held:
            skip.append((sig, f"{sig.symbol} already has an open position"))
            continue
        launch.append(sig)
        held.add(sig.symbol)
        opening += 1
        total += 1
    if room.opened >= room.target:
        reason = f"wave full ({room.target} positions)"
    elif opening == 0 and len(held) >= room.max_open:
        reason = f"max_open_positions={room.max_open} reached"
    else:
        return Plan(tuple(launch), tuple(skip), tuple(queue))
    skip.extend((s, f"not opened: {reason}; rank {s.rank}") for s in queue)
    return Plan(tuple(launch), tuple(skip), ())
