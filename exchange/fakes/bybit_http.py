"""A local venue shaped like Bybit v5 (linear perpetuals, USDT- and USDC-settled), backed by
the paper engine: REST and websockets on one port.

Contract tests point real ccxt / ccxt.pro clients at it; operators can run it standalone
(`bin/fake-venue --venue bybit`). It answers in Bybit's envelope, checks signed requests
(HMAC over timestamp + key + recvWindow + query/body, and the timestamp window), ignores
parameters it does not know — as Bybit does, which is why the adapter refuses them first —
and keeps Bybit's documented limits: 10 order creations/cancels per second per account
(10006), open orders 20 a page by default and 50 at most with a cursor. Documented failure
modes are injectable per route: an error code (10006, 10002, 110001, …) or HTTP 403, a late
answer, asynchronous creation (acknowledged now, visible later), a market order cut short
(zero or partial fill), and history that lags (`history_delay_s`).
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import time
from decimal import Decimal
from typing import Any, Callable

from aiohttp import web

from core.types import MarketSpec
from exchange.fakes import bybit_wire as wire
from exchange.fakes.bybit_account import BybitAccountState, account_routes
from exchange.fakes.bybit_orders import MESSAGES, BybitError, Inject, OrderEndpoints
from exchange.fakes.bybit_ws import WsHub
from exchange.fakes.server import FakeVenue
from exchange.gateway import OrderState
from exchange.paper.engine import PaperEngine, PaperOrder
from exchange.paper.universe import paper_markets, start_prices

# A USDC-settled perpetual next to the USDT ones (market/instrument.mdx lists both as linear).
USDC_MARKETS = {"BTC/USDC:USDC": (MarketSpec("BTC/USDC:USDC", Decimal("0.1"), Decimal("0.001"),
                                             Decimal("0.001"), Decimal("5")), Decimal("65000")),
                "ETH/USDC:USDC": (MarketSpec("ETH/USDC:USDC", Decimal("0.01"), Decimal("0.01"),
                                             Decimal("0.01"), Decimal("5")), Decimal("3400"))}
PUBLIC_PREFIX = "/v5/market/"
WRITE_PATHS = {"/v5/order/create", "/v5/order/cancel", "/v5/order/amend"}
WRITES_PER_S = 10  # rate-limit.mdx: per UID per second, each path


def default_engine(*, seed: int = 1, volatility: float = 0.0008) -> PaperEngine:
    """The paper symbols (USDT-settled) plus USDC-settled perpetuals, no slippage."""
    markets = paper_markets() | {s: spec for s, (spec, _) in USDC_MARKETS.items()}
    prices = start_prices() | {s: p for s, (_, p) in USDC_MARKETS.items()}
    return PaperEngine(markets, prices, seed=seed, volatility=volatility, slippage_bps=Decimal(0))


class FakeBybit(OrderEndpoints, FakeVenue):
    name = "fake-bybit"
    rule = Inject

    def __init__(self, engine: PaperEngine | None = None, *, latency_ms: float = 0, api_key: str | None = None,
                 secret: str | None = None, host: str = "127.0.0.1", port: int = 0,
                 history_delay_s: float = 0.0, writes_per_s: int | None = WRITES_PER_S,
                 ticker_interval_s: float = 0.1) -> None:
        super().__init__(engine or default_engine(), host, port)
        self.latency_s = latency_ms / 1000
        self.api_key, self.secret = api_key, secret
        self.history_delay_s = history_delay_s
        self.writes_per_s = writes_per_s
        self.ticker_interval_s = ticker_interval_s
        self.clock_skew_ms = 0  # the venue's clock minus ours (drift)
        self.answers: list[tuple[str, int]] = []  # (path, retCode or HTTP status) of every answer
        self.orders: dict[str, wire.OrderRecord] = {}  # by orderLinkId
        self.account = BybitAccountState()
        self.hub = WsHub(api_key=api_key, secret=secret, snapshot=self._snapshot)
        self._ids = itertools.count(1_000_000)
        self._writes: dict[str, list[float]] = {}
        self._by_id = {wire.market_id(s): s for s in self.engine.markets}
        self._sent_prices: dict[str, Decimal] = {}
        self._routes: dict[str, Callable[[dict[str, Any]], Any]] = {
            "GET /v5/market/time": self._time,
            "GET /v5/market/instruments-info": self._instruments,
            "GET /v5/market/tickers": self._tickers,
            "POST /v5/order/create": self._create,
            "POST /v5/order/cancel": self._cancel,
            "POST /v5/order/amend": self._amend,
            "GET /v5/order/realtime": lambda p: self._orders(p, history=False),
            "GET /v5/order/history": lambda p: self._orders(p, history=True),
            "GET /v5/position/list": self._positions,
            **account_routes(self.account, BybitError, self._symbol),
        }
        self.engine.add_listener(self._on_engine_update)
        self.engine.trigger_outcome = self._trigger_outcome

    # ---- control (tests and the standalone runner) -------------------------------------

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/v5/public/linear", self.hub.public)
        app.router.add_get("/v5/private", self.hub.private)
        app.router.add_route("*", "/{tail:.*}", self._handle)

    async def on_started(self) -> None:
        self._loop.create_task(self._push_tickers())

    async def on_stopping(self) -> None:
        await self.hub.close_all()

    def add_order(self, **params: Any) -> dict:
        """Place an order as if through `POST /v5/order/create` (an account's existing orders),
        without HTTP, signing or the rate limit."""
        async def run():
            return self._create({"category": "linear", **params})
        return self.on_loop(run)

    # ---- HTTP --------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        route = f"{request.method} {request.path}"
        raw = request.query_string if request.method == "GET" else await request.text()
        try:
            params: dict[str, Any] = dict(request.query) if request.method == "GET" else json.loads(raw or "{}")
        except ValueError:
            params = {}
        self.requests.append((request.method, request.path, dict(params)))
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        handler = self._routes.get(route)
        if handler is None:
            return web.json_response(wire.envelope({}, 10001, f"route {route} not found", self._now()), status=404)
        rule = next((r for r in self.injects if r.matches(route, params)), None)
        if rule is not None:
            rule.fired += 1
        headers = {"X-Bapi-Limit": str(self.writes_per_s or 0), "X-Bapi-Limit-Status": "9",
                   "X-Bapi-Limit-Reset-Timestamp": str(self._now())}
        try:
            if not request.path.startswith(PUBLIC_PREFIX):
                self._authenticate(request, raw)
            if request.path in WRITE_PATHS:
                self._rate_limit(request.path, headers)
            if rule is not None and not rule.after:
                await asyncio.sleep(rule.delay_s)
                if rule.status is not None:
                    self.answers.append((request.path, rule.status))
                    return web.Response(status=rule.status, text=f"{rule.status} Forbidden: access too frequent")
                if rule.code == 10006:  # the budget resets a second from now
                    headers["X-Bapi-Limit-Status"] = "0"
                    headers["X-Bapi-Limit-Reset-Timestamp"] = str(self._now() + 1000)
                if rule.code is not None:
                    raise BybitError(rule.code)
            result = handler(params | ({"_inject": rule} if rule is not None else {}))
            if rule is not None and rule.after:
                await asyncio.sleep(rule.delay_s)
                if rule.code is not None:
                    raise BybitError(rule.code)
        except BybitError as e:
            self.answers.append((request.path, e.code))
            return web.json_response(wire.envelope({}, e.code, str(e), self._now()), headers=headers)
        self.answers.append((request.path, 0))
        return web.json_response(wire.envelope(result, now=self._now()), headers=headers)

    def _now(self) -> int:
        return wire.now_ms() + self.clock_skew_ms

    def _authenticate(self, request: web.Request, raw: str) -> None:
        """docs v5/guide "Authentication": sign timestamp + key + recvWindow + (query | body);
        the timestamp must satisfy server - recvWindow <= timestamp < server + 1000."""
        key = request.headers.get("X-BAPI-API-KEY")
        if not key or (self.api_key and key != self.api_key):
            raise BybitError(10003)
        ts, window = request.headers.get("X-BAPI-TIMESTAMP", ""), request.headers.get("X-BAPI-RECV-WINDOW", "5000")
        try:
            server, stamp, recv = self._now(), int(ts), int(window)
        except ValueError:
            raise BybitError(10002) from None
        if not server - recv <= stamp < server + 1000:
            raise BybitError(10002, f"{MESSAGES[10002]}. req_timestamp[{stamp}],server_timestamp[{server}],"
                                    f"recv_window[{recv}]")
        if self.secret is not None:
            want = hmac.new(self.secret.encode(), f"{ts}{key}{window}{raw}".encode(), hashlib.sha256).hexdigest()
            if not hmac.compare_digest(want, request.headers.get("X-BAPI-SIGN", "")):
                raise BybitError(10004)

    def _rate_limit(self, path: str, headers: dict[str, str]) -> None:
        if not self.writes_per_s:
            return
        now = time.monotonic()
        sent = [t for t in self._writes.get(path, []) if now - t < 1.0]
        if len(sent) >= self.writes_per_s:
            self._writes[path] = sent
            headers["X-Bapi-Limit-Status"] = "0"
            headers["X-Bapi-Limit-Reset-Timestamp"] = str(self._now() + int((1.0 - (now - sent[0])) * 1000) + 1)
            raise BybitError(10006)
        self._writes[path] = [*sent, now]
        headers["X-Bapi-Limit-Status"] = str(self.writes_per_s - len(sent) - 1)

    # ---- market ------------------------------------------------------------------------

    def _symbol(self, params: dict[str, Any]) -> str:
        sym = self._by_id.get(str(params.get("symbol", "")))
        if sym is None:
            raise BybitError(10001, "params error: symbol invalid")
        return sym

    def _linear(self, params: dict[str, Any]) -> None:
        if params.get("category") != "linear":
            raise BybitError(10001, "params error: category only support linear in this venue")

    def _time(self, p):
        """market/time.mdx."""
        now = self._now()
        return {"timeSecond": str(now // 1000), "timeNano": str(now * 1_000_000)}

    def _instruments(self, p):
        """market/instrument.mdx: one page; an empty cursor is past the end (ccxt asks again with it)."""
        self._linear(p)
        if "cursor" in p or p.get("status") == "PreLaunch":
            return {"category": "linear", "list": [], "nextPageCursor": ""}
        rows = [wire.instrument(s, spec) for s, spec in self.engine.markets.items()
                if "symbol" not in p or wire.market_id(s) == p["symbol"]]
        return {"category": "linear", "list": rows, "nextPageCursor": ""}

    def _tickers(self, p):
        """market/tickers.mdx."""
        self._linear(p)
        syms = [self._symbol(p)] if "symbol" in p else list(self.engine.markets)
        return {"category": "linear", "list": [wire.ticker(s, self.engine.price(s)) for s in syms]}

    # ---- websocket pushes --------------------------------------------------------------

    def _snapshot(self, topic: str) -> dict | None:
        kind, _, market = topic.partition(".")
        sym = self._by_id.get(market) if kind == "tickers" else None
        return wire.ticker(sym, self.engine.price(sym)) if sym else None

    async def _push_tickers(self) -> None:
        while True:
            await asyncio.sleep(self.ticker_interval_s)
            for sym, price in list(self.engine.account.prices.items()):
                if self._sent_prices.get(sym) != price:
                    self._sent_prices[sym] = price
                    await self.hub.publish_ticker(f"tickers.{wire.market_id(sym)}", wire.ticker(sym, price))

    def _trigger_outcome(self, order: PaperOrder) -> str:
        """Engine hook (its lock held): what an injected "trigger" rule makes this fired stop
        do — "expire": its market order is cancelled with nothing filled (create-order: "If
        there is insufficient liquidity, the order will be cancelled"; conditional orders: "if
        the margin is insufficient after trigger the order will be cancelled")."""
        params = {"orderLinkId": order.cid, "symbol": wire.market_id(order.symbol)}
        rule = next((r for r in self.injects if r.route == "trigger" and r.matches("trigger", params)), None)
        if rule is None:
            return "fill"
        rule.fired += 1
        return rule.outcome or "fill"

    def _on_engine_update(self, state: OrderState) -> None:
        """A resting stop triggered (from whichever thread moved the price)."""
        rec = self.orders.get(state.cid)
        if rec is None:
            return
        if state.status != "open" and rec.closed_ms is None:
            rec.closed_ms = self._now()
        self._loop.call_soon_threadsafe(self._publish_now, state.cid, state.status == "filled",
                                        state.status in ("filled", "expired"))

    def _publish_soon(self, cid: str, fill: bool = False) -> None:
        self._loop.call_soon(self._publish_now, cid, fill)

    def _publish_now(self, cid: str, fill: bool, fired: bool = False) -> None:
        """Push the order's state on the `order` topic; a fired stop first as "Triggered"."""
        rec = self.orders.get(cid)
        if rec is None:
            return
        live = self.engine.account.orders.get(cid)
        row = wire.order(rec, live, self._now()) | {"category": "linear"}
        self._loop.create_task(self._push_order([wire.triggered(row), row] if fired else [row]))
        filled = rec.filled if rec.filled is not None else (live.filled_qty if live else Decimal(0))
        avg = rec.avg if rec.status is not None else (live.avg_price if live else None)
        if fill and filled and avg is not None:
            self._loop.create_task(self.hub.publish_private(
                "execution", [wire.execution(rec, filled, avg, f"fake-exec-{next(self._ids)}")]))
            qty = {v.symbol: v for v in self.engine.positions()}.get(rec.symbol)
            lev = self.account.leverage.get(rec.symbol, "10")
            pos = wire.position(rec.symbol, qty.qty if qty else Decimal(0), qty.entry_price if qty else None,
                                self.engine.price(rec.symbol), lev)
            self._loop.create_task(self.hub.publish_private("position", [pos | {"category": "linear"}]))

    async def _push_order(self, rows: list[dict]) -> None:
        for row in rows:  # one message per status change, in order
            await self.hub.publish_private("order", [row])
