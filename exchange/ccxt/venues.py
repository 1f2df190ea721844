"""What differs between venues: order parameters, lookups by client id, raw fields to read.

Each venue names the only order parameters it may send; the adapter refuses anything else
before a request leaves the process (Bybit silently turns an unknown `trailingPercent` into a
market close, so "pass it through and hope" is never acceptable). Prices and amounts are read
from the venue's raw strings into Decimal, not from ccxt's floats.
"""
from __future__ import annotations

import asyncio
import re
import time
from decimal import ROUND_DOWN, Decimal
from typing import Any, ClassVar
from urllib.parse import urlsplit

import ccxt.async_support as ccxt

from core.client_ids import attached_entry_cid
from core.position_types import Leg, attached_cid, leg_of
from exchange.ccxt.errors import venue_code
from exchange.ccxt.pacing import PerSecond
from exchange.gateway import Balance, OrderRequest, OrderState, Rejected, Retryable, VenuePosition

Order = dict[str, Any]

# Safe on both venues (Binance allows 36 characters of this set; Bybit 36 as well).
CLIENT_ID = re.compile(r"^[A-Za-z0-9_-]{1,36}$")

# Binance documents callbackRate as a DECIMAL percentage, min 0.1, max 20 (raised from 10 by its
# 2026-10-23 change) and states no step; 0.25 has been seen accepted. We send at most two
# decimals, rounded down (a tighter trail, never a looser one). ccxt checks none of it.
BINANCE_CALLBACK = (Decimal("0.1"), Decimal("20"))
BINANCE_CALLBACK_STEP = Decimal("0.01")

# Binance algo order statuses (Query Algo Order `algoStatus`, ALGO_UPDATE `X`) that mean "the
# trigger fired, its market order is not done": not a fill, and not a resting stop for long.
BINANCE_TRIGGERED = ("TRIGGERING", "TRIGGERED")


def dec(value: Any) -> Decimal | None:
    """A venue number as an exact Decimal: raw strings as they are, ccxt floats by repr."""
    if value is None or value == "":
        return None
    if isinstance(value, float):
        value = repr(value)
    d = Decimal(str(value))
    return d


def order_fee(o: Order) -> Decimal | None:
    """The commission ccxt parsed for an order (`fees`, else `fee`), in the quote asset; None
    when the venue's order reply carries none (Binance reports it only on its trades)."""
    fees = o.get("fees") or ([o["fee"]] if o.get("fee") else [])
    costs = [dec(f.get("cost")) for f in fees if f and f.get("currency") in (None, "USDT")]
    costs = [c for c in costs if c is not None]
    return sum(costs, Decimal(0)) if costs else None


def first_dec(info: dict, *keys: str) -> Decimal | None:
    for k in keys:
        d = dec(info.get(k))
        if d is not None and d != 0:
            return d
    return None


def rebase_urls(urls: Any, base: str) -> Any:
    """Point every REST URL of a ccxt `urls['api']` tree at `base` (keeping paths); drop
    websocket URLs, so a client aimed at a local venue can never reach a real one."""
    if isinstance(urls, dict):
        out = {k: rebase_urls(v, base) for k, v in urls.items() if k != "ws"}
        return out
    if isinstance(urls, str) and urls.startswith("http"):
        parts = urlsplit(urls)
        return base.rstrip("/") + parts.path
    return urls


