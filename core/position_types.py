"""The vocabulary of the position state machine: state, events in, commands out.

Everything here is an immutable value so that the logic can be replayed and property-tested
without threads, and so that the actor shell can persist a state without copying it.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from decimal import Decimal
from enum import StrEnum
from typing import Any

# Re-exported for the modules that import them from here; the format's owner is core.client_ids.
from core.client_ids import GUARDIAN_TAGS as GUARDIAN_TAGS
from core.client_ids import attached_cid as attached_cid
from core.client_ids import guardian_cid as guardian_cid
from core.client_ids import is_guardian_cid as is_guardian_cid
from core.client_ids import leg_of as leg_of
from core.client_ids import order_cid as order_cid
from core.client_ids import position_id_of as position_id_of
from core.phases import Outcome as Outcome
from core.phases import Phase as Phase
from core.trailing import Trailing
from core.types import Leg as Leg
from core.types import Side


class TrailingMode(StrEnum):
    NATIVE = "native"  # the venue trails: a trailing-stop order rests beside the stop-loss
    EMULATED = "emulated"  # we trail: the stop-loss itself is moved up behind the price


class EntryMode(StrEnum):
    """How a position's first stop reaches the venue relative to its entry (core/entry_protocol.py)."""

    STOP_FIRST = "stop_first"
    ATTACHED = "attached"
    AFTER_FILL = "after_fill"


# How an emergency close is marked in its stored, logged and reported close reason.
EMERGENCY_PREFIX = "emergency: "


class FailureKind(StrEnum):
    REJECTED = "rejected"  # the venue refused it: do not retry
    UNKNOWN = "unknown"  # timeout / network error on a write: it may have been accepted


@dataclass(frozen=True, slots=True)
class Params:
    stop_loss_pct: Decimal
    activation_pct: Decimal
    callback_pct: Decimal
    trailing_mode: TrailingMode = TrailingMode.NATIVE
    notional: Decimal = Decimal(100)
    max_attempts: int = 3
    retry_backoff_s: float = 0.5
    replace_min_interval_s: float = 1.0
    leverage: Decimal | None = None  # the venue's leverage for our symbols; None: unleveraged
    maint_margin_pct: Decimal = Decimal(1)  # for the liquidation estimate an entry is checked against
    entry_mode: EntryMode = EntryMode.AFTER_FILL

    def __post_init__(self) -> None:
        # the configuration and the database give the modes as text
        object.__setattr__(self, "trailing_mode", TrailingMode(self.trailing_mode))
        object.__setattr__(self, "entry_mode", EntryMode(self.entry_mode))


@dataclass(frozen=True, slots=True)
class OrderIntent:
    cid: str
    leg: Leg
    side: str  # "buy" | "sell"
    qty: Decimal
    stop_price: Decimal | None = None
    activation: Decimal | None = None
    callback_pct: Decimal | None = None
    attempt: int = 1
    close_position: bool = False  # a stop that closes whatever the symbol holds on its side
    attached_stop: Decimal | None = None  # an entry's stop-loss, created by the venue at its fill
    # The market price this position knew when it sent the order (not sent to the venue): a
    # stop is judged against the price it was sent at, not one seen after its answer came.
    price: Decimal | None = None

    @property
    def reduce_only(self) -> bool:
        return self.leg is not Leg.ENTRY


@dataclass(frozen=True, slots=True)
class PositionState:
    id: str
    signal_id: str
    wave_id: str
    symbol: str
    side: Side
    params: Params
    phase: Phase = Phase.NEW
    epoch: int = 1
    seq: int = 0
    qty: Decimal | None = None
    entry_price: Decimal | None = None
    last_price: Decimal | None = None
    stop_price: Decimal | None = None
    stop_cid: str | None = None
    pending: OrderIntent | None = None  # the one order whose outcome we are waiting for
    trailing: Trailing | None = None
    trailing_cid: str | None = None
    close_reason: str | None = None
    # Closing (or closed) because protection failed, not by choice: the position ends
    # EMERGENCY_CLOSED unless it had reported itself protected. The close reason carries it as
    # its prefix, which is how a stored state gives it back.
    emergency: bool = False
    exit_price: Decimal | None = None
    reported: bool = False
    last_replace_at: float = 0.0
    # Close-position stops of ours that may rest at the venue: on a flat symbol one would close
    # a later or manual position, so the position is not final until each is known gone.
    close_stops: tuple[str, ...] = ()
    withdraw_failures: int = 0  # failed cancels in a row while withdrawing: drives the backoff
    withdraw_reason: str | None = None  # the FAILED report held back until the withdrawal ends
    settle_phase: "Phase | None" = None  # the final phase a withdrawal ends in (None: derived)
    ratchet_level: Decimal | None = None  # the fill level last tried, so a refusal is not re-sent

    def __post_init__(self) -> None:
        if not self.emergency and self.close_reason is not None and self.close_reason.startswith(EMERGENCY_PREFIX):
            object.__setattr__(self, "emergency", True)

    @property
    def protected(self) -> bool:
        return self.stop_cid is not None

    @property
    def protective_cids(self) -> tuple[str, ...]:
        return tuple(c for c in (self.stop_cid, self.trailing_cid) if c)

    def differs_materially(self, old: "PositionState") -> bool:
        """Whether a transition must be persisted. The last price and the best price seen move
        on every tick and come back from the market after a restart; writing them per tick
        would put a database commit on the hot path of every position."""
        if self is old:
            return False
        t = self.trailing
        if t is not None and old.trailing is not None and t.best != old.trailing.best:
            t = replace(t, best=old.trailing.best)
        return replace(self, last_price=old.last_price, trailing=t) != old

    def cid(self, leg: Leg) -> str:
        """Client order id: [A-Za-z0-9_-], at most 36 chars, unique per position/leg/epoch/seq."""
        return order_cid(self.id, leg, self.epoch, self.seq)


