"""The paper engine's write-through journal: what changed under the engine's lock, written
before the call that changed it returns.

Mutations mark records dirty (orders by client id, the rest by name); sealing turns them into
journal entries with their values copied while the lock is held; persisting writes every entry
sealed so far in one transaction (group commit), outside the lock, so a caller never sees an
answer the venue would forget and the lock is never held across I/O.
"""
from __future__ import annotations

import threading
from decimal import Decimal

from core.position_types import Leg
from core.types import MarketSpec
from exchange.paper.account import PaperAccount, PaperOrder, PaperPosition
from exchange.paper.store import ORDER_FIELDS, Entry, PaperStore


class PaperJournal:
    """Dirty keys → entries → one transaction, for one engine and its store."""

    def __init__(self, store: PaperStore, lock: threading.Lock) -> None:
        self.store = store
        self._lock = lock  # the engine's: guards the account and the entries not yet written
        self._store_lock = threading.Lock()  # one writer; never held together with I/O of others
        self._dirty: dict[tuple[str, str], None] = {}
        self._trades: list[Entry] = []
        self._entries: list[Entry] = []
        self._appended = self._written = 0
        self.trade_seq = 0

    def touch(self, kind: str, key: str) -> None:
        """Mark a record changed; lock held."""
        self._dirty[(kind, key)] = None

    def trade(self, cid: str, symbol: str, side: str, qty: Decimal, price: Decimal) -> None:
        """Record one fill in the venue's trade history; lock held."""
        self.trade_seq += 1
        self._trades.append(("trade", self.trade_seq, (cid, symbol, side, qty, price)))

    def seal(self, acc: PaperAccount) -> int:
        """Turn what changed into journal entries (values copied now); lock held.
        Returns the journal position the caller must see written before it answers."""
        n0 = len(self._entries)
        for kind, key in self._dirty:
            if kind == "order":
                if (o := acc.orders.get(key)) is not None:
                    self._entries.append(("order", key, tuple(getattr(o, f) for f in ORDER_FIELDS)))
            elif kind == "position":
                pos = acc.positions[key]
                self._entries.append(("position", key, (pos.qty, pos.entry)))
            elif kind == "price":
                self._entries.append(("price", key, acc.prices[key]))
            else:
                self._entries.append(("meta", key, getattr(acc, key)))
        self._entries += self._trades
        self._appended += len(self._entries) - n0
        self._dirty.clear()
        self._trades = []
        return self._appended

    def persist(self, mark: int) -> None:
        """Group commit: whoever takes the store lock writes everything journaled so far, in
        order, in one transaction; later callers whose entries are already written return."""
        with self._store_lock:
            if self._written >= mark:
                return
            with self._lock:
                batch, self._entries = self._entries, []
            try:
                self.store.write(self._written, batch)
            except BaseException:
                with self._lock:
                    self._entries = batch + self._entries
                raise
            self._written += len(batch)

    def close(self) -> None:
        with self._store_lock:
            self.store.close()


def restore(store: PaperStore, markets: dict[str, MarketSpec], acc: PaperAccount) -> int:
    """Resume into `acc` the account the store remembers (prices, positions, orders, P&L);
    returns the number of trades it has recorded."""
    saved = store.load()
    unknown = sorted({s for s, (q, _e) in saved.positions.items() if q != 0 and s not in markets}
                     | {o["symbol"] for o in saved.orders if o["status"] == "open"
                        and o["symbol"] not in markets})
    if unknown:
        raise RuntimeError(
            f"paper venue state {store.path} holds positions or open orders on symbols this "
            f"universe lacks ({', '.join(unknown[:5])}{'…' if len(unknown) > 5 else ''}); start "
            f"with the same paper.extra_symbols, or move the file away for a fresh account")
    acc.prices.update({s: p for s, p in saved.prices.items() if s in markets})
    acc.positions = {s: PaperPosition(q, e) for s, (q, e) in saved.positions.items()}
    for o in saved.orders:
        order = PaperOrder(**(o | {"leg": Leg(o["leg"])}))
        acc.orders[order.cid] = order
    acc.realized_pnl = Decimal(saved.meta.get("realized_pnl", acc.realized_pnl))
    acc.balance = Decimal(saved.meta.get("balance", acc.balance))
    acc.fees_paid = Decimal(saved.meta.get("fees_paid", acc.fees_paid))
    if "balance" not in saved.meta:
        store.write(0, [("meta", "balance", acc.balance)])
    return saved.trades
