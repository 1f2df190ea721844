"""Order and position endpoints of the fake Bybit (a mixin of FakeBybit, on the state it holds),
the venue's error codes, and what tests may inject.

order/create-order.mdx, order/cancel-order.mdx, order/amend-order.mdx, order/open-order.mdx,
order/order-list.mdx, position/position.mdx; codes from docs v5/error.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Iterator

from core.position_types import Leg, attached_cid
from exchange.fakes import bybit_wire as wire
from exchange.gateway import OrderNotFound, OrderRequest, OrderState, Rejected

if TYPE_CHECKING:
    from exchange.fakes.bybit_account import BybitAccountState
    from exchange.paper.engine import PaperEngine

# docs v5/error (retCode → retMsg)
MESSAGES = {
    10001: "params error", 10002: "invalid request, please check your server timestamp or recv_window param",
    10003: "API key is invalid.", 10004: "error sign!", 10006: "Too many visits!",
    110001: "order not exists or too late to cancel", 110007: "ab not enough for new order",
    110017: "Reduce-only rule not satisfied", 110072: "OrderLinkedID is duplicate",
    110092: "expect Rising, but trigger_price[{}] <= current[{}]",
    110093: "expect Falling, but trigger_price[{}] >= current[{}]",
    110094: "Order does not meet minimum order value",
}
# paper engine refusal code → Bybit retCode
_ENGINE_CODES = {-4116: 110072, -2022: 110017, -4164: 110094, -2019: 110007, -1121: 10001, -1111: 10001}
PAGE_DEFAULT, PAGE_MAX = 20, 50  # order/open-order.mdx, order/order-list.mdx: limit [1, 50], default 20


class BybitError(Exception):
    def __init__(self, code: int, msg: str | None = None) -> None:
        super().__init__(msg or MESSAGES.get(code, "error"))
        self.code = code


@dataclass
class Inject:
    """One injected behaviour for requests matching `route` ("POST /v5/order/create", "*")."""

    route: str = "*"
    code: int | None = None  # answer with this retCode (HTTP 200, Bybit's way)
    status: int | None = None  # answer with this HTTP status and no JSON (403: IP ban)
    delay_s: float = 0.0  # answer this much later
    after: bool = False  # process the request first, then delay / fail: the venue *did* it
    when: dict[str, str] = field(default_factory=dict)  # only if these request params match
    hide_s: float = 0.0  # order/create: acknowledged, but invisible to order queries this long
    fill_qty: Decimal | None = None  # order/create (market): fill only this much, then cancel
    working: bool = False  # order/create (market): with fill_qty (or 0) filled, the rest left working
    outcome: str | None = None  # route "trigger": "expire" (the fired stop's market order fills nothing)
    times: int = 1  # 0 = unlimited
    fired: int = 0

    def matches(self, route: str, params: dict[str, str]) -> bool:
        return ((self.route == "*" or self.route == route)
                and all(str(params.get(k)) == v for k, v in self.when.items())
                and (self.times == 0 or self.fired < self.times))


class OrderEndpoints:
    """`POST /v5/order/create|cancel|amend`, `GET /v5/order/realtime|history`, `GET /v5/position/list`."""

    # What these endpoints act on, held by FakeBybit (declared for the type checker only).
    engine: PaperEngine
    account: BybitAccountState
    orders: dict[str, wire.OrderRecord]
    history_delay_s: float
    _ids: Iterator[int]

    if TYPE_CHECKING:
        def _now(self) -> int: ...
        def _symbol(self, params: dict[str, Any]) -> str: ...
        def _linear(self, params: dict[str, Any]) -> None: ...
        def _publish_soon(self, cid: str, fill: bool = False) -> None: ...

    def _create(self, p: dict[str, Any]) -> dict[str, Any]:
        """order/create-order.mdx: answers {orderId, orderLinkId} only ("This request is
        asynchronous"); a market order is IOC and may be cancelled, after a partial fill or none."""
        self._linear(p)
        rule: Inject | None = p.get("_inject")
        sym = self._symbol(p)
        if self.account.hedged(wire.settle_of(sym)) and str(p.get("positionIdx", "0")) == "0":
            raise BybitError(10001, "position idx not match position mode")
        if p.get("orderType") != "Market":
            raise BybitError(10001, "params error: this venue takes Market orders only")
        side = {"Buy": "buy", "Sell": "sell"}.get(p.get("side", ""))
        qty = _dec(p, "qty")
        cid = p.get("orderLinkId") or f"fake-{next(self._ids)}"
        if side is None:
            raise BybitError(10001, "params error: side invalid")
        reduce = p.get("reduceOnly") in (True, "true")
        trigger = _dec(p, "triggerPrice") if p.get("triggerPrice") not in (None, "") else None
        direction = int(p.get("triggerDirection") or 0)
        if trigger is not None and direction not in (1, 2):
            raise BybitError(10001, "params error: TriggerDirection invalid")
        leg = Leg.STOP if trigger is not None else (Leg.EXIT if reduce else Leg.ENTRY)
        now = self._now()
        rec = wire.OrderRecord(str(next(self._ids)), cid, sym, side, qty, leg, trigger, direction, now,
                               now + int((rule.hide_s if rule else 0) * 1000))
        if trigger is not None:
            price = self.engine.price(sym)
            if (direction == 2 and trigger >= price) or (direction == 1 and trigger <= price):
                code = 110093 if direction == 2 else 110092
                raise BybitError(code, MESSAGES[code].format(wire.s(trigger), wire.s(price)))
        attached = self._attached_stop(p, leg)
        if rule is not None and rule.working and leg is not Leg.STOP:
            self._cut_short(rec, rule.fill_qty or Decimal(0), attached, working=True)
        elif rule is not None and rule.fill_qty is not None and leg is not Leg.STOP:
            self._cut_short(rec, rule.fill_qty, attached)
        else:
            self._place(OrderRequest(cid, sym, leg, side, qty, stop_price=trigger, attached_stop=attached))
        self.orders[cid] = rec
        if attached is not None:
            self._record_attached(rec, attached)
        if self.engine.account.orders.get(cid) is not None and self.engine.account.orders[cid].status != "open":
            rec.closed_ms = now
        self._publish_soon(cid, fill=rec.status is None and leg is not Leg.STOP or bool(rec.filled))
        return {"orderId": rec.order_id, "orderLinkId": cid}

    @staticmethod
    def _attached_stop(p: dict[str, Any], leg: Leg) -> Decimal | None:
        """create-order.mdx `stopLoss` on an entry, with `tpslMode` Partial (an order sized to the
        fill; the position-level Full mode is not modelled) and `slTriggerBy` LastPrice (the
        default, and the only price this venue has). "When reduceOnly is true, take profit/stop
        loss cannot be set"."""
        if p.get("stopLoss") in (None, ""):
            return None
        if leg is not Leg.ENTRY:
            raise BybitError(10001, "params error: stopLoss cannot be set on a reduce-only or conditional order")
        if p.get("tpslMode") != "Partial":
            raise BybitError(10001, "params error: this venue models tpslMode=Partial only")
        if p.get("slTriggerBy", "LastPrice") != "LastPrice":
            raise BybitError(10001, "params error: slTriggerBy LastPrice only")
        return _dec(p, "stopLoss")

    def _record_attached(self, entry: wire.OrderRecord, stop: Decimal) -> None:
        """The stop-loss the engine created with the entry's fill, as Bybit lists it."""
        child = self.engine.account.orders.get(attached_cid(entry.cid))
        if child is None:
            return
        now = self._now()
        self.orders[child.cid] = wire.OrderRecord(
            str(next(self._ids)), child.cid, child.symbol, child.side, child.qty, Leg.STOP, stop,
            2 if child.side == "sell" else 1, now, entry.visible_ms, parent=entry.cid)
        self._publish_soon(child.cid)

    def _cut_short(self, rec: wire.OrderRecord, fill: Decimal, attached: Decimal | None = None,
                   working: bool = False) -> None:
        """An IOC market order that found too little liquidity: fill `fill`, cancel the rest
        (its attached stop-loss is sized to what filled: "the qty you actually fill"); or,
        `working`, leave the rest open (v5/enum orderStatus New / PartiallyFilled: the matching
        engine has not finished the order yet) until it is cancelled."""
        if fill > 0:
            part = OrderRequest(rec.cid, rec.symbol, rec.leg, rec.side, fill, attached_stop=attached)
            state = self._place(part)
            rec.avg = state.avg_price
        rec.status, rec.filled = ("open", fill) if working else ("cancelled", fill)
        rec.closed_ms = None if working else self._now()

    def _place(self, req: OrderRequest) -> OrderState:
        try:
            return self.engine.place(req)
        except Rejected as e:
            code = getattr(e, "code", None)
            if code == -2021:
                raise BybitError(110093) from None
            mapped = _ENGINE_CODES.get(code, 10001) if isinstance(code, int) else 10001
            raise BybitError(mapped, str(e).split(" ", 1)[-1]) from None

    def _find(self, p: dict[str, Any]) -> wire.OrderRecord | None:
        cid = p.get("orderLinkId")
        if cid is None and p.get("orderId"):
            cid = next((c for c, r in self.orders.items() if r.order_id == p["orderId"]), None)
        rec = self.orders.get(cid or "")
        if rec is not None and rec.parent and p.get("orderLinkId"):
            return None  # an attached stop has no orderLinkId: only its orderId finds it
        if rec is None or ("symbol" in p and rec.symbol != self._symbol(p)) or rec.visible_ms > self._now():
            return None
        return rec

    def _cancel(self, p):
        """order/cancel-order.mdx: {orderId, orderLinkId}; 110001 if not open (or unknown)."""
        self._linear(p)
        rec = self._find(p)
        live = self.engine.account.orders.get(rec.cid) if rec else None
        if rec is not None and rec.status == "open":  # a market order left working
            rec.status, rec.closed_ms = "cancelled", self._now()
            self._publish_soon(rec.cid)
            return {"orderId": rec.order_id, "orderLinkId": rec.cid}
        if rec is None or live is None or live.status != "open":
            raise BybitError(110001)
        try:
            self.engine.cancel(rec.cid)
        except OrderNotFound:
            raise BybitError(110001) from None
        rec.closed_ms = self._now()
        self._publish_soon(rec.cid)
        return {"orderId": rec.order_id, "orderLinkId": rec.cid}

    def _amend(self, p):
        """order/amend-order.mdx: a resting conditional order's trigger price, in place."""
        self._linear(p)
        rec = self._find(p)
        live = self.engine.account.orders.get(rec.cid) if rec else None
        if rec is None or live is None or live.status != "open" or rec.leg is not Leg.STOP:
            raise BybitError(110001)
        trigger = _dec(p, "triggerPrice")
        self.engine.cancel(rec.cid)
        self._place(OrderRequest(rec.cid, rec.symbol, rec.leg, rec.side, rec.qty, stop_price=trigger))
        rec.trigger_price = trigger
        self._publish_soon(rec.cid)
        return {"orderId": rec.order_id, "orderLinkId": rec.cid}

    def _orders(self, p, *, history: bool):
        """order/open-order.mdx (realtime: open orders; by orderLinkId/orderId also recent
        closed ones, openOnly ignored) and order/order-list.mdx (history: closed orders only,
        "asynchronous … may delay"). Newest first, `limit` [1, 50] default 20, cursor paging."""
        self._linear(p)
        if not any(p.get(k) for k in ("symbol", "settleCoin", "baseCoin")):
            raise BybitError(10001, "Missing some parameters that must be filled in, symbol or settleCoin or baseCoin")
        limit = int(p.get("limit") or PAGE_DEFAULT)
        if not 1 <= limit <= PAGE_MAX:
            raise BybitError(10001, "params error: limit must be in [1, 50]")
        now, by_id = self._now(), bool(p.get("orderLinkId") or p.get("orderId"))
        sym = self._symbol(p) if p.get("symbol") else None
        rows = []
        for rec in sorted(self.orders.values(), key=lambda r: (r.created_ms, r.order_id), reverse=True):
            if rec.visible_ms > now or (sym and rec.symbol != sym) or (by_id and self._find(p) is not rec):
                continue
            if p.get("settleCoin") and wire.settle_of(rec.symbol) != p["settleCoin"]:
                continue
            if p.get("orderFilter") == "StopOrder" and rec.leg is not Leg.STOP:
                continue
            is_open = rec.status == "open" or (rec.status is None
                                               and self.engine.account.orders[rec.cid].status == "open")
            if history and (is_open or (rec.closed_ms or now) + self.history_delay_s * 1000 > now):
                continue
            if not history and not is_open and not by_id:
                continue
            rows.append(rec)
        start = int(p.get("cursor") or 0) if str(p.get("cursor") or "0").isdigit() else 0
        page = rows[start:start + limit]
        more = start + limit < len(rows)
        return {"category": "linear", "list": [wire.order(r, self.engine.account.orders.get(r.cid), now)
                                                 for r in page],
                "nextPageCursor": str(start + limit) if more else ""}

    # ---- positions ---------------------------------------------------------------------

    def _positions(self, p):
        """position/position.mdx: by symbol "regardless of having position or not"; by
        settleCoin only positions of size > 0; in hedge mode one row per side. The venue lists
        linear contracts only, so other categories hold nothing."""
        if p.get("category") in ("inverse", "option"):
            return {"category": p["category"], "list": [], "nextPageCursor": ""}
        self._linear(p)
        if p.get("symbol"):
            syms = [self._symbol(p)]
        elif p.get("settleCoin"):
            held = {v.symbol for v in self.engine.positions()}
            syms = [s for s in self.engine.markets if s in held and wire.settle_of(s) == p["settleCoin"]]
        else:
            raise BybitError(10001, "params error: symbol or settleCoin is required")
        qty = {v.symbol: (v.qty, v.entry_price) for v in self.engine.positions()}
        rows = []
        for sym in syms:
            q, entry = qty.get(sym, (Decimal(0), None))
            lev = self.account.leverage.get(sym, "10")
            if self.account.hedged(wire.settle_of(sym)):
                rows += [wire.position(sym, q if q > 0 else Decimal(0), entry, self.engine.price(sym), lev, 1),
                         wire.position(sym, q if q < 0 else Decimal(0), entry, self.engine.price(sym), lev, 2)]
            else:
                rows.append(wire.position(sym, q, entry, self.engine.price(sym), lev))
        return {"category": "linear", "list": rows[:200], "nextPageCursor": ""}


def _dec(p: dict[str, Any], key: str) -> Decimal:
    try:
        return Decimal(str(p[key]))
    except (KeyError, InvalidOperation):
        raise BybitError(10001, f"params error: {key} invalid") from None
