"""The gateway interface every venue implements, and the errors that tell callers what to do.

Calls are synchronous and bounded by `timeout` seconds; they may be in flight from many
position threads at once, so an implementation must never serialize positions (one slow call
queueing every other position behind it is what left a whole wave unprotected). Errors are classified for the caller: retry, reconcile (unknown outcome), or stop.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Callable, Iterator, Protocol

# Defined in core (the database fences too); re-exported for imports from here.
from core.errors import Fenced, VenueError  # noqa: F401
from core.position_types import Leg
from core.types import MarketSpec


class Retryable(VenueError):
    """A read failed on the network or the venue was unavailable: safe to try again."""


class NotSent(Retryable):
    """The venue refused the request before acting on it (a signed request's timestamp outside
    its window: clock drift), or it never left the process: nothing happened, send it again."""


class UnknownOutcome(VenueError):
    """A write timed out or hit a network error: it may have been accepted. Look it up."""


class Acknowledged(UnknownOutcome):
    """The venue accepted the order (it answered with an id) but its fill could not be read
    back in time. It counts as placed: a lookup that misses is the venue being slow, not a no."""


class Rejected(VenueError):
    """The venue refused the request (invalid order, funds, reduce-only…): do not retry."""


class OrderNotFound(Rejected):
    """No order with that client id (open or closed) is known to the venue."""


_fence = threading.local()


@contextmanager
def fence_scope(check: Callable[[], None]) -> Iterator[None]:
    """Make `check` the calling thread's fence for the writes inside the block.

    The actor checks its epoch before a call, but a call can stall for longer than the
    actor's deadline; gateways therefore call `check_fence()` again at the last moment
    before a write leaves the process, so a replaced actor that wakes up is refused there.
    """
    _fence.check = check
    try:
        yield
    finally:
        _fence.check = None


def current_fence() -> Callable[[], None] | None:
    """The calling thread's fence, for gateways that send from another thread (an event loop)."""
    return getattr(_fence, "check", None)


def check_fence() -> None:
    """Raise Fenced if the calling thread's actor has been replaced (no-op outside a scope)."""
    check = current_fence()
    if check is not None:
        check()


@contextmanager
def fence_passed() -> Iterator[None]:
    """Within the block the calling thread's write counts as already sent: its fence was
    checked when it left, and an injected delay in transit must not check it again."""
    saved = current_fence()
    _fence.check = None
    try:
        yield
    finally:
        _fence.check = saved


@dataclass(frozen=True, slots=True)
class OrderRequest:
    cid: str
    symbol: str
    leg: Leg
    side: str  # "buy" | "sell"
    qty: Decimal
    stop_price: Decimal | None = None
    activation: Decimal | None = None
    callback_pct: Decimal | None = None
    # A stop that closes whatever the symbol holds on its side when it fires (no quantity is
    # sent): the only kind that may rest before its entry has filled.
    close_position: bool = False
    # An entry's stop-loss, riding on the entry: the venue creates it at the first fill, under
    # the client id `attached_cid(cid)`.
    attached_stop: Decimal | None = None

    @property
    def reduce_only(self) -> bool:
        return self.leg is not Leg.ENTRY


@dataclass(frozen=True, slots=True)
class OrderState:
    """What the venue says about one order."""

    cid: str
    symbol: str
    leg: Leg
    # "open" | "filled" | "cancelled" | "rejected" | "expired"; from a feed also "stuck" (a stop
    # triggered but not filled past its bound: not protecting) and "not_found" (a watched stop
    # the venue says it does not know): both mean "reconcile this position with the venue".
    status: str
    filled_qty: Decimal = Decimal(0)
    avg_price: Decimal | None = None
    stop_price: Decimal | None = None
    # What the guardian and the invariant checker need to judge protection from the venue's
    # own record; None where a venue does not say.
    side: str | None = None  # "buy" | "sell"
    qty: Decimal | None = None
    reduce_only: bool | None = None
    activation: Decimal | None = None  # a trailing stop's activation price
    callback_pct: Decimal | None = None
    activated: bool | None = None  # a trailing stop armed (it follows `best`)
    best: Decimal | None = None
    close_position: bool = False  # closes whatever the symbol holds on its side (no quantity)
    fee: Decimal | None = None  # commission charged on the fill, in the quote asset; None: unknown

    def trailing_trigger(self) -> Decimal | None:
        """Where an armed trailing stop fires now: best × (1 ∓ callback%); None unarmed."""
        if not self.activated or self.best is None or self.callback_pct is None:
            return None
        cb = self.callback_pct / 100
        return self.best * (1 - cb) if self.side == "sell" else self.best * (1 + cb)


@dataclass(frozen=True, slots=True)
class Balance:
    """The account's money as the venue reports it, in the settlement asset (USDT)."""

    asset: str
    wallet: Decimal  # deposits + realized P&L - fees
    unrealized: Decimal  # at the venue's mark prices
    equity: Decimal  # wallet + unrealized
    available: Decimal | None = None  # free for new margin, where the venue says


@dataclass(frozen=True, slots=True)
class VenuePosition:
    symbol: str
    qty: Decimal  # signed: > 0 long, < 0 short
    entry_price: Decimal | None


TickHandler = Callable[[str, Decimal], None]
OrderHandler = Callable[[OrderState], None]


class Gateway(Protocol):
    """What positions, the coordinator and recovery need from a venue."""

    name: str
    supports_native_trailing: bool
    # Entry protocols this gateway can carry (core/entry_protocol.py); absent: "after_fill" only.
    entry_modes: tuple[str, ...]

    def markets(self) -> dict[str, MarketSpec]: ...

    def price(self, symbol: str, timeout: float) -> Decimal: ...

    def place_order(self, req: OrderRequest, timeout: float) -> OrderState: ...

    def cancel_order(self, symbol: str, cid: str, timeout: float) -> OrderState: ...

    def fetch_order(self, symbol: str, cid: str, timeout: float) -> OrderState:
        """Look an order up by client id among open *and* closed orders; OrderNotFound if none."""

    def open_orders(self, symbol: str | None, timeout: float) -> list[OrderState]: ...

    def positions(self, timeout: float) -> list[VenuePosition]: ...

    def balance(self, timeout: float) -> Balance:
        """Wallet balance and equity of the futures account."""

    def subscribe(self, on_tick: TickHandler, on_order: OrderHandler) -> None:
        """Deliver prices and updates of our orders (fills, triggered stops) as they happen."""

    def close(self) -> None: ...
