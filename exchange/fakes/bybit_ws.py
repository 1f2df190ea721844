"""The fake Bybit's websockets: public `tickers.<SYMBOL>` on /v5/public/linear and the private
`order`, `execution`, `position` topics on /v5/private, on the REST server's port.

Frames follow Bybit's docs: websocket/connect.mdx (auth `{"op": "auth", "args": [key, expires,
signature]}` with signature = HMAC-SHA256(secret, "GET/realtime" + expires); subscribe, ping
and their `{"success", "ret_msg", "conn_id", "req_id", "op"}` answers), websocket/public/ticker.mdx
(`{"topic", "type": "snapshot", "data", "cs", "ts"}`) and websocket/private/order.mdx,
execution.mdx, position.mdx (`{"id", "topic", "creationTime", "data": [...]}`).
"""
from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
from typing import Callable

from aiohttp import WSMsgType, web

PRIVATE_TOPICS = {"order", "execution", "position", "wallet"}


class WsHub:
    def __init__(self, *, api_key: str | None, secret: str | None,
                 snapshot: Callable[[str], dict | None]) -> None:
        self.api_key, self.secret = api_key, secret
        self.snapshot = snapshot  # topic -> its current data (tickers), or None
        self.subs: dict[web.WebSocketResponse, set[str]] = {}
        self.authed: set[web.WebSocketResponse] = set()
        self.frames: list[tuple[str, dict]] = []  # (path, frame) of every frame received
        self._ids = itertools.count(1)

    async def public(self, request: web.Request) -> web.WebSocketResponse:
        return await self._serve(request, private=False)

    async def private(self, request: web.Request) -> web.WebSocketResponse:
        return await self._serve(request, private=True)

    async def _serve(self, request: web.Request, *, private: bool) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=None)
        await ws.prepare(request)
        conn = f"fake-{next(self._ids)}"
        self.subs[ws] = set()
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                frame = json.loads(msg.data)
                self.frames.append((request.path, frame))
                await self._on_frame(ws, frame, conn, private)
        finally:
            self.subs.pop(ws, None)
            self.authed.discard(ws)
        return ws

    async def _on_frame(self, ws: web.WebSocketResponse, frame: dict, conn: str, private: bool) -> None:
        op, req_id = frame.get("op"), frame.get("req_id")
        reply = {"success": True, "ret_msg": "", "conn_id": conn, "req_id": req_id, "op": op}
        if op == "ping":
            await ws.send_json(reply | {"ret_msg": "pong"} if not private else
                               {"req_id": req_id, "op": "pong", "args": [str(int(time.time() * 1000))],
                                "conn_id": conn})
        elif op == "auth" and private:
            ok = self._auth_ok(frame.get("args") or [])
            if ok:
                self.authed.add(ws)
            await ws.send_json({"success": ok, "ret_msg": "" if ok else "Params Error", "op": "auth",
                                "conn_id": conn})
        elif op == "subscribe":
            topics = list(frame.get("args") or [])
            if private and (ws not in self.authed or not set(topics) <= PRIVATE_TOPICS):
                await ws.send_json(reply | {"success": False, "ret_msg": "Request not authorized"
                                            if ws not in self.authed else "error:handler not found"})
                return
            self.subs[ws].update(topics)
            await ws.send_json(reply)
            for topic in topics:
                data = self.snapshot(topic)
                if data is not None:
                    await ws.send_json(self._ticker_frame(topic, data))
        else:
            await ws.send_json(reply | {"success": False, "ret_msg": f"error:invalid op {op}"})

    def _auth_ok(self, args: list) -> bool:
        if len(args) != 3:
            return False
        key, expires, signature = args
        if self.api_key and key != self.api_key:
            return False
        try:
            if int(expires) < time.time() * 1000:
                return False
        except (TypeError, ValueError):
            return False
        if self.secret is None:
            return True
        want = hmac.new(self.secret.encode(), f"GET/realtime{expires}".encode(), hashlib.sha256).hexdigest()
        return hmac.compare_digest(want, str(signature))

    @staticmethod
    def _ticker_frame(topic: str, data: dict) -> dict:
        now = int(time.time() * 1000)
        return {"topic": topic, "type": "snapshot", "data": data, "cs": now, "ts": now}

    async def publish_ticker(self, topic: str, data: dict) -> None:
        await self._send(topic, self._ticker_frame(topic, data))

    async def publish_private(self, topic: str, rows: list[dict]) -> None:
        now = int(time.time() * 1000)
        await self._send(topic, {"id": f"fake-{next(self._ids)}", "topic": topic, "creationTime": now,
                                 "data": rows})

    async def _send(self, topic: str, frame: dict) -> None:
        for ws, topics in list(self.subs.items()):
            if topic in topics and not ws.closed:
                try:
                    await ws.send_json(frame)
                except ConnectionError:
                    pass

    async def close_all(self) -> None:
        for ws in list(self.subs):
            await ws.close()
