"""Messages between actors. Plain frozen values: nothing mutable crosses a mailbox."""
from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass
from decimal import Decimal

from core.position_types import Event, OrderIntent, Outcome, Params
from exchange.gateway import OrderState, VenuePosition
from signals.wave import Wave


class _TickReady:
    """The coalesced tick: the price itself waits in the actor's TickSlot."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "TICK"


TICK = _TickReady()


@dataclass(frozen=True, slots=True)
class OpenPosition:
    """First message of a new position: size it at the current price and enter."""


@dataclass(frozen=True, slots=True)
class RecoverPosition:
    """First message of a restored or restarted position: reconcile before acting."""


@dataclass(frozen=True, slots=True)
class VenueView:
    """What a cold-start recovery read once for every position, handed to each restored
    position instead of its own reads (a real venue rate-limits a thousand separate ones)."""

    positions: tuple[VenuePosition, ...]  # the venue's positions on this symbol
    orders: tuple[OrderState, ...]  # open orders on this symbol
    unresolved: tuple[tuple[str, str], ...]  # (cid, leg) of this position's intents of unknown fate
    price: Decimal | None = None  # the latest streamed price, if the feed already had one


@dataclass(frozen=True, slots=True)
class OrderUpdate:
    order: OrderState


@dataclass(frozen=True, slots=True)
class Control:
    """An operator's request (SetParams or CloseRequested), delivered to the owning actor."""

    event: Event


@dataclass(frozen=True, slots=True)
class Retry:
    intent: OrderIntent


@dataclass(frozen=True, slots=True)
class LookupAgain:
    intent: OrderIntent


@dataclass(frozen=True, slots=True)
class GetState:
    """Ask for a snapshot of the position's state."""


# ---- to the coordinator ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SubmitWave:
    wave: Wave
    # the one mutable thing sent: how the submitting thread learns the wave is persisted
    reply: Future | None = None
    resent: bool = False  # sent again because the coordinator it first went to was replaced


@dataclass(frozen=True, slots=True)
class Claim:
    """A coordinator's first message: raise the coordinator epoch, fencing every predecessor."""


@dataclass(frozen=True, slots=True)
class Resume:
    """Finish what a predecessor left: every wave without an outcome per signal, every
    position row without an actor. The ids of the waves it finishes are set on `reply`."""

    reply: Future | None = None


@dataclass(frozen=True, slots=True)
class PositionOutcome:
    position_id: str
    signal_id: str
    wave_id: str
    symbol: str
    outcome: Outcome
    reason: str


@dataclass(frozen=True, slots=True)
class PositionClosed:
    position_id: str
    symbol: str
    exit_price: Decimal | None
    reason: str | None = None
    net_pnl: Decimal | None = None


@dataclass(frozen=True, slots=True)
class WaveDeadline:
    wave_id: str


@dataclass(frozen=True, slots=True)
class SetPaused:
    paused: bool
    why: str = "operator"  # "shutdown": the normal end of a run, not worth a warning


@dataclass(frozen=True, slots=True)
class SetDefaults:
    """The operator changed the default Params: positions launched from now on start with them."""
    params: Params


@dataclass(frozen=True, slots=True)
class CoordinatorStatus:
    """Ask for the coordinator's view: paused, open symbols, waves in progress."""
