"""The local fake venues by `exchange.name`; each is backed by a PaperEngine and offers the same
control surface (start/stop, url/ws_url, engine, requests, inject, clock_skew_ms)."""
from __future__ import annotations

from exchange.fakes.binance_http import FakeBinance
from exchange.fakes.bybit_http import FakeBybit

FAKES: dict[str, type[FakeBinance] | type[FakeBybit]] = {
    "binanceusdm": FakeBinance,
    "bybit": FakeBybit,
}
