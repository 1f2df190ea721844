"""The fake Binance venue's websockets, on its HTTP port: the private user-data stream and the
public market stream.

Paths are the ones ccxt.pro 4.5.90 derives from the linear base `…/ws` (`get_ws_url`): the user
data stream at `/private/ws?listenKey=<key>` (also the older `/ws/<key>`), market streams at
`/market/ws/<n>` (also `/public/ws` and `/ws`), where a client sends
`{"method": "SUBSCRIBE", "params": ["!miniTicker@arr"], "id": 1}` and is answered
`{"result": null, "id": 1}` (Binance "Live Subscribing/Unsubscribing to streams").
Events are queued per connection in the order they were published.
"""
from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from typing import Callable

from aiohttp import WSMsgType, web

from exchange.fakes import binance_events as events

PRICE_PUSH_S = 0.1  # how often changed prices go out on `!miniTicker@arr` (Binance: 1000 ms)


class StreamHub:
    def __init__(self, loop: asyncio.AbstractEventLoop, prices: Callable[[], dict[str, Decimal]],
                 now_ms: Callable[[], int], listen_keys: set[str]) -> None:
        self._loop = loop
        self._prices = prices
        self._now = now_ms
        self._keys = listen_keys
        self._private: list[asyncio.Queue] = []
        self._tickers: list[asyncio.Queue] = []
        self._sent: dict[str, Decimal] = {}
        self.private_connections = 0
        self._pusher: asyncio.Task | None = None

    # ---- publishing (any thread) ------------------------------------------------------

    def publish(self, *evs: dict) -> None:
        """Queue user-data events for every private connection, in this order."""
        if evs and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._fan_out, evs)

    def _fan_out(self, evs: tuple[dict, ...]) -> None:
        for q in self._private:
            for ev in evs:
                q.put_nowait(ev)

    async def _push_prices(self) -> None:
        while True:
            await asyncio.sleep(PRICE_PUSH_S)
            if not self._tickers:
                continue
            prices = self._prices()
            changed = {s: p for s, p in prices.items() if self._sent.get(s) != p}
            self._sent.update(changed)
            if changed:
                frame = events.mini_tickers(changed, self._now())
                for q in self._tickers:
                    q.put_nowait(frame)

    # ---- connections (on the venue loop) ---------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path.rstrip("/")
        if path == "/private/ws" or (path.startswith("/ws/") and path[4:] in self._keys):
            key = request.query.get("listenKey") or path.rsplit("/", 1)[-1]
            if key not in self._keys:
                return web.json_response({"code": -1125, "msg": "This listenKey does not exist."}, status=400)
            return await self._serve(request, private=True)
        if any(path == b or path.startswith(b + "/") for b in ("/market/ws", "/public/ws", "/ws")):
            return await self._serve(request, private=False)  # ccxt.pro appends a stream number
        return web.json_response({"code": -5000, "msg": f"Path {request.path} is invalid"}, status=404)

    async def _serve(self, request: web.Request, *, private: bool) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=30)
        await ws.prepare(request)
        q: asyncio.Queue = asyncio.Queue()
        if private:
            self.private_connections += 1
            self._private.append(q)
        writer = asyncio.ensure_future(self._write(ws, q))
        try:
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT or private:
                    continue
                await self._command(msg.data, q)
        finally:
            writer.cancel()
            for subs in (self._private, self._tickers):
                if q in subs:
                    subs.remove(q)
        return ws

    async def _command(self, text: str, q: asyncio.Queue) -> None:
        try:
            req = json.loads(text)
        except ValueError:
            q.put_nowait({"code": 3, "msg": "Invalid JSON"})
            return
        streams = req.get("params") or []
        if req.get("method") == "SUBSCRIBE" and "!miniTicker@arr" in streams and q not in self._tickers:
            self._tickers.append(q)
            if self._pusher is None:
                self._pusher = asyncio.ensure_future(self._push_prices())
            q.put_nowait({"result": None, "id": req.get("id")})
            q.put_nowait(events.mini_tickers(self._prices(), self._now()))  # a full first frame
            return
        if req.get("method") == "UNSUBSCRIBE" and q in self._tickers:
            self._tickers.remove(q)
        q.put_nowait({"result": None, "id": req.get("id")})

    @staticmethod
    async def _write(ws: web.WebSocketResponse, q: asyncio.Queue) -> None:
        while True:
            ev = await q.get()
            await ws.send_str(json.dumps(ev))
