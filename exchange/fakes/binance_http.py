"""A local HTTP venue shaped like Binance USD-M futures, backed by the paper engine.

Contract tests point a real ccxt client at it over loopback; operators can run it standalone
(`bin/fake-venue`, or `python -m exchange.fakes.binance_http --port 0`) to rehearse the real
adapter end to end. It checks HMAC signatures (when given the secret), refuses parameters it
does not know (-1104) and answers with Binance's error codes; latency and errors (-2019,
-2021, -2022, -1007, -4116, 429, or an answer that comes too late) can be injected per route.
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import itertools
import signal
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Callable

from aiohttp import web

from core.position_types import Leg
from exchange.fakes import binance_wire as wire
from exchange.fakes.binance_account import BinanceAccountState, account_routes
from exchange.gateway import OrderNotFound, OrderRequest, Rejected
from exchange.paper.engine import PaperEngine
from exchange.paper.universe import paper_markets, start_prices

MESSAGES = {
    -1003: "Too many requests; current limit is 2400 requests per minute.",
    -1007: "Timeout waiting for response from backend server. Send status unknown; execution status unknown.",
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
                "positionSide", "timeInForce", "price"} | _SIGNING
_LOOKUP_PARAMS = {"symbol", "orderId", "origClientOrderId", "algoId", "clientAlgoId"} | _SIGNING
_PUBLIC = {"/fapi/v1/ping", "/fapi/v1/time", "/fapi/v1/exchangeInfo", "/fapi/v1/ticker/price",
           "/fapi/v2/ticker/price", "/fapi/v1/premiumIndex", "/fapi/v1/ticker/24hr"}


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
    fired: int = 0

    def matches(self, route: str, params: dict[str, str]) -> bool:
        return ((self.route == "*" or self.route == route)
                and all(params.get(k) == v for k, v in self.when.items())
                and (self.times == 0 or self.fired < self.times))


class FakeBinance:
    def __init__(self, engine: PaperEngine | None = None, *, latency_ms: float = 0, api_key: str | None = None,
                 secret: str | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.engine = engine or PaperEngine(paper_markets(), start_prices(), seed=1, slippage_bps=Decimal(0))
        self.latency_s = latency_ms / 1000
        self.api_key, self.secret = api_key, secret
        self.host, self.port = host, port
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.injects: list[Inject] = []
        self._ids = itertools.count(1000)
        self._order_ids: dict[str, int] = {}
        self._algo: set[str] = set()  # client ids that were placed as algo orders
        self._by_id = {wire.market_id(s): s for s in self.engine.markets}
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self.url = ""
        self._routes: dict[str, Callable[[dict[str, str]], Any]] = {
            "GET /fapi/v1/ping": lambda p: {},
            "GET /fapi/v1/time": lambda p: {"serverTime": _now()},
            "GET /fapi/v1/exchangeInfo": lambda p: wire.exchange_info(self.engine.markets, _now()),
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
            "GET /fapi/v2/balance": lambda p: wire.balance(self.engine.account.balance, _now()),
            "GET /fapi/v3/balance": lambda p: wire.balance(self.engine.account.balance, _now()),
            "POST /fapi/v1/listenKey": lambda p: {"listenKey": "fake-listen-key"},
        }
        # ---- account set-up (position mode, leverage, margin type): binance_account.py ----
        self.account = BinanceAccountState()
        self._routes.update(account_routes(self.account, VenueError, self._symbol))

    # ---- control (tests and the standalone runner) -------------------------------------

    def start(self) -> str:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(ready,), name="fake-binance", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("fake Binance venue did not start")
        return self.url

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(5)

    async def _shutdown(self) -> None:
        """Drop answers still being delayed (injected slowness), then close the listener."""
        me = asyncio.current_task()
        for task in [t for t in asyncio.all_tasks() if t is not me]:
            task.cancel()
        await self._runner.cleanup()

    def inject(self, route: str = "*", **kw: Any) -> Inject:
        rule = Inject(route, **kw)
        self.injects.append(rule)
        return rule

    def set_price(self, symbol: str, price: Decimal) -> None:
        self.engine.set_price(symbol, price)

    def requests_view(self) -> list[tuple[str, str, str | None]]:
        """(method, path, client id) of every request so far, in arrival order."""
        return [(m, pa, p.get("clientAlgoId") or p.get("newClientOrderId") or p.get("origClientOrderId"))
                for m, pa, p in self.requests]

    def calls(self, route: str) -> list[dict[str, str]]:
        method, path = route.split(" ", 1)
        return [p for m, pa, p in self.requests if m == method and pa == path]

    # ---- HTTP --------------------------------------------------------------------------

    def _serve(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, self.host, self.port)
        self._loop.run_until_complete(site.start())
        self.port = self._runner.addresses[0][1]
        self.url = f"http://{self.host}:{self.port}"
        ready.set()
        self._loop.run_forever()

    async def _handle(self, request: web.Request) -> web.Response:
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
        rule = next((r for r in self.injects if r.matches(route, params)), None)
        if rule is not None:
            rule.fired += 1
        try:
            if request.path not in _PUBLIC:
                self._authenticate(request, raw)
            if rule is not None and not rule.after:
                await asyncio.sleep(rule.delay_s)
                if rule.code is not None:
                    raise VenueError(rule.code, status=rule.status)
            body = handler(params)
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

    def _authenticate(self, request: web.Request, raw: str) -> None:
        if not request.headers.get("X-MBX-APIKEY") or (self.api_key and request.headers["X-MBX-APIKEY"] != self.api_key):
            raise VenueError(-2015, "Invalid API-key, IP, or permissions for action.", 401)
        if request.path == "/fapi/v1/listenKey":  # user-data streams take the key alone
            return
        payload, sep, signature = raw.rpartition("&signature=")
        if not sep:
            raise VenueError(-1102, "Mandatory parameter 'signature' was not sent, was empty/null, or malformed.")
        if self.secret is not None:
            want = hmac.new(self.secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
            if not hmac.compare_digest(want, signature):
                raise VenueError(-1022, "Signature for this request is not valid.")

    # ---- endpoints ---------------------------------------------------------------------

    def _symbol(self, params: dict[str, str]) -> str:
        sym = self._by_id.get(params.get("symbol", ""))
        if sym is None:
            raise VenueError(-1121, "Invalid symbol.")
        return sym

    def _ticker_price(self, p):
        rows = [{"symbol": wire.market_id(s), "price": wire.s(self.engine.price(s)), "time": _now()}
                for s in ([self._symbol(p)] if "symbol" in p else self.engine.markets)]
        return rows[0] if "symbol" in p else rows

    def _premium_index(self, p):
        rows = [{"symbol": wire.market_id(s), "markPrice": wire.s(self.engine.price(s)),
                 "indexPrice": wire.s(self.engine.price(s)), "lastFundingRate": "0.0001",
                 "nextFundingTime": _now() + 3600_000, "time": _now()}
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
        return wire.regular_order(o, self._order_ids[cid], _now())

    def _new_algo(self, p):
        _only(p, _ALGO_PARAMS)
        if p.get("algoType") != "CONDITIONAL":
            raise VenueError(-1102, "Mandatory parameter 'algoType' was not sent, was empty/null, or malformed.")
        kind = p.get("type")
        cid = p.get("clientAlgoId") or f"fake-{next(self._ids)}"
        sym, side, qty = self._symbol(p), p.get("side", "").lower(), _dec(p, "quantity")
        if kind == "STOP_MARKET":
            req = OrderRequest(cid, sym, Leg.STOP, side, qty, stop_price=_dec(p, "triggerPrice"))
        elif kind == "TRAILING_STOP_MARKET":
            act = _dec(p, "activatePrice") if "activatePrice" in p else None
            req = OrderRequest(cid, sym, Leg.TRAILING, side, qty, activation=act, callback_pct=_dec(p, "callbackRate"))
        else:
            raise VenueError(-1116, "Invalid orderType.")
        o = self._place(req)
        self._algo.add(cid)
        return wire.algo_order(o, self._order_ids[cid], None, _now())

    def _place(self, req: OrderRequest):
        try:
            self.engine.place(req)
        except Rejected as e:
            raise VenueError(getattr(e, "code", -1000), str(e).split(" ", 1)[-1]) from None
        self._order_ids[req.cid] = next(self._ids)
        return self.engine.account.orders[req.cid]

    def _find(self, p: dict[str, str], algo: bool):
        cid = p.get("clientAlgoId") if algo else p.get("origClientOrderId")
        if cid is None:
            key = "algoId" if algo else "orderId"
            cid = next((c for c, i in self._order_ids.items() if str(i) == p.get(key)), None)
        o = self.engine.account.orders.get(cid or "")
        if o is None or (cid in self._algo) != algo or o.symbol != self._symbol(p):
            return None
        return o

    def _view(self, o, algo: bool):
        oid = self._order_ids[o.cid]
        return wire.algo_order(o, oid, oid + 1 if o.status == "filled" else None, _now()) if algo \
            else wire.regular_order(o, oid, _now())

    def _lookup(self, p, algo: bool):
        _only(p, _LOOKUP_PARAMS)
        o = self._find(p, algo)
        if o is None:
            raise VenueError(-2013, "Order does not exist.")
        return self._view(o, algo)

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
            return {"algoId": self._order_ids[o.cid], "clientAlgoId": o.cid, "code": "200", "msg": "success"}
        return self._view(o, algo)

    def _open(self, p, algo: bool):
        sym = self._symbol(p) if "symbol" in p else None
        return [self._view(self.engine.account.orders[o.cid], algo) for o in self.engine.open_orders(sym)
                if (o.cid in self._algo) == algo]

    def _position_risk(self, p):
        sym = self._symbol(p) if "symbol" in p else None
        return [wire.position_risk(v.symbol, v.qty, v.entry_price, self.engine.price(v.symbol), _now())
                for v in self.engine.positions() if sym is None or v.symbol == sym]


def _now() -> int:
    return int(time.time() * 1000)


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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="fake-venue", description="A local Binance USD-M-shaped venue (paper engine).")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0 picks a free port (printed on stdout)")
    ap.add_argument("--latency-ms", type=float, default=0, help="added to every HTTP call")
    ap.add_argument("--tick-ms", type=float, default=500, help="random-walk step of every price; 0 = prices stand still")
    ap.add_argument("--volatility", type=float, default=0.0015)
    args = ap.parse_args(argv)
    engine = PaperEngine(paper_markets(), start_prices(), seed=7, volatility=args.volatility)
    venue = FakeBinance(engine, latency_ms=args.latency_ms, host=args.host, port=args.port)
    print(venue.start(), flush=True)
    done = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: done.set())
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    while not done.wait(args.tick_ms / 1000 if args.tick_ms > 0 else 3600):
        engine.step(args.tick_ms / 1000)
    venue.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
