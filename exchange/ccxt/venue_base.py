"""What every ccxt venue shares: the `Venue` base (unified calls, order parameters, reading an
order back) and the parsing of venue numbers, fees and balances.

Each venue names the only order parameters it may send; the adapter refuses anything else
before a request leaves the process (Bybit silently turns an unknown `trailingPercent` into a
market close, so "pass it through and hope" is never acceptable). Prices and amounts are read
from the venue's raw strings into Decimal, not from ccxt's floats.
"""
from __future__ import annotations

import re
from decimal import Decimal
from typing import Any, ClassVar
from urllib.parse import urlsplit

import ccxt.async_support as ccxt

from core.position_types import Leg, leg_of
from exchange.ccxt.pacing import PerSecond
from exchange.gateway import Balance, OrderRequest, OrderState, Rejected, VenuePosition

Order = dict[str, Any]

# Safe on both venues (Binance allows 36 characters of this set; Bybit 36 as well).
CLIENT_ID = re.compile(r"^[A-Za-z0-9_-]{1,36}$")


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
    costs = [c for f in fees if f and f.get("currency") in (None, "USDT") if (c := dec(f.get("cost"))) is not None]
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


def _rewrite_ws(ws: Any, ws_url: str) -> Any:
    if isinstance(ws, dict):
        return {k: _rewrite_ws(v, ws_url) for k, v in ws.items()}
    if isinstance(ws, str) and ws.startswith("ws"):
        return ws_url.rstrip("/") + urlsplit(ws).path
    return ws