class Venue:
    """Base: the ccxt unified calls that are the same on every venue."""

    ccxt_id: ClassVar[str]
    key_env: ClassVar[tuple[str, str]]
    supports_native_trailing: ClassVar[bool]
    # The entry protocols this venue can carry (besides after_fill): core/entry_protocol.py
    entry_modes: ClassVar[tuple[str, ...]] = ("after_fill",)
    allowed_params: ClassVar[frozenset[str]]
    avg_keys: ClassVar[tuple[str, ...]] = ("avgPrice",)
    filled_keys: ClassVar[tuple[str, ...]] = ("executedQty",)
    stop_keys: ClassVar[tuple[str, ...]] = ("triggerPrice", "stopPrice")

    # ---- set-up ------------------------------------------------------------------------

    def configure(self, ex: ccxt.Exchange, *, api_url: str | None, ws_url: str | None,
                  demo: bool, sandbox: bool) -> None:
        ex.options["defaultType"] = "swap"
        ex.options["defaultSubType"] = "linear"
        ex.has["fetchCurrencies"] = False  # a signed wallet call at load that trading never needs
        if demo:
            ex.enable_demo_trading(True)
        if sandbox:
            ex.set_sandbox_mode(True)
        if api_url:
            ws = ex.urls["api"].get("ws") if isinstance(ex.urls.get("api"), dict) else None
            ex.urls["api"] = rebase_urls(ex.urls["api"], api_url)
            if ws_url and ws is not None:
                ex.urls["api"]["ws"] = _rewrite_ws(ws, ws_url)

    # ---- orders ------------------------------------------------------------------------

    def order_args(self, req: OrderRequest) -> tuple[str, dict[str, Any]]:
        """(ccxt order type, params) for one request, refused if the venue cannot take it."""
        if not CLIENT_ID.match(req.cid):
            raise Rejected(f"{self.ccxt_id}: client order id {req.cid!r} is not [A-Za-z0-9_-]{{1,36}}")
        params: dict[str, Any] = {"clientOrderId": req.cid}
        if req.reduce_only:
            params["reduceOnly"] = True
        if req.leg is Leg.STOP:
            if req.stop_price is None:
                raise Rejected(f"{self.ccxt_id}: a stop order needs a stop price")
            params["stopLossPrice"] = str(req.stop_price)
            if req.close_position:  # no quantity; "cannot be sent with reduceOnly" (New Algo Order)
                del params["reduceOnly"]
                params["closePosition"] = True
        elif req.leg is Leg.TRAILING:
            params.update(self.trailing_params(req))
        if req.attached_stop is not None:  # Bybit create-order: the SL created at the fill
            params["stopLoss"] = {"triggerPrice": str(req.attached_stop)}
            params["tpslMode"] = "Partial"  # an order sized to the fill, not a position-level SL
        self.check_params(params)
        return "market", params

    def trailing_params(self, req: OrderRequest) -> dict[str, Any]:
        if req.callback_pct is None:
            raise Rejected(f"{self.ccxt_id}: a trailing stop needs a callback rate")
        out: dict[str, Any] = {"trailingPercent": str(req.callback_pct)}
        if req.activation is not None:
            out["trailingTriggerPrice"] = str(req.activation)
        return out

    def check_params(self, params: dict[str, Any]) -> None:
        unknown = sorted(set(params) - self.allowed_params)
        if unknown:
            raise Rejected(f"{self.ccxt_id}: refusing unsupported order parameter(s) {', '.join(unknown)} "
                           f"(never passed through to the venue)")

    def is_conditional(self, leg: Leg | None) -> bool:
        return leg in (Leg.STOP, Leg.TRAILING)

    def triggered(self, o: Order) -> bool:
        """The venue says this stop fired and its market order is still under way."""
        return False

    # ---- request budget ----------------------------------------------------------------

    def pacer(self, kind: str) -> PerSecond | None:
        """The per-second budget for one kind of order write ("create", "cancel"), if the
        venue has one ccxt's throttle does not keep."""
        return None

    def cooldown_s(self, exc: Exception, headers: dict[str, str]) -> float | None:
        """How long every request must wait after this "too many requests" answer, when the
        venue documents it (None: the generic Retry-After / default rule)."""
        return None

    # ---- reading orders ----------------------------------------------------------------

    def state(self, o: Order, cid: str | None = None, leg: Leg | None = None) -> OrderState:
        info = o.get("info") or {}
        cid = o.get("clientOrderId") or cid or ""
        leg = leg_of(cid) or leg or self.guess_leg(o)
        filled = first_dec(info, *self.filled_keys) or dec(o.get("filled")) or Decimal(0)
        avg = first_dec(info, *self.avg_keys) or dec(o.get("average"))
        stop = first_dec(info, *self.stop_keys) or dec(o.get("triggerPrice"))
        return OrderState(cid, o.get("symbol") or "", leg, self.status(o, filled), filled,
                          avg if filled else None, stop, side=o.get("side"), qty=dec(o.get("amount")),
                          reduce_only=o.get("reduceOnly"), fee=order_fee(o) if filled else None,
                          close_position=str(info.get("closePosition", info.get("cp", ""))).lower() == "true")

    def status(self, o: Order, filled: Decimal) -> str:
        return {"open": "open", "closed": "filled", "canceled": "cancelled", "rejected": "rejected",
                "expired": "expired"}.get(o.get("status") or "", "open")

    @staticmethod
    def guess_leg(o: Order) -> Leg:
        kind = (o.get("type") or "").lower()
        if "trailing" in kind:
            return Leg.TRAILING
        if "stop" in kind or o.get("triggerPrice"):
            return Leg.STOP
        return Leg.EXIT if o.get("reduceOnly") else Leg.ENTRY

    # ---- venue-specific calls (async, on the venue loop) -------------------------------

    async def fetch(self, ex: ccxt.Exchange, symbol: str, cid: str) -> Order:
        raise NotImplementedError

    async def cancel(self, ex: ccxt.Exchange, symbol: str, cid: str) -> Order:
        raise NotImplementedError

    async def open_orders(self, ex: ccxt.Exchange, symbol: str | None) -> list[Order]:
        raise NotImplementedError

    async def positions(self, ex: ccxt.Exchange) -> list[VenuePosition]:
        raise NotImplementedError

    async def last_prices(self, ex: ccxt.Exchange, symbols: list[str] | None) -> dict[str, Decimal]:
        raise NotImplementedError

    async def balance(self, ex: ccxt.Exchange) -> Balance:
        return parse_balance(await ex.fetch_balance())


