"""Position phases, the groups every reader asks about, and what outcome a phase stands for.

One copy of each, so that the actors, the supervisor, health, the invariant checker, the
stores and the control replies cannot disagree about, say, whether a closing position
without a resting stop is exposed (it is: the venue still holds it).
"""
from __future__ import annotations

from enum import StrEnum


class Phase(StrEnum):
    NEW = "new"
    ENTERING = "entering"
    OPEN = "open"
    PROTECTED = "protected"
    TRAILING = "trailing"
    CLOSING = "closing"
    CLOSED = "closed"
    FAILED = "failed"
    # Never opened, but a stop placed ahead of its entry may still rest on the flat symbol:
    # the position keeps its symbol until that stop is known cancelled, so nothing else can
    # open there and meet it.
    WITHDRAWING = "withdrawing"
    EMERGENCY_CLOSED = "emergency_closed"

    @property
    def final(self) -> bool:
        return self in FINAL

    @property
    def in_flight(self) -> bool:
        """Phases a shutdown waits out: orders of ours may be on their way or resting unconfirmed."""
        return self in IN_FLIGHT

    @property
    def holds_position(self) -> bool:
        """Phases in which the venue may hold a position for us."""
        return self in HOLDS_POSITION


class Outcome(StrEnum):
    """The one final outcome each signal gets."""

    PROTECTED = "protected"  # opened, stop-loss resting and trailing stop established
    FAILED = "failed"  # never opened (entry refused, size too small, …)
    EMERGENCY_CLOSED = "emergency_closed"  # opened, could not be protected, closed at market
    UNPROTECTED = "unprotected"  # opened, neither protected nor closed: flagged for the operator
    SKIPPED = "skipped"  # valid but not traded (symbol open, wave full, limits, paused)
    REJECTED = "rejected"  # invalid signal

    @property
    def opened(self) -> bool:
        """The signal took a position (and a slot of its wave), whatever became of it."""
        return self in (Outcome.PROTECTED, Outcome.EMERGENCY_CLOSED, Outcome.UNPROTECTED)


# The position is over: nothing of it rests or will be sent again.
FINAL: frozenset[Phase] = frozenset({Phase.CLOSED, Phase.FAILED, Phase.EMERGENCY_CLOSED})
# Not final: the position still owns its symbol.
LIVE: frozenset[Phase] = frozenset(Phase) - FINAL
# Opened and closed again: a trade with an entry and an exit.
CLOSED_TRADE: frozenset[Phase] = frozenset({Phase.CLOSED, Phase.EMERGENCY_CLOSED})
# Orders of ours may be on their way or resting unconfirmed: a shutdown waits these out.
IN_FLIGHT: frozenset[Phase] = frozenset({Phase.NEW, Phase.ENTERING, Phase.OPEN, Phase.PROTECTED,
                                         Phase.CLOSING, Phase.WITHDRAWING})
# Nothing in flight: the position waits for the market (trailing) or is over.
AT_REST: frozenset[Phase] = frozenset(Phase) - IN_FLIGHT
# The venue may hold a position for us.
HOLDS_POSITION: frozenset[Phase] = frozenset({Phase.OPEN, Phase.PROTECTED, Phase.TRAILING, Phase.CLOSING})
# Our stop-loss rests, by the position's own account: the venue must show it.
STOP_RESTING: frozenset[Phase] = frozenset({Phase.PROTECTED, Phase.TRAILING})
# Holds a position and no close is under way: the venue's view must match the actor's (a
# closing position may be flat at the venue a moment before its actor hears the fill).
HELD_OPEN: frozenset[Phase] = HOLDS_POSITION - {Phase.CLOSING}
# Without a resting stop the position is exposed to the market: every phase that may hold one,
# closing included (a close can be refused, and the position is held until it fills).
EXPOSED_WITHOUT_STOP: frozenset[Phase] = HOLDS_POSITION


def values(group: frozenset[Phase]) -> tuple[str, ...]:
    """A group as the strings stored in the database, in a stable order (for SQL `IN`)."""
    return tuple(sorted(p.value for p in group))


def exposed(phase: Phase | str, stop_cid: str | None) -> bool:
    """The venue may hold the position and no stop of ours is known to rest for it."""
    return stop_cid is None and phase in EXPOSED_WITHOUT_STOP


def closed_phase(emergency: bool, reported: bool) -> Phase:
    """The final phase of a position that was open and is closed: an emergency close is marked
    as such unless the position had already reported itself protected."""
    return Phase.EMERGENCY_CLOSED if emergency and not reported else Phase.CLOSED


def outcome_of(phase: Phase, reported: bool) -> Outcome:
    """The outcome a position's stored phase stands for, where the report itself was lost: an
    actor in a final phase never reports again. A position that reported had reached the
    trailing stop (PROTECTED); one still open that never did is settled as closed in an
    emergency, which is what becomes of it."""
    if phase is Phase.FAILED:
        return Outcome.FAILED
    if phase is Phase.EMERGENCY_CLOSED:
        return Outcome.EMERGENCY_CLOSED
    return Outcome.PROTECTED if reported else Outcome.EMERGENCY_CLOSED
