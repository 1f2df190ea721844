"""Fixtures' helpers for the ccxt contract tests: a local fake venue and a gateway on it."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest

from core.config import load_config
from exchange.ccxt.build import build_ccxt_gateway
from exchange.fakes.venues import FAKES
from exchange.paper.engine import PaperEngine
from exchange.paper.universe import paper_markets, start_prices

KEY, SECRET = "test-key-8d1f", "test-secret-5b77c0ffee"


@dataclass(frozen=True)
class Profile:
    """What a venue-parametrized test needs to know of each fake: its key variables, the routes
    to inject failures on, and its documented error codes."""

    key_env: tuple[str, str]
    entry_route: str  # where a market entry is sent
    stop_route: str  # where a stop is sent
    stop_lookup_route: str  # where a stop is looked up by client id
    price_route: str  # a public read the adapter makes for one price
    clock_code: int  # timestamp outside the receive window
    rate_limit: dict  # inject(...) arguments for the venue's "too many requests"


PROFILES: dict[str, Profile] = {
    "binanceusdm": Profile(("BINANCE_API_KEY", "BINANCE_API_SECRET"), "POST /fapi/v1/order",
                           "POST /fapi/v1/algoOrder", "GET /fapi/v1/algoOrder", "GET /fapi/v2/ticker/price",
                           -1021, {"code": -1003, "status": 429, "retry_after_s": 30}),
    "bybit": Profile(("BYBIT_API_KEY", "BYBIT_API_SECRET"), "POST /v5/order/create", "POST /v5/order/create",
                     "GET /v5/order/realtime", "GET /v5/market/tickers", 10002, {"status": 403}),
}


def fake_venue(name: str = "binanceusdm", **kw):
    engine = PaperEngine(paper_markets(), start_prices(), seed=1, slippage_bps=Decimal(0))
    venue = FAKES[name](engine, api_key=KEY, secret=SECRET, **kw)
    venue.start()
    return venue


@contextmanager
def keyed_fake(name: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The fake `name` venue running, its keys in the environment, its name on it; stopped after."""
    key_env, secret_env = PROFILES[name].key_env
    monkeypatch.setenv(key_env, KEY)
    monkeypatch.setenv(secret_env, SECRET)
    v = fake_venue(name)
    v.name = name
    try:
        yield v
    finally:
        v.stop()


@contextmanager
def closing_all(open_one: Callable[..., Any]) -> Iterator[Callable[..., Any]]:
    """`open_one`, remembering what it opened: every gateway opened is closed after."""
    made: list[Any] = []

    def _open(*args: Any, **kw: Any) -> Any:
        g = open_one(*args, **kw)
        made.append(g)
        return g

    try:
        yield _open
    finally:
        for g in made:
            g.close()


def venue_overrides(name: str, url: str, *extra: str) -> list[str]:
    more = ["protection.trailing_mode='emulated'"] if name == "bybit" else []
    return [f"exchange.name={name}", f"exchange.api_url={url}", "exchange.poll_interval_ms=100",
            "deadlines.venue_call_s=2", *more, *extra]


def binance_overrides(url: str, *extra: str) -> list[str]:
    return venue_overrides("binanceusdm", url, *extra)


def gateway(url: str, *extra: str, name: str = "binanceusdm"):
    return build_ccxt_gateway(load_config(None, venue_overrides(name, url, *extra)))


@pytest.fixture(name="venue")
def binance_venue(monkeypatch):
    """The fake Binance venue, with its keys in the environment (import it as a fixture)."""
    monkeypatch.setenv("BINANCE_API_KEY", KEY)
    monkeypatch.setenv("BINANCE_API_SECRET", SECRET)
    v = fake_venue()
    yield v
    v.stop()
