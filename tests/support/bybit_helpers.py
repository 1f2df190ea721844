"""Fixtures' helpers for the Bybit contract tests: the fake Bybit venue and a gateway on it."""
from __future__ import annotations

from decimal import Decimal

import pytest

from core.config import load_config
from core.position_types import Leg
from exchange.ccxt.build import build_ccxt_gateway
from exchange.fakes.bybit_http import FakeBybit
from exchange.gateway import OrderRequest

KEY, SECRET = "bybit-test-key-3c1a", "bybit-test-secret-9e04d2"
BTC, BTC_USDC = "BTC/USDT:USDT", "BTC/USDC:USDC"


def fake_bybit(**kw) -> FakeBybit:
    venue = FakeBybit(api_key=KEY, secret=SECRET, **kw)
    venue.start()
    return venue


def bybit_overrides(venue: FakeBybit, *extra: str, websocket: bool = False) -> list[str]:
    ws = [f"exchange.ws_url={venue.ws_url}"] if websocket else []
    return ["exchange.name=bybit", f"exchange.api_url={venue.url}", *ws, "exchange.poll_interval_ms=100",
            "deadlines.venue_call_s=2", *extra]


def bybit_gateway(venue: FakeBybit, *extra: str, websocket: bool = False):
    return build_ccxt_gateway(load_config(None, bybit_overrides(venue, *extra, websocket=websocket)))


def entry(cid="wt-p1-e1-1", qty="0.003", side="buy", symbol=BTC):
    return OrderRequest(cid, symbol, Leg.ENTRY, side, Decimal(qty))


def stop(cid="wt-p1-s1-2", price="63700.0", side="sell", qty="0.003", symbol=BTC):
    return OrderRequest(cid, symbol, Leg.STOP, side, Decimal(qty), stop_price=Decimal(price))


@pytest.fixture(name="venue")
def bybit_venue():
    """The fake Bybit venue (import it as a fixture: it is `venue` in the tests that do)."""
    v = fake_bybit()
    yield v
    v.stop()


@pytest.fixture(name="keys")
def bybit_keys(monkeypatch):
    """The fake Bybit venue's keys in the environment (import it as a fixture: `keys`)."""
    monkeypatch.setenv("BYBIT_API_KEY", KEY)
    monkeypatch.setenv("BYBIT_API_SECRET", SECRET)
