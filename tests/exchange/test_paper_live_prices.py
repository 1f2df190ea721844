"""Paper on live prices: the paper venue matches against a venue's public price stream (here
the local Binance-shaped venue's public REST ticker), with no key ever sent."""
from __future__ import annotations

from decimal import Decimal

from core.faults import FaultPlan
from core.position_types import Leg
from exchange.factory import build_gateway
from exchange.gateway import OrderRequest
from tests.support.ccxt_helpers import fake_venue
from tests.support.helpers import make_config, wait_for

BTC = "BTC/USDT:USDT"


def test_paper_venue_trades_on_the_public_prices_of_a_real_venue(tmp_path):
    venue = fake_venue()
    venue.engine.set_price(BTC, Decimal("70123.4"))
    cfg = make_config(tmp_path, "paper.prices='live:binanceusdm'", f"exchange.api_url={venue.url}",
                      "exchange.poll_interval_ms=50", "paper.tick_interval_ms=20", "paper.state_file=''",
                      "paper.slippage_bps=0")
    gw = build_gateway(cfg, FaultPlan())
    ticks, updates = [], []
    try:
        gw.subscribe(lambda s, p: ticks.append((s, p)), updates.append)
        assert gw.engine.price(BTC) == Decimal("70123.4")  # the first prices are read at start
        gw.place_order(OrderRequest("wt-p1-e1-1", BTC, Leg.ENTRY, "buy", Decimal("0.01")), timeout=2)
        gw.place_order(OrderRequest("wt-p1-s1-2", BTC, Leg.STOP, "sell", Decimal("0.01"),
                                    stop_price=Decimal("69000")), timeout=2)
        venue.engine.set_price(BTC, Decimal("68900"))  # the real market falls through the stop
        wait_for(lambda: any(u.cid == "wt-p1-s1-2" and u.status == "filled" for u in updates), 10,
                 "the paper stop to fill on the venue's price")
        assert (BTC, Decimal("68900")) in ticks
        assert gw.engine.positions() == []
    finally:
        gw.close()
        venue.stop()
    paths = {path for _m, path, _p in venue.requests}
    assert "/fapi/v2/ticker/price" in paths and "/fapi/v1/exchangeInfo" in paths
    assert all("signature" not in params and "/order" not in path for _m, path, params in venue.requests)
    assert venue.engine.open_orders() == []  # nothing was ever placed on the real venue
