"""Fixtures' helpers for the ccxt contract tests: a fake Binance venue and a gateway on it."""
from __future__ import annotations

from decimal import Decimal

from core.config import load_config
from exchange.ccxt.build import build_ccxt_gateway
from exchange.fakes.binance_http import FakeBinance
from exchange.paper.engine import PaperEngine
from exchange.paper.universe import paper_markets, start_prices

KEY, SECRET = "test-key-8d1f", "test-secret-5b77c0ffee"


def fake_venue(**kw) -> FakeBinance:
    engine = PaperEngine(paper_markets(), start_prices(), seed=1, slippage_bps=Decimal(0))
    venue = FakeBinance(engine, api_key=KEY, secret=SECRET, **kw)
    venue.start()
    return venue


def binance_overrides(url: str, *extra: str) -> list[str]:
    return ["exchange.name=binanceusdm", f"exchange.api_url={url}", "exchange.poll_interval_ms=100",
            "deadlines.venue_call_s=2", *extra]


def gateway(url: str, *extra: str):
    return build_ccxt_gateway(load_config(None, binance_overrides(url, *extra)))
