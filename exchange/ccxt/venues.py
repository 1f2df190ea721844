"""What differs between venues: order parameters, lookups by client id, raw fields to read.

Each venue names the only order parameters it may send; the adapter refuses anything else
before a request leaves the process (Bybit silently turns an unknown `trailingPercent` into a
market close, so "pass it through and hope" is never acceptable). Prices and amounts are read
from the venue's raw strings into Decimal, not from ccxt's floats.
"""
from __future__ import annotations

import asyncio
import re
from decimal import ROUND_DOWN, Decimal
from typing import Any, ClassVar
from urllib.parse import urlsplit

import ccxt.async_support as ccxt

from core.position_types import Leg, leg_of
from exchange.gateway import OrderRequest, OrderState, Rejected, VenuePosition

Order = dict[str, Any]

# Safe on both venues (Binance allows 36 characters of this set; Bybit 36 as well).
CLIENT_ID = re.compile(r"^[A-Za-z0-9_-]{1,36}$")

# Binance accepts a trailing callback of 0.1–10 % in steps of 0.1 (ccxt does not check).
BINANCE_CALLBACK = (Decimal("0.1"), Decimal("10"))


def dec(value: Any) -> Decimal | None:
    """A venue number as an exact Decimal: raw strings as they are, ccxt floats by repr."""
    if value is None or value == "":
        return None
    if isinstance(value, float):
        value = repr(value)
    d = Decimal(str(value))
    return d


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
        elif req.leg is Leg.TRAILING:
            params.update(self.trailing_params(req))
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

    # ---- reading orders ----------------------------------------------------------------

    def state(self, o: Order, cid: str | None = None, leg: Leg | None = None) -> OrderState:
        info = o.get("info") or {}
        cid = o.get("clientOrderId") or cid or ""
        leg = leg_of(cid) or leg or self.guess_leg(o)
        filled = first_dec(info, *self.filled_keys) or dec(o.get("filled")) or Decimal(0)
        avg = first_dec(info, *self.avg_keys) or dec(o.get("average"))
        stop = first_dec(info, *self.stop_keys) or dec(o.get("triggerPrice"))
        return OrderState(cid, o.get("symbol") or "", leg, self.status(o, filled), filled,
                          avg if filled else None, stop, o.get("side"), dec(o.get("amount")),
                          o.get("reduceOnly"))

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


class BinanceUsdm(Venue):
    """Binance USD-M futures: stops and trailing stops live on the algo-order endpoints."""

    ccxt_id = "binanceusdm"
    key_env = ("BINANCE_API_KEY", "BINANCE_API_SECRET")
    supports_native_trailing = True
    allowed_params = frozenset({"clientOrderId", "reduceOnly", "stopLossPrice", "trailingPercent",
                                "trailingTriggerPrice"})

    def configure(self, ex, *, api_url, ws_url, demo, sandbox) -> None:
        # Only the public fapi exchangeInfo at load: no signed spot/sapi calls for currencies
        # or margin pairs (they would need spot permissions and cost weight for nothing).
        ex.options["fetchCurrencies"] = False
        ex.options["fetchMargins"] = False
        ex.options["fetchMarkets"] = {"types": ["linear"]}
        ex.options["warnOnFetchOpenOrdersWithoutSymbol"] = False
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
        cb = min(max(req.callback_pct, lo), hi).quantize(Decimal("0.1"), ROUND_DOWN)
        out["trailingPercent"] = format(max(cb, lo).normalize(), "f")
        return out

    avg_keys = ("avgPrice", "actualPrice")

    def status(self, o: Order, filled: Decimal) -> str:
        info = o.get("info") or {}
        raw = (info.get("algoStatus") or info.get("status") or "").upper()
        if raw in ("NEW", "PARTIALLY_FILLED", "TRIGGERING", "TRIGGERED", "ACCEPTED"):
            return "open"
        if raw == "FILLED":
            return "filled"
        if raw == "FINISHED":  # an algo order's market order is done: filled, or not at all
            return "filled" if filled > 0 else "cancelled"
        if raw in ("CANCELED", "CANCELLED"):
            return "cancelled"
        if raw in ("EXPIRED", "EXPIRED_IN_MATCH"):
            return "expired"
        if raw == "REJECTED":
            return "rejected"
        return super().status(o, filled)

    async def fetch(self, ex, symbol, cid):
        leg = leg_of(cid)
        if leg is None:  # a foreign id: it may be either kind
            try:
                return await ex.fetch_order(None, symbol, {"clientOrderId": cid})
            except ccxt.OrderNotFound:
                return await ex.fetch_order(None, symbol, {"clientOrderId": cid, "trigger": True})
        params = {"clientOrderId": cid, **({"trigger": True} if self.is_conditional(leg) else {})}
        return await ex.fetch_order(None, symbol, params)

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


