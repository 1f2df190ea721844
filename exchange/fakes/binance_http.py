"""A local venue shaped like Binance USD-M futures, backed by the paper engine.

Contract tests point a real ccxt client at it over loopback (REST, and ccxt.pro over the
websockets served on the same port: `binance_stream`); operators run it standalone
(`bin/fake-venue --venue binanceusdm`). It checks HMAC signatures (when given the secret) and
request timestamps against its own clock (`clock_skew_ms`: -1021 outside recvWindow), refuses
parameters it does not know (-1104) and answers with Binance's error codes and documented
shapes. Failures are injectable per route (`inject`): an error code, an answer that comes too
late; and per triggered stop (route "trigger", `outcome`): its market order expires unfilled
("expire") or it hangs in TRIGGERING/TRIGGERED ("triggering", "triggered").
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import secrets
import time
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Callable

from aiohttp import web

from core.position_types import Leg
from exchange.fakes import binance_events as events
from exchange.fakes import binance_wire as wire
from exchange.fakes.binance_algo import AlgoBook
from exchange.fakes.binance_stream import StreamHub
from exchange.fakes.binance_account import BinanceAccountState, account_routes
from exchange.fakes.server import FakeVenue
from exchange.gateway import OrderNotFound, OrderRequest, Rejected
from exchange.paper.engine import PaperEngine
from exchange.paper.universe import paper_markets, start_prices

MESSAGES = {
    -1003: "Too many requests; current limit is 2400 requests per minute.",
    -1007: "Timeout waiting for response from backend server. Send status unknown; execution status unknown.",
    -1021: "Timestamp for this request is outside of the recvWindow.",
    -2013: "Order does not exist.",
    -2019: "Margin is insufficient.",
    -2021: "Order would immediately trigger.",
    -2022: "ReduceOnly Order is rejected.",
    -4116: "ClientOrderId is duplicated.",
}
_SIGNING = {"timestamp", "recvWindow", "signature"}
_ORDER_PARAMS = {"symbol", "side", "type", "quantity", "reduceOnly", "newClientOrderId", "newOrderRespType",
                 "positionSide", "timeInForce", "price", "selfTradePreventionMode"} | _SIGNING
_ALGO_PARAMS = {"symbol", "side", "type", "algoType", "quantity", "reduceOnly", "clientAlgoId", "triggerPrice",
                "callbackRate", "activatePrice", "workingType", "priceProtect", "newOrderRespType",
                "positionSide", "timeInForce", "price", "closePosition"} | _SIGNING
_LOOKUP_PARAMS = {"symbol", "orderId", "origClientOrderId", "algoId", "clientAlgoId"} | _SIGNING
_PUBLIC = {"/fapi/v1/ping", "/fapi/v1/time", "/fapi/v1/exchangeInfo", "/fapi/v1/ticker/price",
           "/fapi/v2/ticker/price", "/fapi/v1/premiumIndex", "/fapi/v1/ticker/24hr"}
_KEY_ONLY = {"/fapi/v1/listenKey"}  # user-data stream endpoints take the API key, no signature



class VenueError(Exception):
    def __init__(self, code: int, msg: str | None = None, status: int = 400) -> None:
        super().__init__(msg or MESSAGES.get(code, "error"))
        self.code, self.status = code, status


@dataclass
class Inject:
    """One injected behaviour for requests matching `route` ("POST /fapi/v1/algoOrder", "*")."""

    route: str = "*"
    code: int | None = None  # answer with this Binance error code (HTTP `status`)
    status: int = 400
    delay_s: float = 0.0  # answer this much later
    after: bool = False  # process the request first, then delay / fail: the venue *did* it
    when: dict[str, str] = field(default_factory=dict)  # only if these request params match
    retry_after_s: int | None = None
    times: int = 1  # 0 = unlimited
    outcome: str | None = None  # route "trigger": "expire" | "triggering" | "triggered";
    #                             route "GET /fapi/v1/algoOrder": "no_actual_price" (actualPrice "0")
    fired: int = 0

    def matches(self, route: str, params: dict[str, str]) -> bool:
        return ((self.route == "*" or self.route == route)
                and all(params.get(k) == v for k, v in self.when.items())
                and (self.times == 0 or self.fired < self.times))


class FakeBinance(FakeVenue):
    venue = "binanceusdm"
    name = "fake-binance"
    rule = Inject

    def __init__(self, engine: PaperEngine | None = None, *, latency_ms: float = 0, api_key: str | None = None,
                 secret: str | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(engine or PaperEngine(paper_markets(), start_prices(), seed=1, slippage_bps=Decimal(0)),
                         host, port)
        self.latency_s = latency_ms / 1000
        self.api_key, self.secret = api_key, secret
        self.clock_skew_ms = 0  # this venue's clock minus the machine's: signed requests are judged by it
        self._ids = itertools.count(1000)
        self._order_ids: dict[str, int] = {}
        self._by_id = {wire.market_id(s): s for s in self.engine.markets}
        self._listen_keys: set[str] = set()
        self.streams = StreamHub(self._loop, lambda: dict(self.engine.account.prices), self._now,
                                 self._listen_keys)
        self._algo = AlgoBook(self.engine, self._ids, self._now, self.streams.publish, self._trigger_rule)
        self._routes: dict[str, Callable[[dict[str, str]], Any]] = {
            "GET /fapi/v1/ping": lambda p: {},
            "GET /fapi/v1/time": lambda p: {"serverTime": self._now()},
            "GET /fapi/v1/exchangeInfo": lambda p: wire.exchange_info(self.engine.markets, self._now()),
            "GET /fapi/v1/ticker/price": self._ticker_price,
            "GET /fapi/v2/ticker/price": self._ticker_price,
            "GET /fapi/v1/premiumIndex": self._premium_index,
            "POST /fapi/v1/order": self._new_order,
            "GET /fapi/v1/order": lambda p: self._lookup(p, algo=False),
            "DELETE /fapi/v1/order": lambda p: self._cancel(p, algo=False),
            "GET /fapi/v1/openOrders": lambda p: self._open(p, algo=False),
            "POST /fapi/v1/algoOrder": self._new_algo,
            "GET /fapi/v1/algoOrder": lambda p: self._lookup(p, algo=True),
            "DELETE /fapi/v1/algoOrder": lambda p: self._cancel(p, algo=True),
            "GET /fapi/v1/openAlgoOrders": lambda p: self._open(p, algo=True),
            "GET /fapi/v2/positionRisk": self._position_risk,
            "GET /fapi/v3/positionRisk": self._position_risk,
            "GET /fapi/v2/balance": lambda p: wire.balance(self.engine.account.balance, self._now()),
            "GET /fapi/v3/balance": lambda p: wire.balance(self.engine.account.balance, self._now()),
            # Start / Keepalive / Close User Data Stream: one key while it lives (Binance docs)
            "POST /fapi/v1/listenKey": self._listen_key,
            "PUT /fapi/v1/listenKey": self._listen_key,
            "DELETE /fapi/v1/listenKey": self._close_listen_keys,
        }
        # ---- account set-up (position mode, leverage, margin type): binance_account.py ----
        self.account = BinanceAccountState()
        self._routes.update(account_routes(self.account, VenueError, self._symbol))

    # ---- control (tests and the standalone runner) -------------------------------------

    def add_routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/{tail:.*}", self._handle)  # websockets too: same port, as Binance's

    def requests_view(self) -> list[tuple[str, str, str | None]]:
        """(method, path, client id) of every request so far, in arrival order."""
        return [(m, pa, p.get("clientAlgoId") or p.get("newClientOrderId") or p.get("origClientOrderId"))
                for m, pa, p in self.requests]

    def _now(self) -> int:
        return int(time.time() * 1000) + self.clock_skew_ms

    # ---- HTTP --------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self.streams.handle(request)
        route = f"{request.method} {request.path}"
        raw = request.query_string if request.method in ("GET", "DELETE") else await request.text()
        params = dict(request.query)
        if request.method in ("POST", "PUT"):
            params.update({k: str(v) for k, v in (await request.post()).items()})
        self.requests.append((request.method, request.path, {k: v for k, v in params.items() if k not in _SIGNING}))
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        handler = self._routes.get(route)
        if handler is None:
            return _error(VenueError(-5000, f"Path {request.path}, Method {request.method} is invalid", 404))
        rule = next((r for r in self.injects if r.route != "trigger" and r.matches(route, params)), None)
        if rule is not None:
            rule.fired += 1
        try:
            if request.path not in _PUBLIC:
                self._authenticate(request, raw, params)
            if rule is not None and not rule.after:
                await asyncio.sleep(rule.delay_s)
                if rule.code is not None:
                    raise VenueError(rule.code, status=rule.status)
            body = handler(params)
            if rule is not None and rule.outcome == "no_actual_price" and isinstance(body, dict):
                body["actualPrice"] = "0"
            if rule is not None and rule.after:
                await asyncio.sleep(rule.delay_s)
                if rule.code is not None:
                    raise VenueError(rule.code, status=rule.status)
        except VenueError as e:
            resp = _error(e)
            if rule is not None and rule.retry_after_s is not None:
                resp.headers["Retry-After"] = str(rule.retry_after_s)
            return resp
        return web.json_response(body)

    def _authenticate(self, request: web.Request, raw: str, params: dict[str, str]) -> None:
        if not request.headers.get("X-MBX-APIKEY") or (self.api_key and request.headers["X-MBX-APIKEY"] != self.api_key):
            raise VenueError(-2015, "Invalid API-key, IP, or permissions for action.", 401)
        if request.path in _KEY_ONLY:
            return
        payload, sep, signature = raw.rpartition("&signature=")
        if not sep:
            raise VenueError(-1102, "Mandatory parameter 'signature' was not sent, was empty/null, or malformed.")
        if self.secret is not None:
            want = hmac.new(self.secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
            if not hmac.compare_digest(want, signature):
                raise VenueError(-1022, "Signature for this request is not valid.")
        # Binance, "Timing security": serverTime - timestamp must be within recvWindow (default
        # 5000 ms), and a timestamp more than 1000 ms ahead of the server is refused as well.
        try:
            stamp, window = int(params["timestamp"]), int(params.get("recvWindow", 5000))
        except (KeyError, ValueError):
            raise VenueError(-1102, "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed.") from None
        now = self._now()
        if stamp >= now + 1000:
            raise VenueError(-1021, "Timestamp for this request was 1000ms ahead of the server's time.")
        if now - stamp > window:
            raise VenueError(-1021)

    # ---- endpoints ---------------------------------------------------------------------

    def _symbol(self, params: dict[str, str]) -> str:
        sym = self._by_id.get(params.get("symbol", ""))
        if sym is None:
            raise VenueError(-1121, "Invalid symbol.")
        return sym

    def _listen_key(self, p):
        if not self._listen_keys:
            self._listen_keys.add(secrets.token_hex(32))
        return {"listenKey": next(iter(self._listen_keys))}

    def _close_listen_keys(self, p: dict[str, str]) -> dict[str, Any]:
        self._listen_keys.clear()
        return {}

    def _ticker_price(self, p):
        rows = [{"symbol": wire.market_id(s), "price": wire.s(self.engine.price(s)), "time": self._now()}
                for s in ([self._symbol(p)] if "symbol" in p else self.engine.markets)]
        return rows[0] if "symbol" in p else rows

    def _premium_index(self, p):
        rows = [{"symbol": wire.market_id(s), "markPrice": wire.s(self.engine.price(s)),
                 "indexPrice": wire.s(self.engine.price(s)), "lastFundingRate": "0.0001",
                 "nextFundingTime": self._now() + 3600_000, "time": self._now()}
                for s in ([self._symbol(p)] if "symbol" in p else self.engine.markets)]
        return rows[0] if "symbol" in p else rows

    def _new_order(self, p):
        _only(p, _ORDER_PARAMS)
        if p.get("type") != "MARKET":
            raise VenueError(-4120, "Order type not supported for this endpoint. Please use the Algo Order API endpoints instead.")
        reduce = p.get("reduceOnly", "false").lower() == "true"
        cid = p.get("newClientOrderId") or f"fake-{next(self._ids)}"
        o = self._place(OrderRequest(cid, self._symbol(p), Leg.EXIT if reduce else Leg.ENTRY,
                                     p.get("side", "").lower(), _dec(p, "quantity")))
        oid, now = self._order_ids[cid], self._now()
        self.streams.publish(
            events.order_trade_update(oid, cid, o.symbol, o.side, o.qty, "NEW", Decimal(0), None, reduce, now),
            events.order_trade_update(oid, cid, o.symbol, o.side, o.qty, "FILLED", o.filled_qty, o.avg_price,
                                      reduce, now),
            events.account_update(self.engine.positions(), self.engine.account.balance, now))
        return wire.regular_order(o, oid, now)

    def _new_algo(self, p):
        _only(p, _ALGO_PARAMS)
        if p.get("algoType") != "CONDITIONAL":
            raise VenueError(-1102, "Mandatory parameter 'algoType' was not sent, was empty/null, or malformed.")
        kind = p.get("type")
        cid = p.get("clientAlgoId") or f"fake-{next(self._ids)}"
        sym, side = self._symbol(p), p.get("side", "").lower()
        if p.get("closePosition", "false").lower() == "true":
            req = self._close_position(p, cid, sym, side, kind)
        elif kind == "STOP_MARKET":
            req = OrderRequest(cid, sym, Leg.STOP, side, _dec(p, "quantity"), stop_price=_dec(p, "triggerPrice"))
        elif kind == "TRAILING_STOP_MARKET":
            qty = _dec(p, "quantity")
            act = _dec(p, "activatePrice") if "activatePrice" in p else None
            req = OrderRequest(cid, sym, Leg.TRAILING, side, qty, activation=act, callback_pct=_dec(p, "callbackRate"))
        else:
            raise VenueError(-1116, "Invalid orderType.")
        meta = self._algo.add(cid)
        try:
            o = self._place(req)
        except VenueError:
            self._algo.drop(cid)
            raise
        self.streams.publish(events.algo_update(o, meta.algo_id, "NEW", None, self._now()))
        return self._algo.view(o)

    @staticmethod
    def _close_position(p: dict[str, str], cid: str, sym: str, side: str, kind: str | None) -> OrderRequest:
        """New Algo Order `closePosition` "true, false; Close-All, used with STOP_MARKET or
        TAKE_PROFIT_MARKET": no quantity, "cannot be sent with closePosition=true" says the
        reduceOnly row; the engine checks the rest (-4136 on another type, -4130 if one rests
        on that side already, -2021 if the price is through it).
        https://developers.binance.com/docs/derivatives/usds-margined-futures/trade/rest-api/New-Algo-Order"""
        for banned in ("quantity", "reduceOnly"):
            if banned in p:
                raise VenueError(-1106, f"Parameter '{banned}' sent when not required.")
        leg = Leg.STOP if kind == "STOP_MARKET" else Leg.TRAILING
        return OrderRequest(cid, sym, leg, side, Decimal(0), stop_price=_dec(p, "triggerPrice") if leg is Leg.STOP
                            else None, close_position=True)

    def _place(self, req: OrderRequest):
        try:
            self.engine.place(req)
        except Rejected as e:
            raise VenueError(getattr(e, "code", -1000), str(e).split(" ", 1)[-1]) from None
        self._order_ids[req.cid] = next(self._ids)
        return self.engine.account.orders[req.cid]

    def _find(self, p: dict[str, str], algo: bool):
        cid = p.get("clientAlgoId") if algo else p.get("origClientOrderId")
        if cid is None and algo:
            cid = self._algo.by_algo_id(p.get("algoId"))
        elif cid is None:
            cid = next((c for c, i in self._order_ids.items() if str(i) == p.get("orderId")), None)
        if cid is None:
            return None
        o = self.engine.account.orders.get(cid)
        if o is None or (cid in self._algo) != algo or o.symbol != self._symbol(p):
            return None
        return o

    def _lookup(self, p, algo: bool):
        _only(p, _LOOKUP_PARAMS)
        if not algo and (child := self._algo.child_view(p.get("orderId", ""))) is not None:
            return child
        o = self._find(p, algo)
        if o is None:
            raise VenueError(-2013, "Order does not exist.")
        return self._algo.view(o) if algo else wire.regular_order(o, self._order_ids[o.cid], self._now())

    def _cancel(self, p, algo: bool):
        _only(p, _LOOKUP_PARAMS)
        o = self._find(p, algo)
        if o is None or o.status != "open":
            raise VenueError(-2011, "Unknown order sent.")
        try:
            self.engine.cancel(o.cid)
        except OrderNotFound:
            raise VenueError(-2011, "Unknown order sent.") from None
        if algo:
            meta = self._algo.meta[o.cid]
            self.streams.publish(events.algo_update(o, meta.algo_id, "CANCELED", None, self._now()))
            # Cancel Algo Order response: SDK model `CancelAlgoOrderResponse`
            return {"algoId": meta.algo_id, "clientAlgoId": o.cid, "code": "200", "msg": "success"}
        return wire.regular_order(o, self._order_ids[o.cid], self._now())

    def _open(self, p, algo: bool):
        sym = self._symbol(p) if "symbol" in p else None
        resting = {o.cid for o in self.engine.open_orders(sym)}
        if not algo:
            return [wire.regular_order(self.engine.account.orders[c], self._order_ids[c], self._now())
                    for c in resting if c not in self._algo]
        held = self._algo.held()  # a stop hung between trigger and fill is still listed, as Binance does
        orders = self.engine.account.orders
        return [self._algo.view(orders[c]) for c in sorted(resting | held)
                if c in self._algo and orders[c].status == "open" and (sym is None or orders[c].symbol == sym)]

    def _position_risk(self, p):
        sym = self._symbol(p) if "symbol" in p else None
        return [wire.position_risk(v.symbol, v.qty, v.entry_price, self.engine.price(v.symbol), self._now())
                for v in self.engine.positions() if sym is None or v.symbol == sym]

    def _trigger_rule(self, order) -> str | None:
        """Engine hook (its lock held): the outcome an injected "trigger" rule gives this stop."""
        params = {"clientAlgoId": order.cid, "symbol": wire.market_id(order.symbol)}
        rule = next((r for r in self.injects if r.route == "trigger" and r.matches("trigger", params)), None)
        if rule is None:
            return None
        rule.fired += 1
        return rule.outcome


def _dec(p: dict[str, str], key: str) -> Decimal:
    try:
        return Decimal(p[key])
    except (KeyError, InvalidOperation):
        raise VenueError(-1102, f"Mandatory parameter '{key}' was not sent, was empty/null, or malformed.") from None


def _only(p: dict[str, str], allowed: set[str]) -> None:
    extra = sorted(set(p) - allowed)
    if extra:
        raise VenueError(-1104, f"Not all sent parameters were read; unknown: {', '.join(extra)}")


def _error(e: VenueError) -> web.Response:
    return web.json_response({"code": e.code, "msg": str(e)}, status=e.status)
