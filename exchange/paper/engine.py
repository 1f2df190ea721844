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
import time
from dataclasses import asdict
from decimal import Decimal
from typing import Any, Callable

from core.position_types import Leg, attached_cid
from core.types import MarketSpec
from exchange.gateway import Balance, OrderNotFound, OrderRequest, OrderState, VenuePosition
# The records and venue constants live in `account`; importers of this module keep finding them here.
from exchange.paper.account import (CALLBACK_RANGE, FEE_QUANTUM, MAKER_FEE_PCT, TAKER_FEE_PCT, PaperAccount,
                                    PaperOrder, PaperPosition, TriggerOutcome, venue_error)
from exchange.paper.journal import PaperJournal, restore
from exchange.paper.store import PaperStore
from exchange.paper.triggers import crossed, trail
from exchange.paper.window import ProtectionWindow

__all__ = ["CALLBACK_RANGE", "FEE_QUANTUM", "MAKER_FEE_PCT", "TAKER_FEE_PCT", "PaperAccount", "PaperEngine",
           "PaperOrder", "PaperPosition", "TriggerOutcome", "venue_error"]


class PaperEngine:
    def __init__(self, markets: dict[str, MarketSpec], prices: dict[str, Decimal], *,
                 seed: int = 42, volatility: float = 0.0008, slippage_bps: Decimal = Decimal(2),
                 store: PaperStore | None = None, taker_fee_pct: Decimal = TAKER_FEE_PCT,
                 maker_fee_pct: Decimal = MAKER_FEE_PCT, clock: Callable[[], float] = time.monotonic):
        self.markets = markets
        self.account = PaperAccount(prices=dict(prices))
        self._rng = random.Random(seed)
        self._vol = volatility
        self._slip = slippage_bps / Decimal(10000)
        # Every paper fill takes liquidity (market orders, triggered stops): the taker rate.
        # The maker rate is kept for resting limit orders, which this venue does not offer yet.
        self.taker_fee = taker_fee_pct / 100
        self.maker_fee = maker_fee_pct / 100
        self._lock = threading.Lock()
        self._resting: dict[str, dict[str, PaperOrder]] = {}  # open stops by symbol
        # Every restored position reads all positions once: built per call, 5,000 of them
        # cost O(N²) at a cold start. Positions change only on a fill, which drops this.
        self._positions_view: list[VenuePosition] | None = None
        self._listeners: list[Callable[[OrderState], None]] = []
        self.trigger_outcome: TriggerOutcome | None = None  # called with the lock held
        self._window = ProtectionWindow(clock)
        # write-through journal (only with a store): dirty keys → entries → one transaction
        self.store = store
        self._journal = PaperJournal(store, self._lock) if store is not None else None
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

    def trigger_levels(self, symbol: str) -> list[Decimal]:
        """Where this symbol's resting orders would trigger now: stops at their price, armed
        trailing stops at best ∓ callback. A replayed price path stops at each level it
        passes, so an order between two recorded prices fills at its own level."""
        with self._lock:
            out: list[Decimal] = []
            for o in self._resting.get(symbol, {}).values():
                if o.leg is Leg.STOP:
                    assert o.stop_price is not None  # a stop rests only with its price
                    out.append(o.stop_price)
                elif o.leg is Leg.TRAILING and o.activated:
                    assert o.best is not None and o.callback_pct is not None  # set when it armed / rested
                    cb = o.callback_pct / 100
                    out.append(o.best * (1 - cb) if o.side == "sell" else o.best * (1 + cb))
            return out

    def protection_gaps(self) -> list[float]:
        """Per position opened so far: entry fill → first protective stop resting, seconds."""
        with self._lock:
            return self._window.gaps()

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

    def balance(self) -> Balance:
        """Wallet and equity as a USD-M account reports them (unrealized at the last price)."""
        with self._lock:
            acc = self.account
            unrealized = sum(((acc.prices[s] - p.entry) * p.qty for s, p in acc.positions.items()
                              if p.qty != 0 and p.entry is not None), Decimal(0))
            return Balance("USDT", acc.balance, unrealized, acc.balance + unrealized, acc.balance)

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
        if req.close_position:
            return self._place_close_position(req, spec)
        if req.qty <= 0 or spec.round_qty(req.qty) != req.qty or req.qty < spec.min_qty:
            raise venue_error(-1111, f"Quantity {req.qty} does not fit lot size {spec.lot_size}")
        if req.side not in ("buy", "sell"):
            raise venue_error(-1102, f"Bad side {req.side!r}")
        price = self.account.prices[req.symbol]
        order = PaperOrder(req.cid, req.symbol, req.leg, req.side, req.qty, req.stop_price,
                           req.activation, req.callback_pct)
        if req.leg in (Leg.ENTRY, Leg.EXIT):
            return self._place_market(req, spec, order, price), []
        self._check_resting(req, spec, order, price)
        self._rest(order)
        return order.view(), self._trigger(req.symbol, price)

    def _place_market(self, req: OrderRequest, spec: MarketSpec, order: PaperOrder, price: Decimal) -> OrderState:
        """An entry or exit fills at once at `price` (an entry's attached stop rests at its fill)."""
        if req.leg is Leg.ENTRY and req.qty * price < spec.min_notional:
            raise venue_error(-4164, f"Order's notional must be no smaller than {spec.min_notional}")
        exit_side = "sell" if req.side == "buy" else "buy"
        if req.attached_stop is not None and crossed(exit_side, req.attached_stop, price):
            raise venue_error(-2021, f"Attached stop-loss {req.attached_stop} would immediately trigger.")
        was_flat = not self._held(req.symbol)
        fill = self._fill(order, price, reduce_only=req.reduce_only)
        if fill is None:
            raise venue_error(-2022, "ReduceOnly Order is rejected.")
        self.account.orders[req.cid] = order
        if req.attached_stop is not None:  # created by the venue at the fill, tied to its entry
            self._rest(PaperOrder(attached_cid(req.cid), req.symbol, Leg.STOP, exit_side,
                                  order.filled_qty, req.attached_stop, parent=req.cid))
        if req.leg is Leg.ENTRY and was_flat and self._held(req.symbol):
            self._window.opened(req.symbol, any(o.leg is Leg.STOP and o.side == exit_side for o in
                                                self._resting.get(req.symbol, {}).values()))
        return order.view()

    def _check_resting(self, req: OrderRequest, spec: MarketSpec, order: PaperOrder, price: Decimal) -> None:
        """A stop or trailing stop may rest only where it would not fire at once; an unarmed
        trailing stop without activation is armed at `price`."""
        if req.leg is Leg.STOP:
            if req.stop_price is None or req.stop_price != spec.floor_price(req.stop_price):
                raise venue_error(-1111, f"Stop price {req.stop_price} does not fit tick {spec.tick_size}")
            if crossed(req.side, req.stop_price, price):
                raise venue_error(-2021, "Order would immediately trigger.")
        elif req.leg is Leg.TRAILING:
            lo, hi = CALLBACK_RANGE
            if req.callback_pct is None or not lo <= req.callback_pct <= hi:
                raise venue_error(-2007, f"Invalid callBack rate {req.callback_pct} ({lo}–{hi})")
            if req.activation is None:
                order.activated, order.best = True, price  # the venue arms it at the latest price
            elif (req.activation <= price) if req.side == "sell" else (req.activation >= price):
                # Binance: a SELL trailing needs activatePrice above the latest price, a BUY below.
                raise venue_error(-2021, "Order would immediately trigger.")

    def _place_close_position(self, req: OrderRequest, spec: MarketSpec) -> tuple[OrderState, list[OrderState]]:
        """A STOP_MARKET with closePosition: no quantity and no margin check when placed, so it
        may rest on a flat symbol; one per symbol and side (Binance -4130); it fires on the
        whole position it finds on its side (`_trigger`)."""
        price = self.account.prices[req.symbol]
        if req.leg is not Leg.STOP:
            raise venue_error(-4136, f"Target strategy invalid for orderType {req.leg.name}, closePosition true")
        if req.stop_price is None or req.stop_price != spec.floor_price(req.stop_price):
            raise venue_error(-1111, f"Stop price {req.stop_price} does not fit tick {spec.tick_size}")
        if any(o.close_position and o.side == req.side for o in self._resting.get(req.symbol, {}).values()):
            raise venue_error(-4130, "An open stop or take profit order with GTE and closePosition "
                                     "in the direction is existing.")
        if crossed(req.side, req.stop_price, price):
            raise venue_error(-2021, "Order would immediately trigger.")
        order = PaperOrder(req.cid, req.symbol, Leg.STOP, req.side, Decimal(0), req.stop_price,
                           close_position=True)
        self._rest(order)
        return order.view(), []

    def _rest(self, order: PaperOrder) -> None:
        self.account.orders[order.cid] = order
        self._touch("order", order.cid)
        self._resting.setdefault(order.symbol, {})[order.cid] = order
        if order.leg is Leg.STOP and self._window.naked(order.symbol) and self._closes(order):
            self._window.ended(order.symbol)

    def _held(self, symbol: str) -> bool:
        pos = self.account.positions.get(symbol)
        return pos is not None and pos.qty != 0

    def _closes(self, order: PaperOrder) -> bool:
        """Whether a stop closes the symbol's current position (a sell closes a long)."""
        pos = self.account.positions.get(order.symbol)
        return pos is not None and pos.qty != 0 and (pos.qty > 0) == (order.side == "sell")


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
        fee = (fill * abs(signed) * self.taker_fee).quantize(FEE_QUANTUM)
        acc = self.account
        acc.fees_paid += fee
        acc.balance -= fee
        if pos.qty != 0 and (pos.qty > 0) != (signed > 0):  # reducing: realize P&L
            assert pos.entry is not None  # a position that holds a quantity has its entry price
            closed = min(abs(signed), abs(pos.qty))
            direction = 1 if pos.qty > 0 else -1
            gross = (fill - pos.entry) * closed * direction
            acc.realized_pnl += gross
            acc.balance += gross
            pos.entry = pos.entry if new_qty != 0 else None
        elif pos.qty == 0:
            pos.entry = fill
        else:  # adding: the entry becomes the quantity-weighted average
            assert pos.entry is not None
            pos.entry = (pos.entry * abs(pos.qty) + fill * abs(signed)) / abs(new_qty)
        pos.qty = new_qty
        if new_qty == 0:  # closed: if no stop ever rested, its whole life was the window
            self._window.ended(order.symbol)
        self._positions_view = None
        order.filled_qty, order.avg_price, order.fee = abs(signed), fill, fee
        self._touch("position", order.symbol)
        for key in ("realized_pnl", "fees_paid", "balance"):
            self._touch("meta", key)
        if self._journal is not None:
            self._journal.trade(order.cid, order.symbol, order.side, abs(signed), fill)
        self._finish(order, "filled")
        return fill

    def _finish(self, order: PaperOrder, status: str) -> None:
        order.status = status
        self._touch("order", order.cid)
        self._resting.get(order.symbol, {}).pop(order.cid, None)

    def _trigger(self, symbol: str, price: Decimal) -> list[OrderState]:
        fired: list[OrderState] = []
        for order in list(self._resting.get(symbol, {}).values()):
            if order.leg is Leg.STOP:
                assert order.stop_price is not None  # a stop rests only with its price
                hit = crossed(order.side, order.stop_price, price)
            elif order.leg is Leg.TRAILING:
                before = (order.activated, order.best)
                hit = trail(order, price)
                if (order.activated, order.best) != before:
                    self._touch("order", order.cid)
            else:
                continue
            if hit:
                if order.close_position:  # the whole position on its side, or nothing to close
                    order.qty = abs(self.account.positions[symbol].qty) if self._closes(order) else Decimal(0)
                outcome = self.trigger_outcome(order) if self.trigger_outcome is not None else "fill"
                if outcome == "hold":
                    self._resting[symbol].pop(order.cid, None)
                elif outcome == "expire" or order.qty == 0 or self._fill(order, price, reduce_only=True) is None:
                    self._finish(order, "expired")
                fired.append(order.view())
        return fired

    def _notify(self, updates: list[OrderState]) -> None:
        for u in updates:
            for fn in self._listeners:
                fn(u)

    # ---- durability (with a store) --------------------------------------------------------

    def _touch(self, kind: str, key: str) -> None:
        """Mark a record changed (orders by client id, the rest by name); lock held."""
        if self._journal is not None:
            self._journal.touch(kind, key)

    def _seal(self) -> int:
        """Journal what changed; lock held. Returns the journal position the caller must see
        written before it answers (0 without a store)."""
        return 0 if self._journal is None else self._journal.seal(self.account)

    def _persist(self, mark: int) -> None:
        if self._journal is not None:
            self._journal.persist(mark)

    def _restore(self, store: PaperStore) -> None:
        """Resume the account the store remembers; its open stops rest again."""
        assert self._journal is not None
        self._journal.trade_seq = restore(store, self.markets, self.account)
        for order in self.account.orders.values():
            if order.status == "open" and order.leg in (Leg.STOP, Leg.TRAILING):
                self._resting.setdefault(order.symbol, {})[order.cid] = order

    def close(self) -> None:
        if self._journal is not None:
            self._journal.close()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return asdict(self.account)