# ---- events (what happened) -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Begin:
    price: Decimal


@dataclass(frozen=True, slots=True)
class Placed:
    intent: OrderIntent
    avg_price: Decimal | None = None
    filled_qty: Decimal | None = None


@dataclass(frozen=True, slots=True)
class PlaceFailed:
    intent: OrderIntent
    kind: FailureKind
    reason: str


@dataclass(frozen=True, slots=True)
class LookedUp:
    """Result of looking an order of unknown outcome up by client id."""

    intent: OrderIntent
    found: bool
    avg_price: Decimal | None = None
    filled_qty: Decimal | None = None


@dataclass(frozen=True, slots=True)
class RetryDue:
    intent: OrderIntent


@dataclass(frozen=True, slots=True)
class Tick:
    price: Decimal
    now: float = 0.0


@dataclass(frozen=True, slots=True)
class Filled:
    """The venue filled one of our resting orders (a stop or the trailing stop triggered)."""

    cid: str
    price: Decimal


@dataclass(frozen=True, slots=True)
class CancelOutcome:
    """What became of a cancel we sent: `done` once the order is known not to rest any more."""

    cid: str
    done: bool
    reason: str = ""


@dataclass(frozen=True, slots=True)
class VenueTrail:
    """The venue's account of our resting native trailing stop, read just before it may be
    replaced (our ticks can miss a price the venue saw); None where the venue does not say."""

    armed: bool | None = None
    best: Decimal | None = None
    callback_pct: Decimal | None = None


@dataclass(frozen=True, slots=True)
class SetParams:
    activation_pct: Decimal | None = None
    callback_pct: Decimal | None = None
    stop_loss_pct: Decimal | None = None
    venue: VenueTrail | None = None  # filled in by the actor shell for a native trailing stop


@dataclass(frozen=True, slots=True)
class CloseRequested:
    reason: str


@dataclass(frozen=True, slots=True)
class Resting:
    """One of this position's orders resting at the venue."""

    cid: str
    leg: Leg
    stop_price: Decimal | None = None
    callback_pct: Decimal | None = None  # a trailing stop's, where the venue reports it


@dataclass(frozen=True, slots=True)
class Reconciled:
    """What the venue says after a restart: the position it holds and our resting orders."""

    venue_qty: Decimal
    venue_entry: Decimal | None
    resting: tuple[Resting, ...]
    price: Decimal
    entry_fill: Decimal | None = None  # resolved fill price of our entry intent, if it filled
    exit_fill: Decimal | None = None  # when the venue holds nothing: the fill that closed it
    exit_cid: str | None = None  # … and which of our orders that was


Event = (
    Begin | Placed | PlaceFailed | LookedUp | RetryDue | Tick | Filled | SetParams | CloseRequested
    | Reconciled | CancelOutcome
)


# ---- commands (what the shell must do) --------------------------------------------------


@dataclass(frozen=True, slots=True)
class Place:
    intent: OrderIntent


@dataclass(frozen=True, slots=True)
class Cancel:
    cid: str


@dataclass(frozen=True, slots=True)
class Lookup:
    intent: OrderIntent


@dataclass(frozen=True, slots=True)
class Reconcile:
    """Read the venue's position and our resting orders for the symbol (answered by Reconciled)."""


@dataclass(frozen=True, slots=True)
class RetryLater:
    intent: OrderIntent
    delay_s: float


@dataclass(frozen=True, slots=True)
class Report:
    outcome: Outcome
    reason: str


@dataclass(frozen=True, slots=True)
class Record:
    """An entry for the append-only event log."""

    kind: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ReadTrailing:
    """Read the resting native trailing stop at the venue and come back with SetParams(venue=…)."""


Command = Place | Cancel | Lookup | Reconcile | RetryLater | Report | Record | ReadTrailing
