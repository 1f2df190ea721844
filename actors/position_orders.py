"""The venue side of a position's commands: place, cancel, look up, read the trailing stop.

Each call runs under the operation deadline its supervisor watches; every write is fenced
(the position's epoch must still be current, before the call and while it is on the wire),
and an order placed by an actor fenced meanwhile is taken back. The venue's answer becomes
the event the state machine steps on next, with the order's fate to record beside it.

Market orders (entry, exit) the venue acknowledged but does not show yet are looked up again
with backoff, the position the venue holds deciding whether they filled; `acked` counts
those lookups per client id.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Any, Callable

from loguru import logger

from actors.ports import PositionReports
from actors.position_context import PositionContext, check_fence
from core.position_types import (
    CancelOutcome, Event, FailureKind, Filled, Leg, LookedUp, OrderIntent, Placed, PlaceFailed, PositionState,
    TrailingMode, VenueTrail,
)
from exchange.gateway import (
    Acknowledged, Fenced, OrderNotFound, OrderRequest, OrderState, Rejected, Retryable, UnknownOutcome, fence_scope,
)
from persistence.positions import OrderFate

# An acknowledged market order the venue does not show yet is looked up this many times (with
# backoff, the position read alongside) before it is believed never to have happened.
ACK_LOOKUPS = 6
MARKET_LEGS = (Leg.ENTRY, Leg.EXIT)
FINAL_UNFILLED = ("cancelled", "expired", "rejected")


def nothing_filled(leg: Leg, o: OrderState) -> str | None:
    """Why a market order that ended with zero fill is a refusal, not a fill at the last price."""
    if leg in MARKET_LEGS and o.status in FINAL_UNFILLED and not o.filled_qty:
        return f"{'entry' if leg is Leg.ENTRY else 'exit'} {o.status} at the venue with nothing filled"
    return None


def log_leg(i: OrderIntent, fmt: str, *args: Any) -> None:
    """Trouble with a protective order (stop, trailing, exit) is the operator's business:
    WARNING; with an entry it only means a position did not open."""
    logger.log("INFO" if i.leg is Leg.ENTRY else "WARNING", fmt, *args)


class PositionOrders:
    """One position's venue calls. `state` reads the actor's current state; `look_again(intent,
    delay_s)` schedules another lookup of an order the venue could not answer for yet."""

    def __init__(self, ctx: PositionContext, handle: PositionReports, state: Callable[[], PositionState],
                 look_again: Callable[[OrderIntent, float], None]) -> None:
        self.ctx, self.handle = ctx, handle
        self._state, self._look_again = state, look_again
        self.acked: dict[str, int] = {}  # acknowledged market orders not read back: lookups so far

    @property
    def state(self) -> PositionState:
        return self._state()

    def call(self, what: str, fn: Callable[..., Any], *args: Any, write: bool, entry: bool = False) -> Any:
        """`fn(*args)` under the venue-call timeout and an operation deadline; a write is fenced."""
        t = self.ctx.deadlines.venue_call_s
        if not write:
            with self.handle.op(what, self.ctx.deadlines.operation_s):
                return fn(*args, timeout=t)
        check_fence(self.ctx, self.state, entry)
        with self.handle.op(what, self.ctx.deadlines.operation_s), \
                fence_scope(lambda: check_fence(self.ctx, self.state, entry)):
            return fn(*args, timeout=t)

    def place(self, i: OrderIntent) -> tuple[Event, OrderFate]:
        s = self.state
        req = OrderRequest(i.cid, s.symbol, i.leg, i.side, i.qty, i.stop_price, i.activation, i.callback_pct,
                           close_position=i.close_position, attached_stop=i.attached_stop)
        try:
            o = self.call(f"place {i.leg.name.lower()}", self.ctx.gateway.place_order, req, write=True,
                          entry=i.leg is Leg.ENTRY)
            self._fence_after(req, o)
        except (UnknownOutcome, Retryable) as e:
            if isinstance(e, Acknowledged):
                self.acked[i.cid] = 0
            log_leg(i, "{}: {} order {} (attempt {}) has no answer ({}); looking it up by client id",
                    s.symbol, i.leg.name.lower(), i.cid, i.attempt, e)
            return PlaceFailed(i, FailureKind.UNKNOWN, str(e)), OrderFate(i.cid, "unknown", reason=str(e))
        except Rejected as e:
            log_leg(i, "{}: {} order {} (attempt {}) refused by the venue: {}",
                    s.symbol, i.leg.name.lower(), i.cid, i.attempt, e)
            return PlaceFailed(i, FailureKind.REJECTED, str(e)), OrderFate(i.cid, "rejected", reason=str(e))
        if (why := nothing_filled(i.leg, o)) is not None:
            return PlaceFailed(i, FailureKind.REJECTED, why), OrderFate(i.cid, o.status, reason=why)
        status = "filled" if o.status == "filled" or o.filled_qty else "open"
        return Placed(i, o.avg_price, o.filled_qty or None), OrderFate(i.cid, status, o.avg_price, o.filled_qty, fee=o.fee)

    def _fence_after(self, req: OrderRequest, o: OrderState) -> None:
        """The epoch moved while our order was on the wire: take back what we just placed,
        since the replacement owns the position now, then stand down."""
        if self.ctx.epochs.get(self.state.id) == self.state.epoch:
            return
        if o.status == "open":
            try:
                self.ctx.gateway.cancel_order(req.symbol, req.cid, timeout=self.ctx.deadlines.venue_call_s)
            except Exception as e:
                logger.warning("{}: fenced actor could not withdraw {}: {}", req.symbol, req.cid, e)
        raise Fenced(f"epoch {self.state.epoch} of {self.state.id} was replaced during {req.cid}")

    def cancel(self, cid: str) -> tuple[Event, OrderFate]:
        """Cancel, and believe the venue's answer: an order found filled is a fill to act on;
        otherwise the state machine learns whether the order is gone (CancelOutcome)."""
        try:
            o = self.call("cancel", self.ctx.gateway.cancel_order, self.state.symbol, cid, write=True)
        except OrderNotFound as e:
            return CancelOutcome(cid, True), OrderFate(cid, "not_found", reason=str(e))
        except (Rejected, UnknownOutcome, Retryable) as e:
            logger.warning("{}: cancel {} failed ({}); reconciliation will retry", self.state.symbol, cid, e)
            return CancelOutcome(cid, False, str(e)), OrderFate(cid, "open", reason=f"cancel failed: {e}")
        if o.status == "filled" and o.avg_price is not None:
            return Filled(cid, o.avg_price), OrderFate(cid, "filled", o.avg_price, o.filled_qty, fee=o.fee)
        return CancelOutcome(cid, True), OrderFate(cid, o.status if o.status != "open" else "cancelled")

    def read_trailing(self) -> VenueTrail | None:
        """The venue's state of our native trailing stop (armed? best?), which a replacement
        must not fall behind; None when there is none or the venue could not answer."""
        s = self.state
        if s.trailing_cid is None or s.params.trailing_mode is not TrailingMode.NATIVE:
            return None
        try:
            o = self.call("read trailing", self.ctx.gateway.fetch_order, s.symbol, s.trailing_cid, write=False)
        except (Retryable, UnknownOutcome, Rejected) as e:
            logger.warning("{}: could not read trailing stop {} ({}); it is kept as it is", s.symbol,
                           s.trailing_cid, e)
            return None
        return VenueTrail(o.activated, o.best, o.callback_pct) if o.status == "open" else None

    def lookup(self, i: OrderIntent) -> tuple[Event, OrderFate] | None:
        """Resolve an unknown outcome by client id; None when the venue could not answer yet."""
        try:
            o = self.call("lookup", self.ctx.gateway.fetch_order, self.state.symbol, i.cid, write=False)
        except OrderNotFound:
            if i.cid in self.acked:
                return self._acked_miss(i)
            log_leg(i, "{}: lookup of {} order {}: not at the venue, never placed", self.state.symbol,
                    i.leg.name.lower(), i.cid)
            return LookedUp(i, False), OrderFate(i.cid, "not_found")
        except (Retryable, UnknownOutcome) as e:
            delay = min(self.state.params.retry_backoff_s * 2, 5.0)
            logger.warning("{}: lookup of {} failed ({}); again in {:.1f}s", self.state.symbol, i.cid, e, delay)
            self._look_again(i, delay)
            return None
        if (why := nothing_filled(i.leg, o)) is not None:
            self.acked.pop(i.cid, None)
            return PlaceFailed(i, FailureKind.REJECTED, why), OrderFate(i.cid, o.status, reason=why)
        if o.status == "open" and i.leg in MARKET_LEGS:
            # Still working at the venue (acknowledged or not): its fill is not known yet, and
            # neither the intended size nor the last price may be booked for it.
            self.acked.setdefault(i.cid, 0)
            return self._acked_miss(i, still_open=True)
        self.acked.pop(i.cid, None)
        found = o.status in ("open", "filled") or o.filled_qty > 0
        log_leg(i, "{}: lookup of {} order {}: {}", self.state.symbol, i.leg.name.lower(), i.cid,
                o.status if found else f"{o.status}, not placed")
        return (LookedUp(i, found, o.avg_price, o.filled_qty or None),
                OrderFate(i.cid, o.status if found else "not_found", o.avg_price, o.filled_qty, fee=o.fee))

    def _acked_miss(self, i: OrderIntent, still_open: bool = False) -> tuple[Event, OrderFate] | None:
        """A market order the venue acknowledged or shows still working, but not as done
        (creation and history can lag): what the venue holds decides. A held position means the
        entry filled (an emptied one, that the exit did); otherwise look again with backoff, and
        only after ACK_LOOKUPS misses with nothing held is it believed never to have happened.
        An entry still working when we book or give it up is cancelled first, so nothing fills
        behind our back; what the cancel says did fill is the position's size."""
        s = self.state
        try:
            held = [p for p in self.call("positions", self.ctx.gateway.positions, write=False)
                    if p.symbol == s.symbol and (p.qty > 0) == (s.side.sign > 0)]
        except (Retryable, UnknownOutcome) as e:
            logger.warning("{}: positions not read while resolving {} ({})", s.symbol, i.cid, e)
            held = None
        if held is not None:
            qty = sum((abs(p.qty) for p in held), Decimal(0))
            if i.leg is Leg.ENTRY and qty > 0:
                self.acked.pop(i.cid, None)
                if still_open and (left := self._withdraw_entry(i)) is not None and left.filled_qty > 0:
                    return self._entry_found(i, left)
                entry = held[0].entry_price
                return LookedUp(i, True, entry, qty), OrderFate(i.cid, "filled", entry, qty)
            if i.leg is Leg.EXIT and qty == 0:
                self.acked.pop(i.cid, None)
                return LookedUp(i, True), OrderFate(i.cid, "filled")
        n = self.acked[i.cid] = self.acked.get(i.cid, 0) + 1
        if n < ACK_LOOKUPS:
            delay = min(s.params.retry_backoff_s * 2 ** n, 5.0)
            logger.warning("{}: acknowledged {} not visible at the venue yet (lookup {}); again in {:.1f}s",
                           s.symbol, i.cid, n, delay)
            self._look_again(i, delay)
            return None
        self.acked.pop(i.cid, None)
        if i.leg is Leg.ENTRY and still_open and (left := self._withdraw_entry(i)) is not None \
                and left.filled_qty > 0:
            return self._entry_found(i, left)
        why = (f"still working at the venue after {n} lookups with no position held; cancelled" if still_open
               else f"acknowledged, yet after {n} lookups neither the order nor a position shows at the venue")
        return PlaceFailed(i, FailureKind.REJECTED, why), OrderFate(i.cid, "not_found", reason=why)

    def _withdraw_entry(self, i: OrderIntent) -> OrderState | None:
        """Cancel what is left of an entry still working; the venue's answer (None: gone, or
        unknown) says how much of it filled."""
        s = self.state
        try:
            return self.call("cancel entry", self.ctx.gateway.cancel_order, s.symbol, i.cid, write=True)
        except OrderNotFound:
            return None
        except (Rejected, UnknownOutcome, Retryable) as e:
            logger.warning("{}: entry {} still working; its cancel failed ({})", s.symbol, i.cid, e)
            return None

    @staticmethod
    def _entry_found(i: OrderIntent, o: OrderState) -> tuple[Event, OrderFate]:
        return (LookedUp(i, True, o.avg_price, o.filled_qty),
                OrderFate(i.cid, "filled", o.avg_price, o.filled_qty, fee=o.fee))
