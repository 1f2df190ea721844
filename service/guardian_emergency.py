"""The guardian's hands: an emergency stop (or close) for a position the venue holds naked past
`guardian.grace_s`, and withdrawing that stop once the position's own rests beside it.

Each action runs on a thread of its own, one at a time per symbol, so a venue or database call
that hangs never stops the guardian's rounds. Its orders carry the guardian's client-id
namespace and are recorded write-ahead where the position is ours, like an actor's.
"""
from __future__ import annotations

import threading
import time
from decimal import Decimal

from loguru import logger
from sqlalchemy import select

from core import trailing as tr
from core.position_types import Leg, guardian_cid, is_guardian_cid, position_id_of
from core.types import Side
from exchange.gateway import OrderRequest, Rejected, VenuePosition
from persistence.models import EventRow, OrderRow, PositionRow
from service.venue_truth import Cover, assess


class Emergency:
    def __init__(self, guardian) -> None:
        self.g = guardian
        self._acting: dict[str, threading.Thread] = {}
        self._acted_at: dict[str, float] = {}
        self._cancelling: set[str] = set()
        self._seq = int(time.time() * 10) % 10_000_000

    def overdue(self, sym: str, cover: Cover, naked_s: float, handle) -> None:
        if not self.g.gcfg.emergency_stop:
            return
        busy = self._acting.get(sym)
        if busy is not None and busy.is_alive():
            return
        if time.monotonic() - self._acted_at.get(sym, -1e9) < max(self.g.gcfg.grace_s, self.g.interval_s):
            return  # give what we did (and the restart) one grace period to show at the venue
        self._acted_at[sym] = time.monotonic()
        t = threading.Thread(target=self._protect, args=(sym, cover, naked_s, handle),
                             name=f"guardian-protect {sym}", daemon=True)
        self._acting[sym] = t
        t.start()

    def _protect(self, sym: str, cover: Cover, naked_s: float, handle) -> None:
        """Place an emergency stop (or close at market), then have the owner restarted."""
        try:
            owner = self._owner_row(sym)
            side = Side.LONG if cover.qty > 0 else Side.SHORT
            level = self._level(sym, side, cover, owner)
            price = self.g.gateway.price(sym, timeout=self.g.cfg.deadlines.venue_call_s)
            through = level is None or not tr.is_protective(level, price, side)
            logger.critical("guardian: {} has had no resting stop at the venue for {:.1f}s; {}", sym, naked_s,
                            f"closing at market (price {price} is through {level})" if through
                            else f"placing an emergency stop at {level}")
            if not through:
                try:
                    self._send(owner, sym, Leg.STOP, cover, level)
                    self.g.stats.emergency_stops += 1
                except Rejected as e:  # e.g. -2021: the price moved through it meanwhile
                    logger.critical("guardian: {} emergency stop refused ({}); closing at market", sym, e)
                    through = True
            if through:
                self._send(owner, sym, Leg.EXIT, cover, None)
                self.g.stats.emergency_closes += 1
        except Exception as e:
            self.g.stats.emergency_failures += 1
            logger.critical("guardian: {}: emergency protection failed: {!r}; operator needed", sym, e)
        if handle is not None and not handle.retired:
            self.g.stats.restarts_requested += 1
            self.g.supervisor.child_failed(handle, f"guardian: no resting stop at the venue for {naked_s:.1f}s")

    def _level(self, sym: str, side: Side, cover: Cover, owner: PositionRow | None) -> Decimal | None:
        if owner is not None and owner.stop_price is not None:
            return owner.stop_price
        entry = cover.entry or (owner.entry_price if owner is not None else None)
        if entry is None:
            return None
        pct = owner.stop_loss_pct if owner is not None else self.g.cfg.protection.stop_loss_pct
        return tr.initial_stop(entry, side, pct, self.g.markets[sym])

    def _owner_row(self, sym: str) -> PositionRow | None:
        with self.g.db.tx("guardian_read", sym) as tx:
            return tx.scalars(select(PositionRow).where(PositionRow.active_symbol == sym)).first()

    def _send(self, owner: PositionRow | None, sym: str, leg: Leg, cover: Cover, level: Decimal | None) -> None:
        """Record the order first where the position is ours (write-ahead, like the actors do;
        a database that fails must not keep the stop from going out), then send it."""
        self._seq += 1
        pid, epoch = (owner.id, owner.epoch) if owner is not None else ("unowned", 0)
        cid = guardian_cid(pid, epoch, leg, self._seq)
        qty = abs(cover.qty)
        now = time.time()
        if owner is not None:
            try:
                with self.g.db.tx("guardian_write", sym) as tx:
                    tx.add(OrderRow(cid=cid, position_id=pid, epoch=epoch, symbol=sym, leg=leg.value,
                                    side=cover.exit_side, qty=qty, stop_price=level, attempt=1,
                                    status="intent", created_ts=now, updated_ts=now))
                    tx.add(EventRow(ts=now, kind="guardian_emergency", position_id=pid, epoch=epoch,
                                    data={"cid": cid, "leg": leg.value, "stop": str(level), "qty": str(qty)}))
            except Exception as e:
                logger.error("guardian: could not record {} before sending it: {!r}", cid, e)
        req = OrderRequest(cid, sym, leg, cover.exit_side, qty, stop_price=level)
        self.g.gateway.place_order(req, timeout=self.g.cfg.deadlines.venue_call_s)

    def tidy(self, orders, covers: dict[str, Cover]) -> None:
        """Take our emergency stops off once the position's own stop rests beside them (its
        actor placed one without seeing ours), or once the position is gone."""
        ours = [o for o in orders if is_guardian_cid(o.cid) and o.status == "open"]
        if not ours:
            return
        by_symbol: dict[str, list] = {}
        for o in orders:
            by_symbol.setdefault(o.symbol, []).append(o)
        for g in ours:
            c = covers.get(g.symbol)
            pid = position_id_of(g.cid)
            own = c is not None and any(
                o.cid != g.cid and not is_guardian_cid(o.cid) and position_id_of(o.cid) == pid
                and o.leg is Leg.STOP and o.stop_price is not None
                and assess([VenuePosition(g.symbol, c.qty, c.entry)], [o])[g.symbol].protected
                for o in by_symbol[g.symbol])
            if (c is None or own) and g.cid not in self._cancelling:
                self._cancelling.add(g.cid)
                threading.Thread(target=self._cancel, args=(g,), name=f"guardian-tidy {g.symbol}",
                                 daemon=True).start()

    def _cancel(self, o) -> None:
        try:
            self.g.gateway.cancel_order(o.symbol, o.cid, timeout=self.g.cfg.deadlines.venue_call_s)
            logger.info("guardian: {}: emergency stop {} withdrawn; the position's own stop rests", o.symbol, o.cid)
        except Exception as e:
            logger.warning("guardian: could not withdraw {}: {!r}", o.cid, e)
        finally:
            self._cancelling.discard(o.cid)
