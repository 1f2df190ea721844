"""PositionActor: the thin shell around the pure state machine of one position.

It owns its position for the position's whole life. Each message becomes an event; the
transition is persisted (one fenced transaction, write-ahead of any order it asks for) and
then its commands are executed, their results fed back as events. Every venue and database
call runs under an operation deadline that the supervisor watches.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from decimal import Decimal
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import pykka
from loguru import logger

from actors.market_data import MarketData, TickSlot
from actors.messages import (
    TICK, Control, GetState, LookupAgain, OpenPosition, OrderUpdate, PositionClosed,
    PositionOutcome, RecoverPosition, Retry, VenueView,
)
from actors.scheduler import Scheduler
from actors.together import together
from core.config import DeadlinesCfg
from core.faults import FaultPlan, InjectedCrash
from core.pnl import Realized
from core.position_logic import step
from core.position_types import (
    Begin, Cancel, CancelOutcome, Event, FailureKind, Filled, Leg, LookedUp, Lookup, OrderIntent, Outcome, Phase, Place,
    Placed, PlaceFailed, PositionState, ReadTrailing, Reconcile, Record, Reconciled, Report, Resting, RetryDue,
    RetryLater, SetParams, Tick, TrailingMode, VenueTrail, leg_of, position_id_of,
)
from core.types import MarketSpec
from exchange.gateway import (
    Acknowledged, Fenced, Gateway, OrderNotFound, OrderRequest, OrderState, Rejected, Retryable, UnknownOutcome,
    fence_scope,
)
from persistence.positions import OrderFate, PositionStore


PRICE_FRESH_S = 2.0  # a feed price this recent sizes an entry without a venue round trip
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


@dataclass(frozen=True)
class PositionContext:
    """Everything a position needs from the service, shared read-only by all positions."""

    gateway: Gateway
    store: PositionStore
    markets: dict[str, MarketSpec]
    scheduler: Scheduler
    market_data: MarketData
    deadlines: DeadlinesCfg
    coordinator: Callable[[], Any]  # the current coordinator ref (it may be replaced)
    epochs: dict[str, int]  # the supervisor's current epoch per position: the venue fence
    faults: FaultPlan
    on_final: Callable[[str, int], None]  # supervisor: this child is done
    on_decision: Callable[[float], None] = lambda _s: None  # tick-to-decision latency sink
    on_recovered: Callable[[PositionState], None] = lambda _s: None  # reconciled after a restart
    recovery_view: Callable[[PositionState], VenueView | None] = lambda _s: None  # cold start
    # a position that traded has closed: P&L known (None if it could not be computed); must
    # not block (the service queues alerts and logs on its own threads)
    on_closed: Callable[[PositionState, Realized | None], None] = lambda _s, _p: None
    # set once the database lease is lost: protect-only, no entry leaves the process any more,
    # while stops, trailing stops and closes of positions already held still do
    halted: threading.Event = field(default_factory=threading.Event)


class PositionActor(pykka.ThreadingActor):
    # A stuck actor is abandoned, not joined: its thread must never keep the process alive.
    use_daemon_thread = True

    def __init__(self, state: PositionState, ctx: PositionContext, handle) -> None:
        super().__init__()
        self.state = state
        self.ctx = ctx
        self.handle = handle
        self.spec = ctx.markets[state.symbol]
        self.slot: TickSlot | None = None
        self.fenced = False
        # Nothing acts before the first OpenPosition/RecoverPosition: a restored position must
        # be reconciled with the venue before a tick or an order update can move it.
        self.ready = False
        self.early: list[Any] = []
        self.acked: dict[str, int] = {}  # acknowledged market orders not read back: lookups so far
        self.realized: Realized | None = None
        self.finished = False  # messages queued behind the final step must not finish it again

    # ---- mailbox ----------------------------------------------------------------------

    def on_start(self) -> None:
        self.slot = self.ctx.market_data.subscribe(self.state.symbol, self.actor_ref)

    def on_stop(self) -> None:
        if self.slot is not None:
            self.ctx.market_data.unsubscribe(self.slot)

    def on_failure(self, exc_type, exc, tb) -> None:
        self.on_stop()
        self.handle.crashed(exc)

    def on_receive(self, msg: Any) -> Any:
        if self.fenced:
            return None
        if not self.ready and not isinstance(msg, (OpenPosition, RecoverPosition, GetState)):
            if msg is TICK:
                self.slot.take()  # reconciliation reads a fresh price itself
            else:
                self.early.append(msg)  # order updates, controls: handled once reconciled
            return None
        try:
            self._dispatch(msg)
            if isinstance(msg, (OpenPosition, RecoverPosition)):
                self.ready = True
                if isinstance(msg, RecoverPosition):
                    self.ctx.on_recovered(self.state)
                early, self.early = self.early, []
                for m in early:
                    self._dispatch(m)
        except Fenced as e:
            logger.warning("{}: fenced ({}); this actor stops, its replacement owns the position",
                           self.state.symbol, e)
            self.handle.fenced()
            self.fenced = True
            self.stop()
            return None
        if isinstance(msg, GetState):
            return self.state
        if self.state.phase.final:
            self._finish()
        return None

    def _dispatch(self, msg: Any) -> None:
        match msg:
            case _ if msg is TICK:
                price, ts = self.slot.take()
                if price is not None:
                    self._inject("tick")
                    self._drive(Tick(price, time.monotonic()))
                    self.ctx.on_decision(time.perf_counter() - ts)
            case OrderUpdate(order=o):
                if o.status == "filled" and o.avg_price is not None:
                    self._drive(Filled(o.cid, o.avg_price), OrderFate(o.cid, "filled", o.avg_price, o.filled_qty, fee=o.fee))
                elif (o.status in ("expired", "cancelled", "rejected", "stuck", "not_found")
                      and o.cid in self.state.protective_cids):
                    logger.warning("{}: {} is {} at the venue, not by us; reconciling",
                                   self.state.symbol, o.cid, o.status)
                    self._drive(self._reconcile())
            case Control(event=ev):
                if isinstance(ev, SetParams) and ev.venue is None:
                    ev = replace(ev, venue=self._read_trailing())
                self._drive(ev)
            case OpenPosition():
                self._inject("open")
                price = self.ctx.market_data.fresh_price(self.state.symbol, PRICE_FRESH_S) or self._venue(
                    "price", self.ctx.gateway.price, self.state.symbol, write=False)
                self._drive(Begin(price))
            case RecoverPosition():
                self._inject("recover")
                self._drive(self._reconcile())
            case Retry(intent=i):
                self._drive(RetryDue(i))
            case LookupAgain(intent=i):
                if (res := self._run_lookup(i)) is not None:
                    self._drive(*res)
            case GetState():
                pass

    def _finish(self) -> None:
        if self.finished:
            return
        self.finished = True
        s = self.state
        if s.entry_price is not None and s.exit_price is not None:
            self._log_exit(s)
            self.ctx.on_closed(s, self.realized)
        self.ctx.coordinator().tell(PositionClosed(s.id, s.symbol, s.exit_price, s.close_reason,
                                                   self.realized.net if self.realized else None))
        self.ctx.on_final(s.id, s.epoch)
        self.stop()

    def _log_exit(self, s: PositionState) -> None:
        """One line per exit, with its reason and money: the story an operator reads."""
        p = self.realized
        fees = f"{p.fees:.4f}" if p and p.fees_known else "unknown (the venue's replies carry none)"
        money = (f"P&L {p.net:+.4f} USDT ({p.pct:+.2f}%), gross {p.gross:+.4f}, fees {fees}"
                 if p else "P&L unknown")
        level = "ERROR" if s.phase is Phase.EMERGENCY_CLOSED else "INFO"
        logger.log(level, "{} {} closed: {} at {} (entry {}); {}", s.symbol, s.side, s.close_reason,
                   s.exit_price, s.entry_price, money)

    # ---- the loop: step, persist, execute ---------------------------------------------

    def _drive(self, event: Event, fate: OrderFate | None = None) -> None:
        queue: deque[tuple[Event | None, OrderFate | None]] = deque([(event, fate)])
        while queue:
            ev, fate = queue.popleft()
            new, cmds = step(self.state, ev, self.spec) if ev is not None else (self.state, [])
            intents = [c.intent for c in cmds if isinstance(c, Place)]
            records = [c for c in cmds if isinstance(c, Record)]
            # Exposure counts from the moment the venue's answer is known, not from the write
            # that records it: a write that hangs must not hide a naked position.
            self.handle.note_protection(new)
            if intents or records or fate or new.differs_materially(self.state):
                self._persist(new, intents, [fate] if fate else [], records)
            self.state = new
            for cmd in cmds:
                self._execute(cmd, queue)

    def _persist(self, s: PositionState, intents, fates, records) -> None:
        self._fence()
        try:
            with self.handle.op("db_write", self.ctx.deadlines.operation_s):
                pnl = self.ctx.store.commit_step(s, intents=intents, fates=fates, records=records)
        except Fenced:
            raise
        except Exception as e:
            if not self.ctx.halted.is_set():
                raise
            # The lease is gone (the database may be too): the venue is the record now, and the
            # protective order that follows matters more than this row.
            logger.error("{}: not recorded while halted ({!r}); acting on the venue anyway", s.symbol, e)
            return
        if pnl is not None:
            self.realized = pnl

    def _execute(self, cmd, queue: deque) -> None:
        match cmd:
            case Place(intent=i):
                queue.append(self._place(i))
            case Cancel(cid=cid):
                queue.append(self._cancel(cid))
            case Lookup(intent=i):
                if (res := self._run_lookup(i)) is not None:
                    queue.append(res)
            case RetryLater(intent=i, delay_s=d):
                self._log_leg(i, "{}: {} order not placed; retrying in {:.2f}s (attempt {} of {})",
                              self.state.symbol, i.leg.name.lower(), d, i.attempt + 1, self.state.params.max_attempts)
                ref = self.actor_ref
                self.ctx.scheduler.call_later(d, lambda: ref.tell(Retry(i)))
            case Report(outcome=o, reason=r):
                s = self.state
                self.ctx.coordinator().tell(PositionOutcome(s.id, s.signal_id, s.wave_id, s.symbol, o, r))
                bad = o in (Outcome.EMERGENCY_CLOSED, Outcome.UNPROTECTED)
                logger.log("ERROR" if bad else "INFO", "{} {} {}: {}", s.symbol, s.side, o.value, r)
            case Reconcile():
                queue.append((self._reconcile(), None))
            case Record(kind="withdraw_stuck", data=d):
                # a close-position stop that will not cancel may close a later position here
                logger.error("{}: close-position stop {} still resting after {} failed cancels ({}); "
                             "the symbol stays held until it is gone", self.state.symbol, d["cid"],
                             d["failures"], d["reason"])
            case ReadTrailing():
                queue.append((SetParams(venue=self._read_trailing()), None))
            case Record():
                pass

    # ---- venue calls --------------------------------------------------------------------

    def _fence(self, entry: bool = False) -> None:
        if self.ctx.epochs.get(self.state.id) != self.state.epoch:
            raise Fenced(f"epoch {self.state.epoch} of {self.state.id} is stale")
        if entry and self.ctx.halted.is_set():
            raise Fenced(f"trading is halted: no entry for {self.state.id}")

    def _venue(self, what: str, fn, *args, write: bool, entry: bool = False):
        t = self.ctx.deadlines.venue_call_s
        if not write:
            with self.handle.op(what, self.ctx.deadlines.operation_s):
                return fn(*args, timeout=t)
        self._fence(entry)
        with self.handle.op(what, self.ctx.deadlines.operation_s), fence_scope(lambda: self._fence(entry)):
            return fn(*args, timeout=t)

    def _place(self, i: OrderIntent) -> tuple[Event, OrderFate]:
        s = self.state
        req = OrderRequest(i.cid, s.symbol, i.leg, i.side, i.qty, i.stop_price, i.activation, i.callback_pct,
                           close_position=i.close_position, attached_stop=i.attached_stop)
        try:
            o = self._venue(f"place {i.leg.name.lower()}", self.ctx.gateway.place_order, req, write=True,
                            entry=i.leg is Leg.ENTRY)
            self._fence_after(req, o)
        except (UnknownOutcome, Retryable) as e:
            if isinstance(e, Acknowledged):
                self.acked[i.cid] = 0
            self._log_leg(i, "{}: {} order {} (attempt {}) has no answer ({}); looking it up by client id",
                          s.symbol, i.leg.name.lower(), i.cid, i.attempt, e)
            return PlaceFailed(i, FailureKind.UNKNOWN, str(e)), OrderFate(i.cid, "unknown", reason=str(e))
        except Rejected as e:
            self._log_leg(i, "{}: {} order {} (attempt {}) refused by the venue: {}",
                          s.symbol, i.leg.name.lower(), i.cid, i.attempt, e)
            return PlaceFailed(i, FailureKind.REJECTED, str(e)), OrderFate(i.cid, "rejected", reason=str(e))
        if (why := nothing_filled(i.leg, o)) is not None:
            return PlaceFailed(i, FailureKind.REJECTED, why), OrderFate(i.cid, o.status, reason=why)
        status = "filled" if o.status == "filled" or o.filled_qty else "open"
        return Placed(i, o.avg_price, o.filled_qty or None), OrderFate(i.cid, status, o.avg_price, o.filled_qty, fee=o.fee)

    @staticmethod
    def _log_leg(i: OrderIntent, fmt: str, *args) -> None:
        """Trouble with a protective order (stop, trailing, exit) is the operator's business:
        WARNING; with an entry it only means a position did not open."""
        logger.log("INFO" if i.leg is Leg.ENTRY else "WARNING", fmt, *args)

    def _fence_after(self, req: OrderRequest, o) -> None:
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

    def _cancel(self, cid: str) -> tuple[Event, OrderFate]:
        """Cancel, and believe the venue's answer: an order found filled is a fill to act on;
        otherwise the state machine learns whether the order is gone (CancelOutcome)."""
        try:
            o = self._venue("cancel", self.ctx.gateway.cancel_order, self.state.symbol, cid, write=True)
        except OrderNotFound as e:
            return CancelOutcome(cid, True), OrderFate(cid, "not_found", reason=str(e))
        except (Rejected, UnknownOutcome, Retryable) as e:
            logger.warning("{}: cancel {} failed ({}); reconciliation will retry", self.state.symbol, cid, e)
            return CancelOutcome(cid, False, str(e)), OrderFate(cid, "open", reason=f"cancel failed: {e}")
        if o.status == "filled" and o.avg_price is not None:
            return Filled(cid, o.avg_price), OrderFate(cid, "filled", o.avg_price, o.filled_qty, fee=o.fee)
        return CancelOutcome(cid, True), OrderFate(cid, o.status if o.status != "open" else "cancelled")

    def _read_trailing(self) -> VenueTrail | None:
        """The venue's state of our native trailing stop (armed? best?), which a replacement
        must not fall behind; None when there is none or the venue could not answer."""
        s = self.state
        if s.trailing_cid is None or s.params.trailing_mode is not TrailingMode.NATIVE:
            return None
        try:
            o = self._venue("read trailing", self.ctx.gateway.fetch_order, s.symbol, s.trailing_cid, write=False)
        except (Retryable, UnknownOutcome, Rejected) as e:
            logger.warning("{}: could not read trailing stop {} ({}); it is kept as it is", s.symbol,
                           s.trailing_cid, e)
            return None
        return VenueTrail(o.activated, o.best, o.callback_pct) if o.status == "open" else None

    def _run_lookup(self, i: OrderIntent) -> tuple[Event, OrderFate] | None:
        """Resolve an unknown outcome by client id; None when the venue could not answer yet."""
        try:
            o = self._venue("lookup", self.ctx.gateway.fetch_order, self.state.symbol, i.cid, write=False)
        except OrderNotFound:
            if i.cid in self.acked:
                return self._acked_miss(i)
            self._log_leg(i, "{}: lookup of {} order {}: not at the venue, never placed", self.state.symbol,
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
        self._log_leg(i, "{}: lookup of {} order {}: {}", self.state.symbol, i.leg.name.lower(), i.cid,
                      o.status if found else f"{o.status}, not placed")
        return (LookedUp(i, found, o.avg_price, o.filled_qty or None),
                OrderFate(i.cid, o.status if found else "not_found", o.avg_price, o.filled_qty, fee=o.fee))

    def _look_again(self, i: OrderIntent, delay: float) -> None:
        ref = self.actor_ref
        self.ctx.scheduler.call_later(delay, lambda: ref.tell(LookupAgain(i)))

    def _acked_miss(self, i: OrderIntent, still_open: bool = False) -> tuple[Event, OrderFate] | None:
        """A market order the venue acknowledged or shows still working, but not as done
        (creation and history can lag): what the venue holds decides. A held position means the
        entry filled (an emptied one, that the exit did); otherwise look again with backoff, and
        only after ACK_LOOKUPS misses with nothing held is it believed never to have happened.
        An entry still working when we book or give it up is cancelled first, so nothing fills
        behind our back; what the cancel says did fill is the position's size."""
        s = self.state
        try:
            held = [p for p in self._venue("positions", self.ctx.gateway.positions, write=False)
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
            return self._venue("cancel entry", self.ctx.gateway.cancel_order, s.symbol, i.cid, write=True)
        except OrderNotFound:
            return None
        except (Rejected, UnknownOutcome, Retryable) as e:
            logger.warning("{}: entry {} still working; its cancel failed ({})", s.symbol, i.cid, e)
            return None

    @staticmethod
    def _entry_found(i: OrderIntent, o: OrderState) -> tuple[Event, OrderFate]:
        return (LookedUp(i, True, o.avg_price, o.filled_qty),
                OrderFate(i.cid, "filled", o.avg_price, o.filled_qty, fee=o.fee))

    def _reconcile(self) -> Reconciled:
        """Resolve every intent of unknown fate, then read what the venue holds for us; if it
        holds nothing, learn which of our orders closed the position, and at what price.
        The reads are independent, so they go out together: one round trip, not four."""
        s, gw, t = self.state, self.ctx.gateway, self.ctx.deadlines.venue_call_s
        with self.handle.op("recovery view", self.ctx.deadlines.operation_s):
            seen = self.ctx.recovery_view(s)  # at a cold start: read once for all positions
        reads: dict[str, Callable[[], Any]] = {}
        if seen is None:
            unresolved = [r.cid for r in self.ctx.store.unresolved_orders(s.id)]
            reads["positions"] = lambda: gw.positions(timeout=t)
            reads["open orders"] = lambda: gw.open_orders(s.symbol, timeout=t)
        else:
            unresolved = [cid for cid, _leg in seen.unresolved]
        if not (seen is not None and seen.price):
            reads["price"] = lambda: gw.price(s.symbol, timeout=t)
        got = self._read_together(reads, unresolved)
        positions = got["positions"] if seen is None else seen.positions
        orders = got["open orders"] if seen is None else seen.orders
        price = got["price"] if "price" in got else seen.price
        fills: dict[str, OrderState] = {}
        self._note_fates(unresolved, got, fills)
        venue_qty, venue_entry = 0, None
        for p in positions:
            if p.symbol == s.symbol and (p.qty > 0) == (s.side.sign > 0):  # the other side is not ours
                venue_qty, venue_entry = abs(p.qty), p.entry_price
        # ours: our own client ids, and the stop an adopted position took over with its ids
        resting = tuple(Resting(o.cid, leg_of(o.cid), o.stop_price, o.callback_pct) for o in orders
                        if (position_id_of(o.cid) == s.id or o.cid in s.protective_cids)
                        and leg_of(o.cid) is not None)
        gone = sorted(set(s.protective_cids) - set(fills) - {r.cid for r in resting})
        if gone:  # no longer resting: filled or cancelled while we were down
            self._note_fates(gone, self._read_together({}, gone), fills)
        entry = next((o for o in fills.values() if o.leg is Leg.ENTRY), None)
        exit_ = next((o for o in fills.values() if o.leg is not Leg.ENTRY), None)
        return Reconciled(Decimal(venue_qty), venue_entry, resting, price,
                          entry.avg_price if entry else None,
                          exit_.avg_price if exit_ else None, exit_.cid if exit_ else None)

    def _read_together(self, reads: dict[str, Callable[[], Any]], cids: list[str]) -> dict[str, Any]:
        """`reads` plus a lookup of each client id, all at once under one operation deadline."""
        calls = dict(reads) | {f"lookup {cid}": (lambda cid=cid: self._fate(cid)) for cid in cids}
        if not calls:
            return {}
        with self.handle.op(f"reconcile: {', '.join(calls)}", self.ctx.deadlines.operation_s):
            return together(calls)

    def _note_fates(self, cids: list[str], got: dict[str, Any], fills: dict[str, OrderState]) -> None:
        """Persist each looked-up order's fate (in order); collect the fills among them."""
        for cid in cids:
            fate, o = got[f"lookup {cid}"]
            if o is not None and o.status == "filled":
                fills[o.cid] = o
            self._persist(self.state, [], [fate], [])

    def _fate(self, cid: str) -> tuple[OrderFate, OrderState | None]:
        """What the venue knows of one of our orders, by client id (safe in a helper thread:
        it touches neither the actor's state nor its supervisor handle)."""
        try:
            o = self.ctx.gateway.fetch_order(self.state.symbol, cid, timeout=self.ctx.deadlines.venue_call_s)
        except OrderNotFound:
            return OrderFate(cid, "not_found"), None
        return OrderFate(cid, o.status, o.avg_price, o.filled_qty, fee=o.fee), o

    def _inject(self, op: str) -> None:
        rule = self.ctx.faults.pick(op, self.state.symbol)
        if rule is None:
            return
        if rule.kind == "crash":
            raise InjectedCrash(f"injected crash of {self.state.symbol} on {op}")
        if rule.kind == "hang":
            with self.handle.op(f"{op} (injected hang)", self.ctx.deadlines.operation_s):
                self.ctx.faults.hang()
