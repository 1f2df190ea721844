"""Recovery on start: every open position restored, reconciled with the venue, before any wave.

Order of work, and why:
1. Take over every open position in one transaction (epoch + 1 each): any writer left over
   from the previous run is fenced before a replacement exists.
2. Start one PositionActor per position with `RecoverPosition`, then read the venue account
   and our unresolved intents once for all of them (`VenueView`). Each resolves its intents of
   unknown fate by client id, compares with what the venue holds, and re-places missing
   protection (or closes at market if the price is already through the stop). It acts on
   nothing else before that (see `PositionActor.ready`).
3. Wait for all of them (progress is logged while it takes), then sweep the account for what
   no open position accounts for — see `POLICY` — and only then let waves resume.
"""
from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from loguru import logger

from actors.messages import VenueView
from core import trailing as tr
from core.position_types import Phase, PositionState, position_id_of
from core.types import Side
from exchange.gateway import OrderState, Retryable, VenueError, VenuePosition

if TYPE_CHECKING:
    from service.app import Service

POLICY = """\
What recovery does with what it finds at the venue that no open position accounts for:
- A position the venue holds on a symbol no open position of ours holds (opened by hand, or
  left by a database restored from an old backup): `recovery.unknown_venue_position` decides:
  "adopt" (default) makes it a position of ours (origin "adopted", flagged needs_attention):
  protected by a stop at stop_loss_pct from the venue's entry price (closed at market if the
  price is already through it) and trailed like any other; "close" adopts it and closes it at
  market; "report" only records and logs it. Every case is logged at ERROR and recorded in the
  event log (kind "venue_position_unknown"); none is ever silently dropped.
- A position we hold open that the venue does not hold: its stop or trailing stop filled while
  we were down (closed: outcome kept, exit recorded), or its entry never reached the venue
  (failed). A venue position on the opposite side of ours counts as not ours, and is handled
  as an unknown venue position once ours is closed.
- An order with our client-id format whose position is not open: cancelled (a stale stop could
  otherwise close a later position), recorded as "stray_order_cancelled".
- An order of another client (no `wt-` id): left alone, counted and recorded ("foreign_orders").
"""


@dataclass
class RecoveryReport:
    restored: int = 0
    reconciled: int = 0
    seconds: float = 0.0
    phases: Counter = field(default_factory=Counter)  # of restored positions, after reconciling
    unknown_venue_positions: list[str] = field(default_factory=list)
    stray_orders_cancelled: list[str] = field(default_factory=list)
    foreign_orders: int = 0
    still_reconciling: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"restored": self.restored, "reconciled": self.reconciled,
                "seconds": round(self.seconds, 3), "phases": dict(self.phases),
                "unknown_venue_positions": self.unknown_venue_positions,
                "stray_orders_cancelled": self.stray_orders_cancelled,
                "foreign_orders": self.foreign_orders, "still_reconciling": self.still_reconciling}


