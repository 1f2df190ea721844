"""The fake Binance venue's algo service: what it remembers of each algo order beyond the paper
engine's order (its algo id, trigger time, a hang between trigger and fill, the market order a
trigger placed), how it answers for them, and the events a fired stop streams."""
from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass
from decimal import Decimal
from typing import Callable

from exchange.fakes import binance_events as events
from exchange.fakes import binance_wire as wire
from exchange.gateway import OrderState
from exchange.paper.engine import PaperEngine, PaperOrder

# What an injected "trigger" rule can make a fired stop do besides fill (PaperEngine.trigger_outcome).
HELD = {"triggering": "TRIGGERING", "triggered": "TRIGGERED"}


@dataclass
class AlgoMeta:
    algo_id: int
    trigger_ms: int = 0
    held: str | None = None  # TRIGGERING / TRIGGERED: fired, its market order never filled
    child: wire.Child | None = None


class AlgoBook:
    def __init__(self, engine: PaperEngine, ids: itertools.count, now_ms: Callable[[], int],
                 publish: Callable[..., None], pick_outcome: Callable[[PaperOrder], str | None]) -> None:
        self.engine = engine
        self._ids, self._now, self._publish, self._pick = ids, now_ms, publish, pick_outcome
        self._lock = threading.Lock()  # REST answers on the venue loop, triggers on any thread
        self.meta: dict[str, AlgoMeta] = {}  # client ids placed as algo orders
        self._children: dict[int, str] = {}  # a triggered algo order's actualOrderId -> its client id
        engine.trigger_outcome = self._trigger_outcome
        engine.add_listener(self._on_engine_update)

    def __contains__(self, cid: str) -> bool:
        return cid in self.meta

    def add(self, cid: str) -> AlgoMeta:
        with self._lock:  # known as an algo order before a trigger can see it
            self.meta[cid] = AlgoMeta(next(self._ids))
            return self.meta[cid]

    def drop(self, cid: str) -> None:
        with self._lock:
            self.meta.pop(cid, None)

    def by_algo_id(self, algo_id: str | None) -> str | None:
        return next((c for c, m in list(self.meta.items()) if str(m.algo_id) == algo_id), None)

    def held(self) -> set[str]:
        with self._lock:
            return {c for c, m in self.meta.items() if m.held}

    def view(self, o: PaperOrder) -> dict:
        meta = self.meta[o.cid]
        status = meta.held if o.status == "open" and meta.held else None
        return wire.algo_order(o, meta.algo_id, self.child(o), self._now(), status=status, trigger_ms=meta.trigger_ms)

    def child(self, o: PaperOrder) -> wire.Child | None:
        """The market order a triggered algo order placed (created when first asked for)."""
        if o.status not in ("filled", "expired"):
            return None
        with self._lock:
            meta = self.meta[o.cid]
            if meta.child is None:
                oid = next(self._ids)
                meta.child = wire.Child(oid, f"autoTrig-{oid}", "FILLED" if o.status == "filled" else "EXPIRED",
                                        o.filled_qty or Decimal(0), o.avg_price)
                self._children[oid] = o.cid
                meta.trigger_ms = meta.trigger_ms or self._now()
            return meta.child

    def child_view(self, order_id: str) -> dict | None:
        """Query Order by orderId for a child order, or None if it is not one."""
        cid = self._children.get(int(order_id)) if order_id.isdigit() else None
        if cid is None:
            return None
        parent = self.engine.account.orders[cid]
        child = self.child(parent)
        if child is None:
            return None
        return wire.child_order(child, parent, self._now())

    # ---- triggered stops (engine hooks) ------------------------------------------------

    def _trigger_outcome(self, order: PaperOrder) -> str:
        """Called with the engine's lock held: what this fired stop does."""
        outcome = self._pick(order) or "fill"
        meta = self.meta.get(order.cid)
        if meta is not None:
            meta.trigger_ms = self._now()
            if outcome in HELD:
                meta.held = HELD[outcome]
        return "hold" if outcome in HELD else outcome

    def _on_engine_update(self, state: OrderState) -> None:
        """A stop fired: stream what Binance streams — ALGO_UPDATE TRIGGERING, TRIGGERED, the
        market order's ORDER_TRADE_UPDATE, ACCOUNT_UPDATE, ALGO_UPDATE FINISHED with ai/ap/aq."""
        meta = self.meta.get(state.cid)
        o = self.engine.account.orders.get(state.cid)
        if meta is None or o is None:
            return
        now, aid, t = self._now(), meta.algo_id, meta.trigger_ms
        if meta.held:
            seq = ["TRIGGERING"] if meta.held == "TRIGGERING" else ["TRIGGERING", "TRIGGERED"]
            self._publish(*(events.algo_update(o, aid, x, None, now, t) for x in seq))
            return
        child = self.child(o)
        if child is None:
            return
        filled = child.qty if child.status == "FILLED" else Decimal(0)
        out = [events.algo_update(o, aid, "TRIGGERING", None, now, t),
               events.algo_update(o, aid, "TRIGGERED", child, now, t),
               events.order_trade_update(child.order_id, child.cid, o.symbol, o.side, o.qty, "NEW", Decimal(0),
                                         None, True, now),
               events.order_trade_update(child.order_id, child.cid, o.symbol, o.side, o.qty, child.status,
                                         filled, child.avg_price, True, now)]
        if filled:
            out.append(events.account_update(self.engine.positions(), self.engine.account.balance, now))
        out.append(events.algo_update(o, aid, "FINISHED", child, now, t))
        self._publish(*out)
