"""Recovery on start: every open position restored, reconciled with the venue, before any wave.

Order of work, and why:
1. Take over every open position in one transaction (epoch + 1 each): any writer left over
   from the previous run is fenced before a replacement exists. This is also the one read of
   which symbols the database holds, and it comes *before* the venue is read: a position that
   closes in between (its stop fills) is then still ours in this read, never an unknown one
   to adopt — the other order would turn it into a phantom.
2. Start one PositionActor per position with `RecoverPosition`, then read the venue account
   once — positions and open orders together — and our unresolved intents (`VenueView`). Each
   position resolves its intents of unknown fate by client id, compares with what the venue
   holds, and re-places missing protection (or closes at market if the price is already
   through the stop). It acts on nothing else before that (see `PositionActor.ready`).
3. Wait for all of them (progress is logged, and `progress()` answers the control plane).
4. Adopt what the venue holds that no open position accounts for, and wait until each adopted
   position is protected. Only then cancel our orders of positions that are not open — and
   never a stop that protects a venue position no reconciled position of ours protects. Then
   waves resume.
"""
from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

from loguru import logger

from actors.messages import VenueView
from actors.together import together
from core.position_types import Leg, PositionState, position_id_of
from exchange.gateway import Gateway, NotSent, OrderState, Retryable, VenuePosition
from service.adoption import adopt, batched, resting_protection
from service.recovery_report import RecoveryDeps, RecoveryHooks, RecoveryReport

__all__ = ["POLICY", "Recovery", "RecoveryDeps", "RecoveryHooks", "RecoveryReport"]

T = TypeVar("T")

# Attempts at cancelling one stray order whose cancel was not sent (0.2 s, 0.4 s… apart).
CANCEL_TRIES = 4

POLICY = """\
What recovery does with what it finds at the venue that no open position accounts for:
- A position the venue holds on a symbol no open position of ours holds (opened by hand, or
  left by a database restored from an old backup): `recovery.unknown_venue_position` decides:
  "adopt" (default) makes it a position of ours (origin "adopted", flagged needs_attention):
  protected by the stop of ours already resting on it, if there is one on its loss side (with
  the trailing stop placed with it: nothing is cancelled or re-placed), else by a new stop at
  stop_loss_pct from the venue's entry price (closed at market if the price is already through
  it), and trailed like any other; "close" adopts it and closes it at
  market; "report" only records and logs it. Every case is logged at ERROR and recorded in the
  event log (kind "venue_position_unknown"); none is ever silently dropped.
- A position we hold open that the venue does not hold: its stop or trailing stop filled while
  we were down (closed: outcome kept, exit recorded), or its entry never reached the venue
  (failed). A venue position on the opposite side of ours counts as not ours, and is handled
  as an unknown venue position once ours is closed.
- An order with our client-id format whose position is not open: cancelled (a stale stop could
  otherwise close a later position), recorded as "stray_order_cancelled" — but only after
  adoption, and a stop on the side that protects a venue position is cancelled only once an
  open position of ours on that symbol is reconciled with its own stop resting (or closed);
  otherwise it is kept, logged at ERROR and recorded ("stray_order_kept"): a stop is never
  stripped from a position that exists.
- An order of another client (no client id of ours, `core.client_ids`): left alone, counted and recorded ("foreign_orders").
"""


@dataclass
class Account:
    """One read of the venue account: its positions and open orders, issued together."""

    positions: list[VenuePosition]
    orders: list[OrderState]


