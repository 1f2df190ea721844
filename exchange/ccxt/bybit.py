"""Bybit v5 linear perpetuals: lookups by orderLinkId, attached stop-losses known by their
entry's id, cursor paging, reads per settle coin, and Bybit's request budget."""
from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from typing import Any

import ccxt.async_support as ccxt

from core.client_ids import attached_entry_cid
from core.position_types import Leg, attached_cid, leg_of
from exchange.ccxt.errors import venue_code
from exchange.ccxt.pacing import PerSecond
from exchange.ccxt.venue_base import Order, Venue, dec, first_dec
from exchange.gateway import OrderRequest, OrderState, Retryable, VenuePosition

# this means something is wrong with the account, not that we should keep reading.
BYBIT_PAGE = 50
BYBIT_MAX_PAGES = 40
# Per second per UID, each of /v5/order/create, /amend, /cancel (rate-limit: "API Rate Limit Table").
BYBIT_WRITES_PER_S = 10
# HTTP 403 is an IP ban (rate-limit: "IP Rate Limit", usually 30 minutes): hold everything at
# least ten minutes rather than hammer the venue once a second.
BYBIT_BAN_HOLD_S = 600.0


def _header(headers: dict[str, str], name: str) -> str | None:
    return next((v for k, v in headers.items() if k.lower() == name.lower()), None)