class Recovery:
    def __init__(self, svc: "Service") -> None:
        self.svc = svc
        self.cfg = svc.cfg.recovery
        self._cv = threading.Condition()
        self._pending: set[str] = set()
        self._after: dict[str, Phase] = {}
        self._views: dict[str, VenueView] = {}
        self._views_ready = threading.Event()
        svc.ctx.on_recovered = self._on_recovered

    def _view(self, s: PositionState) -> VenueView | None:
        """Called by a restored actor: what recovery read for it (once; restarts read live)."""
        if s.id not in self._pending or not self._views_ready.wait(self.cfg.reconcile_timeout_s):
            return None
        return self._views.pop(s.id, None)

    def _read_views(self, states: list[PositionState]) -> dict[str, VenueView]:
        """One read of the venue account and of our unresolved intents, for every position."""
        svc = self.svc
        try:
            positions = self._read("positions", svc.gateway.positions)
            orders = self._read("open orders", svc.gateway.open_orders, None)
            unresolved = svc.positions.unresolved_by_position()
        except Exception as e:  # each position then reads for itself, under supervision
            logger.error("recovery: reading the venue account failed ({}); positions read it one by one", e)
            return {}
        pos_by: dict[str, list[VenuePosition]] = {}
        for p in positions:
            pos_by.setdefault(p.symbol, []).append(p)
        ord_by: dict[str, list[OrderState]] = {}
        for o in orders:
            ord_by.setdefault(o.symbol, []).append(o)
        last = svc.market_data.last_price
        return {s.id: VenueView(tuple(pos_by.get(s.symbol, ())), tuple(ord_by.get(s.symbol, ())),
                                tuple(unresolved.get(s.id, ())), last.get(s.symbol))
                for s in states}

    def _on_recovered(self, s: PositionState) -> None:
        with self._cv:
            if s.id in self._pending:
                self._pending.discard(s.id)
                self._after[s.id] = s.phase
                self._cv.notify_all()

    # ---- the run ---------------------------------------------------------------------

    def run(self) -> RecoveryReport:
        svc, t0 = self.svc, time.monotonic()
        rep = RecoveryReport()
        states = svc.positions.take_over_open(svc.defaults)
        rep.restored = len(states)
        if states:
            logger.info("recovery: {} open positions to restore; epochs raised, reconciling with {}",
                        len(states), svc.gateway.name)
        with self._cv:
            self._pending = {s.id for s in states}
        svc.ctx.recovery_view = self._view
        try:
            for s in states:  # each waits in `_view` until the venue has been read for everyone
                svc.supervisor.start_position(s, recover=True)
            # Read the venue only now that every actor exists: an order update from here on
            # reaches its actor's mailbox (handled after reconciling), and anything earlier
            # is already in what we read.
            self._views = self._read_views(states)
            self._views_ready.set()
            self._wait(rep, t0)
        finally:
            self._views_ready.set()
            svc.ctx.recovery_view = lambda _s: None
        self._sweep(rep)
        rep.seconds = time.monotonic() - t0
        if states or rep.unknown_venue_positions or rep.stray_orders_cancelled:
            logger.info("recovery: {} restored, {} reconciled in {:.2f}s ({}); unknown venue "
                        "positions: {}; stray orders cancelled: {}; foreign orders: {}",
                        rep.restored, rep.reconciled, rep.seconds,
                        ", ".join(f"{v} {k}" for k, v in sorted(rep.phases.items())) or "-",
                        len(rep.unknown_venue_positions), len(rep.stray_orders_cancelled),
                        rep.foreign_orders)
            svc.positions.record("recovery", rep.as_dict())
        return rep

    def _wait(self, rep: RecoveryReport, t0: float) -> None:
        """Until every restored position has reconciled (or escalated); progress each second."""
        total = rep.restored
        deadline = t0 + self.cfg.reconcile_timeout_s
        next_note = t0 + self.cfg.progress_every_s
        with self._cv:
            while True:
                self._pending -= set(self.svc.supervisor.escalated)
                now = time.monotonic()
                if not self._pending or now >= deadline:
                    break
                if now >= next_note:
                    logger.info("recovery: {}/{} positions reconciled ({:.1f}s)",
                                total - len(self._pending), total, now - t0)
                    next_note = now + self.cfg.progress_every_s
                self._cv.wait(min(deadline, next_note) - now)
            rep.still_reconciling = sorted(self._pending)
            rep.reconciled = len(self._after)
            rep.phases = Counter(p.value for p in self._after.values())
        if rep.still_reconciling:
            logger.warning("recovery: {} positions still reconciling after {:g}s; they stay under "
                           "supervision and act only once reconciled", len(rep.still_reconciling),
                           self.cfg.reconcile_timeout_s)

    # ---- what no open position accounts for ------------------------------------------

    def _read(self, what: str, fn, *args):
        t = self.svc.cfg.deadlines.venue_call_s
        for attempt in range(3):
            try:
                return fn(*args, timeout=t)
            except Retryable as e:
                logger.warning("recovery: reading {} failed ({}); retrying", what, e)
                time.sleep(0.2 * 2 ** attempt)
        return fn(*args, timeout=t)

    def _sweep(self, rep: RecoveryReport) -> None:
        svc = self.svc
        try:
            venue_positions = self._read("positions", svc.gateway.positions)
            orders = self._read("open orders", svc.gateway.open_orders, None)
        except VenueError as e:
            logger.error("recovery: could not read the venue account ({}); unknown positions and "
                         "stray orders are not checked this start", e)
            return
        held = svc.positions.open_symbols()
        open_ids = set(held.values())
        for o in orders:
            pid = position_id_of(o.cid)
            if pid is None:
                rep.foreign_orders += 1
            elif pid not in open_ids:
                self._cancel_stray(o, rep)
        if rep.foreign_orders:
            logger.warning("recovery: {} open orders of other clients at the venue; left alone",
                           rep.foreign_orders)
            svc.positions.record("foreign_orders", {"count": rep.foreign_orders})
        for vp in venue_positions:
            if vp.qty != 0 and vp.symbol not in held:
                self._unknown_position(vp, rep)

    def _cancel_stray(self, o: OrderState, rep: RecoveryReport) -> None:
        try:
            self.svc.gateway.cancel_order(o.symbol, o.cid, timeout=self.svc.cfg.deadlines.venue_call_s)
        except VenueError as e:
            logger.error("recovery: stray order {} on {} could not be cancelled: {}", o.cid, o.symbol, e)
            return
        rep.stray_orders_cancelled.append(o.cid)
        logger.warning("recovery: cancelled stray order {} on {} (its position is not open)", o.cid, o.symbol)
        self.svc.positions.record("stray_order_cancelled", {"cid": o.cid, "symbol": o.symbol,
                                                            "leg": o.leg.value},
                                  position_id=position_id_of(o.cid))

    def _unknown_position(self, vp: VenuePosition, rep: RecoveryReport) -> None:
        svc, policy = self.svc, self.cfg.unknown_venue_position
        spec = svc.markets.get(vp.symbol)
        if spec is None:
            policy = "report"
        side = Side.LONG if vp.qty > 0 else Side.SHORT
        data = {"symbol": vp.symbol, "qty": str(vp.qty), "entry": str(vp.entry_price), "action": policy}
        logger.error("recovery: the venue holds {} {} {} (entry {}) that no open position of ours "
                     "accounts for; policy: {}", vp.symbol, side.value, abs(vp.qty), vp.entry_price, policy)
        rep.unknown_venue_positions.append(f"{vp.symbol} {vp.qty}: {policy}")
        if policy == "report":
            svc.positions.record("venue_position_unknown", data)
            svc.health_notes.append(f"unknown venue position {vp.symbol} {vp.qty} (reported only)")
            return
        entry = vp.entry_price or svc.gateway.price(vp.symbol, timeout=svc.cfg.deadlines.venue_call_s)
        p = svc.defaults
        pid = uuid.uuid4().hex[:12]
        state = PositionState(
            id=pid, signal_id=f"adopted-{pid}", wave_id="recovery", symbol=vp.symbol, side=side,
            params=p, phase=Phase.CLOSING if policy == "close" else Phase.OPEN, qty=abs(vp.qty),
            entry_price=entry,
            trailing=tr.Trailing(tr.activation_price(entry, side, p.activation_pct, spec), p.callback_pct),
            close_reason="unknown venue position: closed by recovery policy" if policy == "close" else None)
        svc.positions.create(state, origin="adopted")
        reason = f"adopted on recovery: the venue held {vp.qty} {vp.symbol} the database did not know"
        svc.positions.flag(pid, reason)
        svc.positions.record("venue_position_unknown", data | {"position_id": pid}, position_id=pid)
        svc.health_notes.append(f"{pid}: {reason}")
        svc.supervisor.start_position(state, recover=True)