def parse_balance(b: dict, asset: str = "USDT") -> Balance:
    """ccxt's `fetch_balance` as wallet, unrealized and equity: Bybit's unified account fields
    (`totalWalletBalance`, `totalPerpUPL`, `totalEquity`) when present, else ccxt's `total`."""
    info = b.get("info") or {}
    if isinstance(info.get("result"), dict):  # Bybit v5: {"result": {"list": [account]}}
        info = (info["result"].get("list") or [{}])[0]
    wallet = dec(info.get("totalWalletBalance")) or dec((b.get("total") or {}).get(asset)) or Decimal(0)
    unrealized = dec(info.get("totalPerpUPL")) or Decimal(0)
    equity = dec(info.get("totalEquity")) or wallet + unrealized
    available = dec(info.get("totalAvailableBalance")) or dec((b.get("free") or {}).get(asset))
    return Balance(asset, wallet, unrealized, equity, available)


class BinanceUsdm(Venue):
    """Binance USD-M futures: stops and trailing stops live on the algo-order endpoints."""

    ccxt_id = "binanceusdm"
    key_env = ("BINANCE_API_KEY", "BINANCE_API_SECRET")
    supports_native_trailing = True
    # A closePosition algo STOP_MARKET may rest before the position exists; no stop rides on an entry.
    entry_modes = ("stop_first", "after_fill")
    allowed_params = frozenset({"clientOrderId", "reduceOnly", "stopLossPrice", "trailingPercent",
                                "trailingTriggerPrice", "closePosition"})

    def configure(self, ex, *, api_url, ws_url, demo, sandbox) -> None:
        # Only the public fapi exchangeInfo at load: no signed spot/sapi calls for currencies
        # or margin pairs (they would need spot permissions and cost weight for nothing).
        ex.options["fetchCurrencies"] = False
        ex.options["fetchMargins"] = False
        ex.options["fetchMarkets"] = {"types": ["linear"]}
        ex.options["warnOnFetchOpenOrdersWithoutSymbol"] = False
        # watch_orders would otherwise load a positions snapshot (positionRisk and leverage
        # brackets, signed) on every user-stream connect; positions are polled instead.
        ex.options["watchPositions"] = {**ex.options.get("watchPositions", {}), "fetchPositionsSnapshot": False}
        super().configure(ex, api_url=api_url, ws_url=ws_url, demo=demo, sandbox=sandbox)
        if api_url:
            # ccxt picks the futures error table by host name; on another host it would fall
            # back to the spot table and turn e.g. −2019 into a plain ExchangeError.
            def by_url(url, exact_or_broad, _ex=ex):
                if url and "/fapi/" in url:
                    return _ex.safe_dict(_ex.safe_dict(_ex.exceptions, "linear", {}), exact_or_broad, {})
                return {}
            ex.get_exceptions_by_url = by_url

    def trailing_params(self, req: OrderRequest) -> dict[str, Any]:
        out = super().trailing_params(req)
        lo, hi = BINANCE_CALLBACK
        cb = min(max(req.callback_pct, lo), hi).quantize(BINANCE_CALLBACK_STEP, ROUND_DOWN)
        out["trailingPercent"] = format(max(cb, lo).normalize(), "f")
        return out

    @staticmethod
    def _algo_info(o: Order) -> dict | None:
        """The raw algo order (REST `algoStatus` shape or the ALGO_UPDATE body), if it is one."""
        info = o.get("info") or {}
        return info if ("algoStatus" in info or "caid" in info) else None

    def triggered(self, o: Order) -> bool:
        info = self._algo_info(o)
        return info is not None and (info.get("algoStatus") or info.get("X") or "").upper() in BINANCE_TRIGGERED

    def state(self, o: Order, cid: str | None = None, leg: Leg | None = None) -> OrderState:
        """Algo orders carry what their market order did as `actualQty`/`actualPrice` (REST) or
        `aq`/`ap` (stream) — absent or "0" until it filled — never `executedQty`/`avgPrice`;
        ccxt's `filled` for them is the order's amount, not a fill, so it is not read."""
        info = self._algo_info(o)
        if info is None:
            return super().state(o, cid, leg)
        cid = info.get("clientAlgoId") or info.get("caid") or o.get("clientOrderId") or cid or ""
        leg = leg_of(cid) or leg or self.guess_leg(o)
        filled = first_dec(info, "actualQty", "aq") or Decimal(0)
        avg = first_dec(info, "actualPrice", "ap")
        raw = (info.get("algoStatus") or info.get("X") or "").upper()
        status = {"NEW": "open", "TRIGGERING": "open", "TRIGGERED": "open", "CANCELED": "cancelled",
                  "EXPIRED": "expired", "REJECTED": "rejected"}.get(raw, "open")
        if raw == "FINISHED":  # its market order is done: filled, or expired with nothing filled
            status = "filled" if filled > 0 else "expired"
        stop = first_dec(info, "triggerPrice", "tp") or dec(o.get("triggerPrice"))
        return OrderState(cid, o.get("symbol") or "", leg, status, filled, avg if filled else None, stop)

    def status(self, o: Order, filled: Decimal) -> str:
        """Regular orders (entries, exits, a stop's market order); algo orders: `state`."""
        raw = ((o.get("info") or {}).get("status") or "").upper()
        if raw in ("NEW", "PARTIALLY_FILLED"):
            return "open"
        return {"FILLED": "filled", "CANCELED": "cancelled", "EXPIRED": "expired",
                "EXPIRED_IN_MATCH": "expired", "REJECTED": "rejected"}.get(raw) or super().status(o, filled)

    async def fetch(self, ex, symbol, cid):
        leg = leg_of(cid)
        if leg is None:  # a foreign id: it may be either kind
            try:
                return await ex.fetch_order(None, symbol, {"clientOrderId": cid})
            except ccxt.OrderNotFound:
                return await self._with_child(ex, symbol, await ex.fetch_order(
                    None, symbol, {"clientOrderId": cid, "trigger": True}))
        if not self.is_conditional(leg):
            return await ex.fetch_order(None, symbol, {"clientOrderId": cid})
        return await self._with_child(ex, symbol, await ex.fetch_order(None, symbol, {"clientOrderId": cid,
                                                                                     "trigger": True}))

    async def _with_child(self, ex, symbol: str, o: Order) -> Order:
        """A FINISHED algo order whose `actualPrice` is "0" or whose `actualQty` is missing is read
        from its market order (`GET /fapi/v1/order?orderId=<actualOrderId>`): the algo answer
        alone cannot tell a fill without a price from no fill."""
        info = o.get("info") or {}
        child_id = info.get("actualOrderId")
        if (info.get("algoStatus") or "").upper() != "FINISHED" or not child_id or (
                first_dec(info, "actualPrice") and first_dec(info, "actualQty")):
            return o
        try:
            child = await ex.fetch_order(str(child_id), symbol)
        except ccxt.OrderNotFound as e:  # not "the stop is unknown": its fill is unreadable for now
            raise ccxt.NetworkError(f"binanceusdm: market order {child_id} of algo order "
                                    f"{info.get('clientAlgoId')} not readable yet: {e}") from e
        ci = child.get("info") or {}
        return {**o, "info": {**info, "actualQty": ci.get("executedQty") or "0",
                              "actualPrice": ci.get("avgPrice") or "0"}}

    async def cancel(self, ex, symbol, cid):
        params = {"clientOrderId": cid, **({"trigger": True} if self.is_conditional(leg_of(cid)) else {})}
        return await ex.cancel_order(None, symbol, params)

    async def open_orders(self, ex, symbol):
        regular, algo = await asyncio.gather(ex.fetch_open_orders(symbol),
                                             ex.fetch_open_orders(symbol, None, None, {"trigger": True}))
        return [*regular, *algo]

    async def positions(self, ex):
        rows = await ex.fapiPrivateV3GetPositionRisk()
        out = []
        for r in rows:
            qty = dec(r.get("positionAmt")) or Decimal(0)
            if qty != 0:
                out.append(VenuePosition(ex.safe_symbol(r["symbol"], None, None, "swap"), qty,
                                         first_dec(r, "entryPrice")))
        return out

    async def balance(self, ex):
        """GET /fapi/v3/balance (Futures Account Balance V3, weight 5): per asset `balance`
        (wallet), `crossUnPnl` (unrealized of cross positions) and `availableBalance`.
        https://developers.binance.com/docs/derivatives/usds-margined-futures/account/rest-api/Futures-Account-Balance-V3"""
        row = next((r for r in await ex.fapiPrivateV3GetBalance() if r.get("asset") == "USDT"), {})
        wallet = dec(row.get("balance")) or Decimal(0)
        unrealized = dec(row.get("crossUnPnl")) or Decimal(0)
        return Balance("USDT", wallet, unrealized, wallet + unrealized, dec(row.get("availableBalance")))

    async def last_prices(self, ex, symbols):
        if symbols is not None and len(symbols) == 1:
            rows = [await ex.fapiPublicV2GetTickerPrice({"symbol": ex.market_id(symbols[0])})]
        else:
            rows = await ex.fapiPublicV2GetTickerPrice()
        out = {}
        for r in rows:
            sym = ex.safe_symbol(r.get("symbol"), None, None, "swap")
            if sym in ex.markets and (symbols is None or sym in symbols):
                out[sym] = dec(r.get("price"))
        return out


# Bybit v5: "limit [1, 50], default 20" with cursor paging (order/open-order); more pages than
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


VENUES: dict[str, type[Venue]] = {"binanceusdm": BinanceUsdm, "bybit": BybitLinear}


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


def _rewrite_ws(ws: Any, ws_url: str) -> Any:
    if isinstance(ws, dict):
        return {k: _rewrite_ws(v, ws_url) for k, v in ws.items()}
    if isinstance(ws, str) and ws.startswith("ws"):
        return ws_url.rstrip("/") + urlsplit(ws).path
    return ws