class BybitLinear(Venue):
    """Bybit v5 linear perpetuals. No native percent trailing: the service emulates it."""

    ccxt_id = "bybit"
    key_env = ("BYBIT_API_KEY", "BYBIT_API_SECRET")
    supports_native_trailing = False
    # Deliberately no trailingPercent: ccxt would pass it through and Bybit would turn the
    # order into a reduce-only market order that closes the position at once.
    allowed_params = frozenset({"clientOrderId", "reduceOnly", "stopLossPrice"})
    avg_keys = ("avgPrice",)
    filled_keys = ("cumExecQty",)

    def configure(self, ex, *, api_url, ws_url, demo, sandbox) -> None:
        ex.options["fetchMarkets"] = {"types": ["linear"]}
        ex.options["loadAllOptions"] = False
        super().configure(ex, api_url=api_url, ws_url=ws_url, demo=demo, sandbox=sandbox)

    def status(self, o: Order, filled: Decimal) -> str:
        raw = ((o.get("info") or {}).get("orderStatus") or "")
        if raw in ("New", "PartiallyFilled", "Untriggered", "Triggered", "Created"):
            return "open"
        if raw == "Filled":
            return "filled"
        if raw in ("Cancelled", "PartiallyFilledCanceled", "Deactivated"):
            return "cancelled"
        if raw == "Rejected":
            return "rejected"
        return super().status(o, filled)

    async def fetch(self, ex, symbol, cid):
        """Bybit: open orders by orderLinkId first, then the history (filled *and* cancelled)."""
        found = await ex.fetch_open_orders(symbol, None, None, {"orderLinkId": cid})
        if not found:
            found = await ex.fetch_canceled_and_closed_orders(symbol, None, None, {"orderLinkId": cid})
        for o in found:
            if o.get("clientOrderId") == cid:
                return o
        raise ccxt.OrderNotFound(f"bybit: no order with orderLinkId {cid}")

    async def cancel(self, ex, symbol, cid):
        return await ex.cancel_order(None, symbol, {"orderLinkId": cid})

    async def open_orders(self, ex, symbol):
        return await ex.fetch_open_orders(symbol)

    async def positions(self, ex):
        out = []
        for p in await ex.fetch_positions(None, {"category": "linear"}):
            info = p.get("info") or {}
            size = dec(info.get("size")) or Decimal(0)
            if size != 0:
                signed = size if info.get("side") == "Buy" else -size
                out.append(VenuePosition(p["symbol"], signed, first_dec(info, "avgPrice")))
        return out

    async def last_prices(self, ex, symbols):
        tickers = await ex.fetch_tickers(symbols, {"type": "swap", "subType": "linear"})
        return {s: dec((t.get("info") or {}).get("lastPrice") or t.get("last")) for s, t in tickers.items()
                if symbols is None or s in symbols}


VENUES: dict[str, type[Venue]] = {"binanceusdm": BinanceUsdm, "bybit": BybitLinear}


def _rewrite_ws(ws: Any, ws_url: str) -> Any:
    if isinstance(ws, dict):
        return {k: _rewrite_ws(v, ws_url) for k, v in ws.items()}
    if isinstance(ws, str) and ws.startswith("ws"):
        return ws_url.rstrip("/") + urlsplit(ws).path
    return ws