class Recovery:
    """One start-up recovery run over what it is given; `run()` returns its report."""

    def __init__(self, deps: RecoveryDeps) -> None:
        self.deps = deps
        self.cfg = deps.cfg
        self._cv = threading.Condition()
        self._pending: set[str] = set()
        self._after: dict[str, PositionState] = {}  # every recovered position, as it reconciled
        self._views: dict[str, VenueView] = {}
        self._views_ready = threading.Event()
        self.stage = "taking over open positions"
        self.total = 0
        deps.hooks.recovered = self._on_recovered

    def progress(self) -> tuple[str, int, int]:
        """(what it is doing, positions done, positions to do): the control plane's answer."""
        with self._cv:
            return self.stage, self.total - len(self._pending), self.total

    def _expect(self, stage: str, ids: set[str]) -> None:
        with self._cv:
            self.stage, self.total, self._pending = stage, len(ids), set(ids)

    def _view(self, s: PositionState) -> VenueView | None:
        """Called by a restored actor: what recovery read for it (once; restarts read live)."""
        if s.id not in self._pending or not self._views_ready.wait(self.cfg.reconcile_timeout_s):
            return None
        return self._views.pop(s.id, None)

    def _read_account(self) -> Account | None:
        gw, t = self.deps.gateway, self.deps.venue_call_s
        try:
            got = self._read("the venue account", lambda: together({
                "positions": lambda: gw.positions(timeout=t),
                "open orders": lambda: gw.open_orders(None, timeout=t)}))
        except Exception as e:  # start-up goes on: the positions still reconcile, one by one
            logger.error("recovery: reading the venue account failed ({}); positions read it one by "
                         "one, and unknown positions and stray orders are not checked this start", e)
            return None
        return Account(got["positions"], got["open orders"])

    def _views_for(self, states: list[PositionState], acct: Account | None) -> dict[str, VenueView]:
        """Each restored position's share of the account read, and its unresolved intents."""
        if acct is None or not states:
            return {}
        try:
            unresolved = self.deps.store.unresolved_by_position()
        except Exception as e:  # each position then reads for itself, under supervision
            logger.error("recovery: reading unresolved intents failed ({}); positions read them one by one", e)
            return {}
        pos_by: dict[str, list[VenuePosition]] = {}
        for p in acct.positions:
            pos_by.setdefault(p.symbol, []).append(p)
        ord_by: dict[str, list[OrderState]] = {}
        for o in acct.orders:
            ord_by.setdefault(o.symbol, []).append(o)
        last = self.deps.market_data.last_price
        return {s.id: VenueView(tuple(pos_by.get(s.symbol, ())), tuple(ord_by.get(s.symbol, ())),
                                tuple(unresolved.get(s.id, ())), last.get(s.symbol))
                for s in states}

    def _on_recovered(self, s: PositionState) -> None:
        with self._cv:
            if s.id in self._pending:
                self._pending.discard(s.id)
                self._after[s.id] = s
                self._cv.notify_all()

    # ---- the run ---------------------------------------------------------------------

    def run(self) -> RecoveryReport:
        d, t0 = self.deps, time.monotonic()
        rep = RecoveryReport()
        states = d.store.take_over_open(d.defaults())  # the database first, then the venue
        rep.restored = len(states)
        if states:
            logger.info("recovery: {} open positions to restore; epochs raised, reconciling with {}",
                        len(states), d.gateway.name)
        self._expect("reading the venue account", {s.id for s in states})
        d.hooks.views = self._view
        try:
            for s in states:  # each waits in `_view` until the venue has been read for everyone
                self._route_taken_over(s)
                d.supervisor.start_position(s, recover=True)
            # Read the venue only now that every actor exists: an order update from here on
            # reaches its actor's mailbox (handled after reconciling), and anything earlier
            # is already in what we read.
            acct = self._read_account()
            self._views = self._views_for(states, acct)
            with self._cv:
                self.stage = "reconciling"
            self._views_ready.set()
            self._wait(time.monotonic())
        finally:
            self._views_ready.set()
            d.hooks.views = lambda _s: None
        with self._cv:
            rep.still_reconciling = sorted(self._pending)
            rep.reconciled = len(self._after)
            rep.phases = Counter(s.phase.value for s in self._after.values())
        if rep.still_reconciling:
            logger.warning("recovery: {} positions still reconciling after {:g}s; they stay under "
                           "supervision and act only once reconciled", len(rep.still_reconciling),
                           self.cfg.reconcile_timeout_s)
        if acct is not None:
            self._sweep(acct, states, rep)
        rep.seconds = time.monotonic() - t0
        if states or rep.unknown_venue_positions or rep.stray_orders_cancelled or rep.stray_orders_kept:
            logger.info("recovery: {} restored, {} reconciled in {:.2f}s ({}); unknown venue "
                        "positions: {}; stray orders cancelled: {}, kept: {}; foreign orders: {}",
                        rep.restored, rep.reconciled, rep.seconds,
                        ", ".join(f"{v} {k}" for k, v in sorted(rep.phases.items())) or "-",
                        len(rep.unknown_venue_positions), len(rep.stray_orders_cancelled),
                        len(rep.stray_orders_kept), rep.foreign_orders)
            d.store.record("recovery", rep.as_dict())
        return rep

    def _wait(self, t0: float) -> None:
        """Until every expected position has reconciled (or escalated); progress each second."""
        deadline = t0 + self.cfg.reconcile_timeout_s
        next_note = t0 + self.cfg.progress_every_s
        with self._cv:
            while True:
                self._pending -= set(self.deps.supervisor.escalated)
                now = time.monotonic()
                if not self._pending or now >= deadline:
                    return
                if now >= next_note:
                    logger.info("recovery: {}/{} positions reconciled ({:.1f}s)",
                                self.total - len(self._pending), self.total, now - t0)
                    next_note = now + self.cfg.progress_every_s
                self._cv.wait(min(deadline, next_note) - now)

    def _read(self, what: str, fn: Callable[[], T]) -> T:
        for attempt in range(3):
            try:
                return fn()
            except Retryable as e:
                logger.warning("recovery: reading {} failed ({}); retrying", what, e)
                time.sleep(0.2 * 2 ** attempt)
        return fn()

    # ---- what no open position accounts for ------------------------------------------

    def _sweep(self, acct: Account, states: list[PositionState], rep: RecoveryReport) -> None:
        """Adopt first — with the stop of ours already resting on the position, if there is
        one — and wait until the adopted are protected; cancel strays after that."""
        d = self.deps
        held, open_ids = {s.symbol for s in states}, {s.id for s in states}
        owned = {c for s in states for c in s.protective_cids}
        rep.foreign_orders = sum(1 for o in acct.orders if position_id_of(o.cid) is None)
        if rep.foreign_orders:
            logger.warning("recovery: {} open orders of other clients at the venue; left alone",
                           rep.foreign_orders)
            d.store.record("foreign_orders", {"count": rep.foreign_orders})
        strays = [o for o in acct.orders if (pid := position_id_of(o.cid)) is not None
                  and pid not in open_ids and o.cid not in owned]
        venue_positions = acct.positions
        if any(vp.qty != 0 and vp.symbol not in held for vp in venue_positions):
            # The account was read before reconciling; what nobody of ours holds may have changed
            # since (a stray stop filled): adopt from a fresh read, never from a stale one.
            gw, t = d.gateway, d.venue_call_s
            try:
                venue_positions = self._read("positions", lambda: gw.positions(timeout=t))
            except Exception as e:
                logger.error("recovery: reading the venue's positions again failed ({}); adopting from "
                             "the first read", e)
        unknown = [vp for vp in venue_positions if vp.qty != 0 and vp.symbol not in held]
        resting = resting_protection(d, unknown, strays)
        adopted = [s for vp in unknown if (s := adopt(d, vp, rep, resting.get(vp.symbol))) is not None]
        if adopted:
            self._expect("protecting adopted positions", {s.id for s in adopted})
            for s in adopted:
                self._route_taken_over(s)
                d.supervisor.start_position(s, recover=True)
            self._wait(time.monotonic())
        taken = {c for s in adopted for c in s.protective_cids}
        strays = [o for o in strays if o.cid not in taken]
        with self._cv:
            self.stage = "cancelling stray orders"
            settled = {s.symbol for s in self._after.values() if s.phase.final or s.stop_cid is not None}
        exposed = {p.symbol for p in venue_positions if p.qty != 0} - settled
        for o in strays:
            if o.symbol in exposed and o.leg in (Leg.STOP, Leg.TRAILING):
                self._keep_stray(o, rep)
        self._cancel_strays([o for o in strays if o.cid not in rep.stray_orders_kept], rep)

    def _route_taken_over(self, s: PositionState) -> None:
        """Updates of an order a position took over (ids of another position) reach it."""
        for c in s.protective_cids:
            if position_id_of(c) != s.id:
                self.deps.order_owner[c] = s.id

    def _keep_stray(self, o: OrderState, rep: RecoveryReport) -> None:
        rep.stray_orders_kept.append(o.cid)
        logger.error("recovery: kept stray order {} on {}: its position is not open in our database, "
                     "but it protects a position the venue holds that no position of ours protects yet",
                     o.cid, o.symbol)
        self.deps.store.record("stray_order_kept", {"cid": o.cid, "symbol": o.symbol, "leg": o.leg.value},
                                  position_id=position_id_of(o.cid))

    def _cancel_strays(self, strays: list[OrderState], rep: RecoveryReport) -> None:
        gw, t = self.deps.gateway, self.deps.venue_call_s
        done = batched({o.cid: partial(self._cancel_one, gw, o, t) for o in strays})
        rep.stray_orders_cancelled += [o.cid for o in strays if done[o.cid]]

    def _cancel_one(self, gw: Gateway, o: OrderState, timeout: float) -> bool:
        try:
            _cancel(gw, o, timeout)
        except Exception as e:  # one failed cancel never stops the start; the order is reported
            logger.error("recovery: stray order {} on {} could not be cancelled: {}", o.cid, o.symbol, e)
            return False
        logger.warning("recovery: cancelled stray order {} on {} (its position is not open)", o.cid, o.symbol)
        self.deps.store.record("stray_order_cancelled", {"cid": o.cid, "symbol": o.symbol,
                                                            "leg": o.leg.value},
                                  position_id=position_id_of(o.cid))
        return True


def _cancel(gw: Gateway, o: OrderState, timeout: float) -> OrderState:
    """A cancel that was never sent (the venue's per-second write budget full for the whole
    call, the clock off) is safe to send again: a sweep of many strays outruns the budget."""
    for attempt in range(CANCEL_TRIES - 1):
        try:
            return gw.cancel_order(o.symbol, o.cid, timeout=timeout)
        except NotSent as e:
            logger.info("recovery: cancel of {} not sent ({}); again", o.cid, e)
            time.sleep(0.2 * 2 ** attempt)
    return gw.cancel_order(o.symbol, o.cid, timeout=timeout)
