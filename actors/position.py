"""PositionActor: the thin shell around the pure state machine of one position.

It owns its position for the position's whole life. Each message becomes an event; the
transition is persisted (one fenced transaction, write-ahead of any order it asks for) and
then its commands are executed, their results fed back as events. Every venue and database
call runs under an operation deadline that the supervisor watches.

The parts beside it: `position_context` (its ports to the service, and the fence),
`position_orders` (the venue calls its commands make), `position_reconcile` (what the venue
holds, read to reconcile), `position_faults` (faults injected into the actor itself).
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pykka
from loguru import logger

from actors.market_data import TickSlot
from actors.messages import (
    TICK, Control, GetState, LookupAgain, OpenPosition, OrderUpdate, PositionClosed,
    PositionOutcome, RecoverPosition, Retry,
)
from actors.ports import PositionReports
from actors.position_context import PositionContext, check_fence
from actors.position_faults import inject
from actors.position_orders import PositionOrders, log_leg
from actors.position_reconcile import reconcile
from core.pnl import Realized
from core.position_logic import step
from core.position_types import (
    Begin, Cancel, Command, Event, Filled, Lookup, OrderIntent, Outcome, Phase, Place, PositionState,
    Reconcile, Reconciled, Record, Report, ReadTrailing, RetryDue, RetryLater, SetParams, Tick,
)
from exchange.gateway import Fenced
from persistence.positions import OrderFate

__all__ = ["PositionActor", "PositionContext"]

PRICE_FRESH_S = 2.0  # a feed price this recent sizes an entry without a venue round trip


class PositionActor(pykka.ThreadingActor):
    # A stuck actor is abandoned, not joined: its thread must never keep the process alive.
    use_daemon_thread = True

    def __init__(self, state: PositionState, ctx: PositionContext, handle: PositionReports) -> None:
        super().__init__()
        self.state = state
        self.ctx = ctx
        self.handle = handle
        self.orders = PositionOrders(ctx, handle, lambda: self.state, self._look_again)
        self.spec = ctx.markets[state.symbol]
        self.slot: TickSlot | None = None
        self.fenced = False
        # Nothing acts before the first OpenPosition/RecoverPosition: a restored position must
        # be reconciled with the venue before a tick or an order update can move it.
        self.ready = False
        self.early: list[Any] = []
        self.realized: Realized | None = None
        self.finished = False  # messages queued behind the final step must not finish it again

    # ---- mailbox ----------------------------------------------------------------------

    def on_start(self) -> None:
        self.slot = self.ctx.market_data.subscribe(self.state.symbol, self.actor_ref)

    def on_stop(self) -> None:
        if self.slot is not None:
            self.ctx.market_data.unsubscribe(self.slot)

    def on_failure(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.on_stop()
        self.handle.crashed(exc)

    def on_receive(self, msg: Any) -> Any:
        if self.fenced:
            return None
        if not self.ready and not isinstance(msg, (OpenPosition, RecoverPosition, GetState)):
            if msg is TICK:
                self._take_tick()  # reconciliation reads a fresh price itself
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
                price, ts = self._take_tick()
                if price is not None:
                    inject(self.ctx, self.handle, "tick", self.state.symbol)
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
                    ev = replace(ev, venue=self.orders.read_trailing())
                self._drive(ev)
            case OpenPosition():
                inject(self.ctx, self.handle, "open", self.state.symbol)
                price = self.ctx.market_data.fresh_price(self.state.symbol, PRICE_FRESH_S) or self.orders.call(
                    "price", self.ctx.gateway.price, self.state.symbol, write=False)
                self._drive(Begin(price))
            case RecoverPosition():
                inject(self.ctx, self.handle, "recover", self.state.symbol)
                self._drive(self._reconcile())
            case Retry(intent=i):
                self._drive(RetryDue(i))
            case LookupAgain(intent=i):
                if (res := self.orders.lookup(i)) is not None:
                    self._drive(*res)
            case GetState():
                pass

    def _take_tick(self) -> tuple[Decimal | None, float]:
        """The latest price and its feed time, from the slot subscribed at start."""
        assert self.slot is not None, "ticks are delivered only after on_start subscribed"
        return self.slot.take()

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

    def _persist(self, s: PositionState, intents: list[OrderIntent], fates: list[OrderFate],
                 records: list[Record]) -> None:
        check_fence(self.ctx, self.state)
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

    def _execute(self, cmd: Command, queue: deque[tuple[Event | None, OrderFate | None]]) -> None:
        match cmd:
            case Place(intent=i):
                queue.append(self.orders.place(i))
            case Cancel(cid=cid):
                queue.append(self.orders.cancel(cid))
            case Lookup(intent=i):
                if (res := self.orders.lookup(i)) is not None:
                    queue.append(res)
            case RetryLater(intent=i, delay_s=d):
                log_leg(i, "{}: {} order not placed; retrying in {:.2f}s (attempt {} of {})",
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
                queue.append((SetParams(venue=self.orders.read_trailing()), None))
            case Record():
                pass

    def _reconcile(self) -> Reconciled:
        return reconcile(self.state, self.ctx, self.handle, lambda fate: self._persist(self.state, [], [fate], []))

    def _look_again(self, i: OrderIntent, delay: float) -> None:
        ref = self.actor_ref
        self.ctx.scheduler.call_later(delay, lambda: ref.tell(LookupAgain(i)))
