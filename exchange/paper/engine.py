"""The paper matching engine: prices, positions and resting orders of one simulated account.

It behaves like a USD-M futures venue where it matters to protection: reduce-only stops that
trigger when crossed, a native trailing-stop type, client ids unique among open orders, and
refusals with the venue's own error codes. Its lock guards only in-memory state for
microseconds; latency is simulated by the gateway in the caller's thread, outside it.

With a `PaperStore` the account outlives the process, as a real venue's does: every mutation
is journaled under the lock and written through (group commit, outside the lock) before the
call that made it returns, so a caller never sees an answer the venue would forget.
"""
from __future__ import annotations

import math
import random
import threading
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Callable

from core.position_types import Leg
from core.types import MarketSpec
from exchange.gateway import OrderNotFound, OrderRequest, OrderState, Rejected, VenuePosition
from exchange.paper.store import ORDER_FIELDS, Entry, PaperStore

CALLBACK_RANGE = (Decimal("0.1"), Decimal("10"))


@dataclass(slots=True)
class PaperOrder:
    cid: str
    symbol: str
    leg: Leg
    side: str
    qty: Decimal
    stop_price: Decimal | None = None
    activation: Decimal | None = None
    callback_pct: Decimal | None = None
    status: str = "open"
    filled_qty: Decimal = Decimal(0)
    avg_price: Decimal | None = None
    activated: bool = False
    best: Decimal | None = None

    def view(self) -> OrderState:
        return OrderState(self.cid, self.symbol, self.leg, self.status, self.filled_qty,
                          self.avg_price, self.stop_price, self.side, self.qty,
                          self.leg is not Leg.ENTRY, self.activation, self.callback_pct,
                          self.activated if self.leg is Leg.TRAILING else None, self.best)


@dataclass(slots=True)
class PaperPosition:
    qty: Decimal = Decimal(0)  # signed
    entry: Decimal | None = None


@dataclass
class PaperAccount:
    """Everything the venue remembers; plain data so it can be saved and restored."""

    prices: dict[str, Decimal]
    positions: dict[str, PaperPosition] = field(default_factory=dict)
    orders: dict[str, PaperOrder] = field(default_factory=dict)
    balance: Decimal = Decimal(10000)
    realized_pnl: Decimal = Decimal(0)


def venue_error(code: int, msg: str) -> Rejected:
    """A refusal carrying the Binance-style code, so adapters and tests can map it."""
    err = Rejected(f"{code} {msg}")
    err.code = code  # type: ignore[attr-defined]
    return err