class BybitLinear(Venue):
    """Bybit v5 linear perpetuals. No native percent trailing: the service emulates it.

    Linear covers USDT- and USDC-settled contracts, and Bybit answers account-wide reads
    (positions, open orders) for one settle coin at a time: every read covers every settle
    coin of the markets we trade, or a USDC position would look closed."""

    ccxt_id = "bybit"
    key_env = ("BYBIT_API_KEY", "BYBIT_API_SECRET")
    supports_native_trailing = False
    # create-order.mdx: `stopLoss` on the entry, created by the venue at its fill.
    entry_modes = ("attached", "after_fill")
    # Deliberately no trailingPercent: ccxt would pass it through and Bybit would turn the
    # order into a reduce-only market order that closes the position at once.
    allowed_params = frozenset({"clientOrderId", "reduceOnly", "stopLossPrice", "stopLoss", "tpslMode"})
    avg_keys = ("avgPrice",)
    filled_keys = ("cumExecQty",)

    def __init__(self) -> None:
        self._pacers = {kind: PerSecond(BYBIT_WRITES_PER_S, 1.0, name=f"bybit order/{kind}")
                        for kind in ("create", "cancel", "amend")}
        # Settle coins that may hold a position of ours: all of them until the first read, then
        # those holding one and those we ever traded in. Each costs a request on every poll.
        self._coins: set[str] | None = None
        self._traded: set[str] = set()

    def order_args(self, req: OrderRequest) -> tuple[str, dict[str, Any]]:
        out = super().order_args(req)
        self._traded.add(req.symbol.rsplit(":", 1)[-1])
        return out

    def configure(self, ex, *, api_url, ws_url, demo, sandbox) -> None:
        ex.options["fetchMarkets"] = {"types": ["linear"]}
        ex.options["loadAllOptions"] = False
        super().configure(ex, api_url=api_url, ws_url=ws_url, demo=demo, sandbox=sandbox)

    def pacer(self, kind: str) -> PerSecond | None:
        return self._pacers.get(kind)

    def cooldown_s(self, exc: Exception, headers: dict[str, str]) -> float | None:
        if " 403 " in str(exc):
            return BYBIT_BAN_HOLD_S
        if venue_code(exc) == "10006":  # "Too many visits!": the header says when the budget resets
            reset = _header(headers, "X-Bapi-Limit-Reset-Timestamp")
            try:
                return min(max(int(reset) / 1000 - time.time(), 0.1), 5.0) if reset else None
            except ValueError:
                return None
        return None

    @staticmethod
    def settle_coins(ex: ccxt.Exchange) -> list[str]:
        """The settle coins of the linear perpetuals we may trade (USDT, USDC)."""
        return sorted({m["settle"] for m in ex.markets.values()
                       if m.get("swap") and m.get("linear") and m.get("active") is not False and m.get("settle")})

    def triggered(self, o: Order) -> bool:
        """docs v5/enum orderStatus "Triggered": a conditional order fired, its market order
        not placed yet — not a fill, and not a resting stop for long."""
        return (o.get("info") or {}).get("orderStatus") == "Triggered"

    def status(self, o: Order, filled: Decimal) -> str:
        info = o.get("info") or {}
        raw = info.get("orderStatus") or ""
        if raw in ("New", "PartiallyFilled", "Untriggered", "Triggered", "Created"):
            return "open"
        if raw == "Filled":
            return "filled"
        if raw == "Cancelled" and filled == 0 and _conditional(info):
            # A conditional order cancelled before it fired is Deactivated (docs v5/enum); one
            # Cancelled fired, and its market order found no liquidity or margin: not a fill.
            return "expired"
        if raw in ("Cancelled", "PartiallyFilledCanceled", "Deactivated"):
            return "cancelled"
        if raw == "Rejected":
            return "rejected"
        return super().status(o, filled)

    def state(self, o: Order, cid: str | None = None, leg: Leg | None = None) -> OrderState:
        return super().state(_attached_as_ours(o), cid, leg)

    async def fetch(self, ex, symbol, cid):
        """Bybit: open orders by orderLinkId first, then the history (filled *and* cancelled).
        An entry's attached stop-loss has no orderLinkId: it is found among the symbol's
        conditional orders by its entry's id (`parentOrderLinkId`)."""
        found = await ex.fetch_open_orders(symbol, None, None, {"orderLinkId": cid})
        if not found:
            found = await ex.fetch_canceled_and_closed_orders(symbol, None, None, {"orderLinkId": cid})
        if not found and (parent := _entry_of(cid)) is not None:
            stops = {"orderFilter": "StopOrder"}
            found = await self._paged(ex, symbol, stops) + await ex.fetch_canceled_and_closed_orders(
                symbol, None, BYBIT_PAGE, stops)
            found = [_attached_as_ours(o) for o in found if (o.get("info") or {}).get("parentOrderLinkId") == parent]
        for o in found:
            if o.get("clientOrderId") == cid:
                return o
        raise ccxt.OrderNotFound(f"bybit: no order with orderLinkId {cid}")

    async def cancel(self, ex, symbol, cid):
        """By orderLinkId; an attached stop-loss (none of its own) by the orderId its lookup gives."""
        try:
            return await ex.cancel_order(None, symbol, {"orderLinkId": cid})
        except ccxt.OrderNotFound:
            if _entry_of(cid) is None:
                raise
            o = await self.fetch(ex, symbol, cid)
            if self.status(o, dec((o.get("info") or {}).get("cumExecQty")) or Decimal(0)) != "open":
                raise
            return _attached_as_ours(await ex.cancel_order(o["id"], symbol))

    async def open_orders(self, ex, symbol):
        if symbol is not None:
            return await self._paged(ex, symbol, {})
        pages = await asyncio.gather(*(self._paged(ex, None, {"settleCoin": c}) for c in self.settle_coins(ex)))
        return [o for page in pages for o in page]

    async def _paged(self, ex: ccxt.Exchange, symbol: str | None, params: dict[str, Any]) -> list[Order]:
        """Every resting order, 50 a page, following Bybit's nextPageCursor."""
        out: list[Order] = []
        cursor = None
        for _ in range(BYBIT_MAX_PAGES):
            page = await ex.fetch_open_orders(symbol, None, BYBIT_PAGE,
                                              {**params, **({"cursor": cursor} if cursor else {})})
            out += page
            # ccxt puts the cursor on the first raw row, then sorts the rows by time
            cursor = next(((o.get("info") or {}).get("nextPageCursor") for o in page
                           if (o.get("info") or {}).get("nextPageCursor")), None)
            if not cursor or len(page) < BYBIT_PAGE:
                return out
        raise Retryable(f"bybit: more than {BYBIT_MAX_PAGES * BYBIT_PAGE} open orders; not all read")

    async def positions(self, ex):
        out = []
        coins = sorted(self._traded | self._coins) if self._coins is not None else self.settle_coins(ex)
        pages = await asyncio.gather(*(ex.fetch_positions(None, {"category": "linear", "settleCoin": c})
                                       for c in coins))
        for p in (p for page in pages for p in page):
            info = p.get("info") or {}
            size = dec(info.get("size")) or Decimal(0)
            if size != 0:
                signed = size if info.get("side") == "Buy" else -size
                out.append(VenuePosition(p["symbol"], signed, first_dec(info, "avgPrice")))
        self._coins = {v.symbol.rsplit(":", 1)[-1] for v in out}
        return out

    async def last_prices(self, ex, symbols):
        tickers = await ex.fetch_tickers(symbols, {"type": "swap", "subType": "linear"})
        return {s: dec((t.get("info") or {}).get("lastPrice") or t.get("last")) for s, t in tickers.items()
                if symbols is None or s in symbols}


def _entry_of(cid: str) -> str | None:
    """The entry whose attached stop-loss is known to us as `cid` (`attached_cid`), if it can
    be one: a stop's id of ours. An ordinary stop never shares its sequence number with an
    entry, so its derived entry id is one that never existed."""
    return attached_entry_cid(cid)


def _attached_as_ours(o: Order) -> Order:
    """A stop-loss created by an entry's fill carries no orderLinkId, only `parentOrderLinkId`
    (docs v5: "the linked parent order for attached take-profit and stop-loss orders"): it is
    known to us by the id derived from its entry's."""
    info = o.get("info") or {}
    parent = info.get("parentOrderLinkId")
    if parent and not info.get("orderLinkId") and info.get("stopOrderType") == "PartialStopLoss" and leg_of(parent):
        return {**o, "clientOrderId": attached_cid(parent)}
    return o


def _conditional(info: dict) -> bool:
    """A Bybit conditional order: a stopOrderType (docs v5/enum; "" or "UNKNOWN" on plain
    orders) or a trigger price."""
    return info.get("stopOrderType") not in (None, "", "UNKNOWN") or first_dec(info, "triggerPrice") is not None
