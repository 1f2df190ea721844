"""An aiohttp application on its own event-loop thread, listening on loopback: the plumbing
every fake venue shares (start → URL, stop, run a coroutine on the venue's loop), and the
control surface tests drive every fake venue by (`FakeVenue`)."""
from __future__ import annotations

import asyncio
import threading
from decimal import Decimal
from typing import Any, Callable, ClassVar, Coroutine

from aiohttp import web

from exchange.paper.engine import PaperEngine
from exchange.paper.window import PROTECTION_GAPS_PATH


class LoopbackServer:
    name = "fake venue"

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host, self.port = host, port
        self.url = self.ws_url = ""
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    def add_routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def add_control_routes(self, app: web.Application) -> None:
        """Routes of the fake itself, not of the venue it plays (matched before the venue's)."""

    async def on_started(self) -> None:
        """Background work of the venue (on its loop), once it listens."""

    async def on_stopping(self) -> None:
        """Close what the venue holds open (websockets) before the listener goes."""

    def start(self) -> str:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(ready,), name=self.name, daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError(f"{self.name} did not start")
        return self.url

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(5)

    def on_loop(self, fn: Callable[[], Coroutine[Any, Any, Any]], timeout: float = 5.0) -> Any:
        """Run `fn()` on the venue's loop (from any other thread) and return its result."""
        return asyncio.run_coroutine_threadsafe(fn(), self._loop).result(timeout)

    def _serve(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        self.add_control_routes(app)
        self.add_routes(app)
        self._runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, self.host, self.port)
        self._loop.run_until_complete(site.start())
        self.port = self._runner.addresses[0][1]
        self.url, self.ws_url = f"http://{self.host}:{self.port}", f"ws://{self.host}:{self.port}"
        self._loop.run_until_complete(self.on_started())
        ready.set()
        self._loop.run_forever()

    async def _shutdown(self) -> None:
        """Drop answers still being delayed (injected slowness), then close the listener."""
        await self.on_stopping()
        me = asyncio.current_task()
        for task in [t for t in asyncio.all_tasks() if t is not me]:
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()


class FakeVenue(LoopbackServer):
    """A fake venue backed by a paper engine: the same controls whatever venue it plays —
    `inject` a documented failure mode (`rule` is the venue's kind of rule), move a price,
    read back the requests a route received."""

    rule: ClassVar[type]

    def __init__(self, engine: PaperEngine, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self.engine = engine
        self.requests: list[tuple[str, str, dict[str, Any]]] = []  # (method, path, params) of each request
        self.injects: list[Any] = []

    def add_control_routes(self, app: web.Application) -> None:
        app.router.add_get(PROTECTION_GAPS_PATH, self._protection_gaps)

    async def _protection_gaps(self, request: web.Request) -> web.Response:
        """The engine's record of each position's window (entry fill → first resting stop), so a
        service rehearsing against this fake reports what the venue saw, not its own books."""
        return web.json_response({"gaps": self.engine.protection_gaps()})

    def inject(self, route: str = "*", **kw: Any) -> Any:
        rule = self.rule(route, **kw)
        self.injects.append(rule)
        return rule

    def set_price(self, symbol: str, price: Decimal) -> None:
        self.engine.set_price(symbol, price)

    def calls(self, route: str) -> list[dict[str, Any]]:
        """The params of every request on `route` ("POST /v5/order/create"), in arrival order."""
        method, path = route.split(" ", 1)
        return [p for m, pa, p in self.requests if m == method and pa == path]
