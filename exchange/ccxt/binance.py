"""Binance USD-M futures: stops and trailing stops on the algo-order endpoints, their
statuses, and the V3 position and balance reads."""
from __future__ import annotations

import asyncio
from decimal import ROUND_DOWN, Decimal
from typing import Any

import ccxt.async_support as ccxt

from core.position_types import Leg, leg_of
from exchange.ccxt.venue_base import Order, Venue, dec, first_dec
from exchange.gateway import Balance, OrderRequest, OrderState, VenuePosition

# Binance documents callbackRate as a DECIMAL percentage, min 0.1, max 20 (raised from 10 by its
# 2026-10-23 change) and states no step; 0.25 has been seen accepted. We send at most two
# decimals, rounded down (a tighter trail, never a looser one). ccxt checks none of it.
BINANCE_CALLBACK = (Decimal("0.1"), Decimal("20"))
BINANCE_CALLBACK_STEP = Decimal("0.01")

# Binance algo order statuses (Query Algo Order `algoStatus`, ALGO_UPDATE `X`) that mean "the
# trigger fired, its market order is not done": not a fill, and not a resting stop for long.
BINANCE_TRIGGERED = ("TRIGGERING", "TRIGGERED")


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
        assert req.callback_pct is not None  # the base refused a trailing stop without one
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