class PaperEngine:
    def __init__(self, markets: dict[str, MarketSpec], prices: dict[str, Decimal], *,
                 seed: int = 42, volatility: float = 0.0008, slippage_bps: Decimal = Decimal(2),
                 store: PaperStore | None = None):
        self.markets = markets
        self.account = PaperAccount(prices=dict(prices))
        self._rng = random.Random(seed)
        self._vol = volatility
        self._slip = slippage_bps / Decimal(10000)
        self._lock = threading.Lock()
        self._resting: dict[str, dict[str, PaperOrder]] = {}  # open stops by symbol
        # Every restored position reads all positions once: built per call, 5,000 of them
        # cost O(N²) at a cold start. Positions change only on a fill, which drops this.
        self._positions_view: list[VenuePosition] | None = None
        self._listeners: list[Callable[[OrderState], None]] = []
        # write-through journal (only with a store): dirty keys → entries → one transaction
        self.store = store
        self._store_lock = threading.Lock()  # one writer; never held together with I/O of others
        self._dirty: dict[tuple[str, object], None] = {}
        self._trades: list[Entry] = []
        self._journal: list[Entry] = []
        self._appended = self._written = self._trade_seq = 0
        if store is not None:
            self._restore(store)

    # ---- market ------------------------------------------------------------------------

    def add_listener(self, fn: Callable[[OrderState], None]) -> None:
        self._listeners = [*self._listeners, fn]

    def price(self, symbol: str) -> Decimal:
        self._spec(symbol)
        return self.account.prices[symbol]

    def set_price(self, symbol: str, price: Decimal) -> None:
        """Move one symbol's price and trigger whatever it crosses."""
        with self._lock:
            self.account.prices[symbol] = price
            self._touch("price", symbol)
            updates = self._trigger(symbol, price)
            mark = self._seal()
        self._persist(mark)
        self._notify(updates)

    def step(self, dt: float = 1.0) -> dict[str, Decimal]:
        """One random-walk step for every symbol; returns the new prices."""
        updates: list[OrderState] = []
        with self._lock:
            for sym, spec in self.markets.items():
                old = self.account.prices[sym]
                move = math.exp(self._vol * math.sqrt(dt) * self._rng.gauss(0.0, 1.0))
                new = spec.nearest_price(old * Decimal(repr(move)))  # unbiased: no drift from rounding
                if new <= 0:
                    new = spec.tick_size
                if new != old:
                    self.account.prices[sym] = new
                    self._touch("price", sym)
                updates += self._trigger(sym, new)
            prices = dict(self.account.prices)
            mark = self._seal()
        self._persist(mark)
        self._notify(updates)
        return prices

    # ---- orders ------------------------------------------------------------------------

    def place(self, req: OrderRequest) -> OrderState:
        with self._lock:
            try:
                state, updates = self._place(req)
            finally:
                mark = self._seal()
        self._persist(mark)
        self._notify(updates)
        return state

    def cancel(self, cid: str) -> OrderState:
        with self._lock:
            order = self.account.orders.get(cid)
            if order is None:
                raise OrderNotFound(f"-2011 Unknown order sent ({cid})")
            if order.status == "open":
                self._finish(order, "cancelled")
            view, mark = order.view(), self._seal()
        self._persist(mark)
        return view

    def fetch(self, cid: str) -> OrderState:
        with self._lock:
            order = self.account.orders.get(cid)
            if order is None:
                raise OrderNotFound(f"-2013 Order does not exist ({cid})")
            return order.view()

    def open_orders(self, symbol: str | None = None) -> list[OrderState]:
        """Entries and exits fill at once, so what is open is exactly what rests."""
        with self._lock:
            if symbol is not None:
                return [o.view() for o in self._resting.get(symbol, {}).values()]
            return [o.view() for orders in self._resting.values() for o in orders.values()]

    def positions(self) -> list[VenuePosition]:
        with self._lock:
            if self._positions_view is None:
                self._positions_view = [VenuePosition(s, p.qty, p.entry)
                                        for s, p in self.account.positions.items() if p.qty != 0]
            return list(self._positions_view)

    # ---- internals (lock held) ---------------------------------------------------------

    def _spec(self, symbol: str) -> MarketSpec:
        spec = self.markets.get(symbol)
        if spec is None:
            raise venue_error(-1121, f"Invalid symbol {symbol}")
        return spec

    def _place(self, req: OrderRequest) -> tuple[OrderState, list[OrderState]]:
        spec = self._spec(req.symbol)
        existing = self.account.orders.get(req.cid)
        if existing is not None and existing.status == "open":
            raise venue_error(-4116, f"ClientOrderId is duplicated ({req.cid})")
        if req.qty <= 0 or spec.round_qty(req.qty) != req.qty or req.qty < spec.min_qty:
            raise venue_error(-1111, f"Quantity {req.qty} does not fit lot size {spec.lot_size}")
        if req.side not in ("buy", "sell"):
            raise venue_error(-1102, f"Bad side {req.side!r}")
        price = self.account.prices[req.symbol]
        order = PaperOrder(req.cid, req.symbol, req.leg, req.side, req.qty, req.stop_price,
                           req.activation, req.callback_pct)
        if req.leg in (Leg.ENTRY, Leg.EXIT):
            if req.leg is Leg.ENTRY and req.qty * price < spec.min_notional:
                raise venue_error(-4164, f"Order's notional must be no smaller than {spec.min_notional}")
            fill = self._fill(order, price, reduce_only=req.reduce_only)
            if fill is None:
                raise venue_error(-2022, "ReduceOnly Order is rejected.")
            self.account.orders[req.cid] = order
            return order.view(), []
        if req.leg is Leg.STOP:
            if req.stop_price is None or req.stop_price != spec.floor_price(req.stop_price):
                raise venue_error(-1111, f"Stop price {req.stop_price} does not fit tick {spec.tick_size}")
            if self._crossed(req.side, req.stop_price, price):
                raise venue_error(-2021, "Order would immediately trigger.")
        elif req.leg is Leg.TRAILING:
            lo, hi = CALLBACK_RANGE
            if req.callback_pct is None or not lo <= req.callback_pct <= hi:
                raise venue_error(-2007, f"Invalid callBack rate {req.callback_pct} (0.1–10)")
            if req.activation is None:
                order.activated, order.best = True, price
        self.account.orders[req.cid] = order
        self._touch("order", order)
        self._resting.setdefault(req.symbol, {})[req.cid] = order
        return order.view(), self._trigger(req.symbol, price)

    @staticmethod
    def _crossed(side: str, stop: Decimal, price: Decimal) -> bool:
        """A sell stop (closing a long) fires at or below its price, a buy stop at or above."""
        return price <= stop if side == "sell" else price >= stop

    def _fill(self, order: PaperOrder, price: Decimal, reduce_only: bool) -> Decimal | None:
        spec = self.markets[order.symbol]
        pos = self.account.positions.get(order.symbol) or PaperPosition()
        signed = order.qty if order.side == "buy" else -order.qty
        if reduce_only:
            if pos.qty == 0 or (pos.qty > 0) == (signed > 0):
                return None
            signed = min(signed, -pos.qty) if signed > 0 else max(signed, -pos.qty)
        self.account.positions[order.symbol] = pos  # a refused reduce-only leaves no trace
        slip = self._slip if signed > 0 else -self._slip
        fill = spec.floor_price(price * (1 + slip)) if signed > 0 else spec.ceil_price(price * (1 + slip))
        new_qty = pos.qty + signed
        if pos.qty != 0 and (pos.qty > 0) != (signed > 0):  # reducing: realize P&L
            closed = min(abs(signed), abs(pos.qty))
            direction = 1 if pos.qty > 0 else -1
            self.account.realized_pnl += (fill - pos.entry) * closed * direction
            pos.entry = pos.entry if new_qty != 0 else None
        else:
            pos.entry = fill if pos.qty == 0 else (pos.entry * abs(pos.qty) + fill * abs(signed)) / abs(new_qty)
        pos.qty = new_qty
        self._positions_view = None
        order.filled_qty, order.avg_price = abs(signed), fill
        self._touch("position", order.symbol)
        self._touch("meta", "realized_pnl")
        if self.store is not None:
            self._trade_seq += 1
            self._trades.append(("trade", self._trade_seq, (order.cid, order.symbol, order.side, abs(signed), fill)))
        self._finish(order, "filled")
        return fill

    def _finish(self, order: PaperOrder, status: str) -> None:
        order.status = status
        self._touch("order", order)
        self._resting.get(order.symbol, {}).pop(order.cid, None)

    def _trigger(self, symbol: str, price: Decimal) -> list[OrderState]:
        fired: list[OrderState] = []
        for order in list(self._resting.get(symbol, {}).values()):
            if order.leg is Leg.STOP:
                hit = self._crossed(order.side, order.stop_price, price)
            elif order.leg is Leg.TRAILING:
                before = (order.activated, order.best)
                hit = self._trail(order, price)
                if (order.activated, order.best) != before:
                    self._touch("order", order)
            else:
                continue
            if hit:
                if self._fill(order, price, reduce_only=True) is None:
                    self._finish(order, "expired")
                fired.append(order.view())
        return fired

    @staticmethod
    def _trail(order: PaperOrder, price: Decimal) -> bool:
        closes_long = order.side == "sell"
        if not order.activated:
            if order.activation is not None and (price >= order.activation if closes_long
                                                 else price <= order.activation):
                order.activated, order.best = True, price
            return False
        order.best = max(order.best, price) if closes_long else min(order.best, price)
        cb = order.callback_pct / 100
        return price <= order.best * (1 - cb) if closes_long else price >= order.best * (1 + cb)

    def _notify(self, updates: list[OrderState]) -> None:
        for u in updates:
            for fn in self._listeners:
                fn(u)

    # ---- durability (with a store) --------------------------------------------------------

    def _touch(self, kind: str, key) -> None:
        """Mark a record changed (orders by client id, the rest by name); lock held."""
        if self.store is not None:
            self._dirty[(kind, key.cid if kind == "order" else key)] = None

    def _seal(self) -> int:
        """Turn what changed into journal entries (values copied now); lock held.
        Returns the journal position the caller must see written before it answers."""
        if self.store is None:
            return 0
        acc, n0 = self.account, len(self._journal)
        for kind, key in self._dirty:
            if kind == "order":
                if (o := acc.orders.get(key)) is not None:
                    self._journal.append(("order", key, tuple(getattr(o, f) for f in ORDER_FIELDS)))
            elif kind == "position":
                pos = acc.positions[key]
                self._journal.append(("position", key, (pos.qty, pos.entry)))
            elif kind == "price":
                self._journal.append(("price", key, acc.prices[key]))
            else:
                self._journal.append(("meta", key, getattr(acc, key)))
        self._journal += self._trades
        self._appended += len(self._journal) - n0
        self._dirty.clear()
        self._trades = []
        return self._appended

    def _persist(self, mark: int) -> None:
        """Group commit: whoever takes the store lock writes everything journaled so far, in
        order, in one transaction; later callers whose entries are already written return."""
        if self.store is None:
            return
        with self._store_lock:
            if self._written >= mark:
                return
            with self._lock:
                batch, self._journal = self._journal, []
            try:
                self.store.write(self._written, batch)
            except BaseException:
                with self._lock:
                    self._journal = batch + self._journal
                raise
            self._written += len(batch)

    def _restore(self, store: PaperStore) -> None:
        """Resume the account the store remembers (prices, positions, orders, P&L)."""
        saved = store.load()
        unknown = sorted({s for s, (q, _e) in saved.positions.items() if q != 0 and s not in self.markets}
                         | {o["symbol"] for o in saved.orders if o["status"] == "open"
                            and o["symbol"] not in self.markets})
        if unknown:
            raise RuntimeError(
                f"paper venue state {store.path} holds positions or open orders on symbols this "
                f"universe lacks ({', '.join(unknown[:5])}{'…' if len(unknown) > 5 else ''}); start "
                f"with the same paper.extra_symbols, or move the file away for a fresh account")
        acc = self.account
        acc.prices.update({s: p for s, p in saved.prices.items() if s in self.markets})
        acc.positions = {s: PaperPosition(q, e) for s, (q, e) in saved.positions.items()}
        for o in saved.orders:
            order = PaperOrder(**(o | {"leg": Leg(o["leg"])}))
            acc.orders[order.cid] = order
            if order.status == "open" and order.leg in (Leg.STOP, Leg.TRAILING):
                self._resting.setdefault(order.symbol, {})[order.cid] = order
        acc.realized_pnl = Decimal(saved.meta.get("realized_pnl", acc.realized_pnl))
        acc.balance = Decimal(saved.meta.get("balance", acc.balance))
        self._trade_seq = saved.trades
        if "balance" not in saved.meta:
            store.write(0, [("meta", "balance", acc.balance)])

    def close(self) -> None:
        if self.store is not None:
            with self._store_lock:
                self.store.close()

    def snapshot(self) -> dict:
        with self._lock:
            return asdict(self.account)
