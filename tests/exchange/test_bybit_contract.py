"""Bybit v5 linear through real ccxt over loopback HTTP and ccxt.pro websockets, against the
fake Bybit venue (paper engine behind it): what only Bybit has — its request shapes, paging,
settle coins, acknowledged creation, the 10/s write budget, 403 and 10006, account set-up and
hedge mode. The scenarios every venue shares run on Bybit in test_venue_contract.py; the whole
service on it: test_bybit_service.py."""
from __future__ import annotations

import threading
from decimal import Decimal

import pytest

from exchange.ccxt.account import AccountRefused
from exchange.gateway import Acknowledged, Retryable
from tests.support.bybit_helpers import BTC, BTC_USDC, bybit_gateway, bybit_keys, bybit_venue, entry, stop  # noqa: F401 (fixtures)
from tests.support.ccxt_helpers import closing_all
from tests.support.helpers import SYM, wait_for


@pytest.fixture
def make_gw(venue, keys):
    with closing_all(lambda *extra, websocket=False: bybit_gateway(venue, *extra, websocket=websocket)) as opened:
        yield opened


@pytest.fixture
def gw(make_gw):
    return make_gw()


# ---- Bybit's own request shapes and paging (the venue-generic cases: test_venue_contract.py) ----


def test_a_stop_is_a_reduce_only_conditional_market_order_triggered_falling(venue, gw):
    gw.place_order(entry(), 2)
    gw.place_order(stop(), 2)
    first, second = venue.calls("POST /v5/order/create")
    assert first["orderLinkId"] == "wt-p1-e1-1" and first["orderType"] == "Market" and "reduceOnly" not in first
    assert second["orderLinkId"] == "wt-p1-s1-2" and second["reduceOnly"] is True
    assert second["triggerDirection"] == 2 and Decimal(second["triggerPrice"]) == Decimal("63700")


def test_a_stop_cancelled_before_it_fired_is_deactivated_one_fired_unfilled_cancelled(venue, gw):
    """docs v5/enum orderStatus: Deactivated = a conditional order cancelled before it triggered;
    a fired one whose market order filled nothing ends Cancelled with cumExecQty 0."""
    gw.place_order(entry(), 2)
    gw.place_order(stop(), 2)
    gw.place_order(stop("wt-p1-s1-3", "63600.0"), 2)
    gw.cancel_order(BTC, "wt-p1-s1-2", 2)
    venue.inject("trigger", outcome="expire")
    venue.set_price(BTC, Decimal("63500"))

    def read(cid):
        o = gw.loop.call(gw.venue.fetch(gw.ex, BTC, cid), 2)
        return o["info"]["orderStatus"], o["info"]["cumExecQty"], gw.venue.state(o).status
    assert read("wt-p1-s1-2") == ("Deactivated", "0", "cancelled")
    assert read("wt-p1-s1-3") == ("Cancelled", "0", "expired")


def test_recovery_sees_more_than_one_page_of_resting_orders_in_every_symbol(venue, gw, n: int = 60):
    """More resting orders than one page (Bybit: 20 by default, 50 at most), asked 50 a page."""
    names = ["BTC", "ETH", "SOL"]
    for i in range(n):
        sym = SYM[names[i % 3]]
        price = venue.engine.price(sym) * Decimal("0.9") - venue.engine.markets[sym].tick_size * i
        venue.add_order(symbol=sym.split("/")[0] + "USDT", side="Sell", orderType="Market",
                        qty=str(venue.engine.markets[sym].min_qty * 10), orderLinkId=f"wt-p{i}-s1-1",
                        triggerPrice=str(venue.engine.markets[sym].floor_price(price)), triggerDirection=2,
                        reduceOnly=True)
    assert {o.cid for o in gw.open_orders(None, 5)} == {f"wt-p{i}-s1-1" for i in range(n)}
    assert len(gw.open_orders(SYM["BTC"], 5)) == n // 3
    pages = [p for p in venue.calls("GET /v5/order/realtime") if "orderLinkId" not in p]
    assert all(p["limit"] == "50" for p in pages)


# ---- settle coins ----------------------------------------------------------------------


def test_usdc_settled_positions_and_stops_are_read_with_the_usdt_ones(venue, gw):
    assert BTC_USDC in gw.markets()
    gw.place_order(entry(), 2)
    gw.place_order(entry("wt-p2-e1-1", symbol=BTC_USDC), 2)
    gw.place_order(stop("wt-p2-s1-2", symbol=BTC_USDC), 2)
    assert {p.symbol for p in gw.positions(2)} == {BTC, BTC_USDC}
    assert {o.cid for o in gw.open_orders(None, 2)} == {"wt-p2-s1-2"}
    settles = {p.get("settleCoin") for p in venue.calls("GET /v5/position/list") if "settleCoin" in p}
    assert settles == {"USDT", "USDC"}


def test_polls_ask_only_the_settle_coins_that_may_hold_a_position_of_ours(venue, gw):
    def coins():
        return [p["settleCoin"] for p in venue.calls("GET /v5/position/list") if "settleCoin" in p]
    gw.place_order(entry(), 2)
    gw.positions(2)  # the first read asks every settle coin
    n = len(coins())
    gw.positions(2)
    assert sorted(coins()[:n]) == ["USDC", "USDT"] and coins()[n:] == ["USDT"]  # then only where we are
    gw.place_order(entry("wt-p2-e1-1", symbol=BTC_USDC), 2)
    assert {p.symbol for p in gw.positions(2)} == {BTC, BTC_USDC}


# ---- acknowledged, not read back; refused market orders ----------------------------------


def test_an_acknowledged_entry_not_yet_visible_is_not_called_not_placed(venue, gw):
    venue.inject("POST /v5/order/create", hide_s=5)  # asynchronous creation: visible 5 s later
    with pytest.raises(Acknowledged):
        gw.place_order(entry(), 1)
    assert len(venue.calls("GET /v5/order/realtime")) >= 3  # read back with backoff, not once


def test_a_read_back_refused_after_the_acknowledgement_never_refuses_the_order(venue, gw):
    venue.inject("GET /v5/order/realtime", code=10001)  # the order was taken; its read-back is refused
    with pytest.raises(Acknowledged, match="read-back failed"):
        gw.place_order(entry(), 2)
    assert [p.symbol for p in gw.positions(2)] == [BTC]


# ---- rate limits ---------------------------------------------------------------------------


def test_order_writes_stay_within_ten_per_second(venue, gw):
    for i in range(3):
        gw.place_order(entry(f"wt-q{i}-e1-1", symbol=SYM[["BTC", "ETH", "SOL"][i]], qty="1" if i == 2 else "0.01"), 2)
    errors: list[Exception] = []

    def place(i: int) -> None:
        try:
            gw.place_order(stop(f"wt-q{i}-s1-2", price=str(Decimal("60000") - i), qty="0.001"), 5)
        except Exception as e:  # noqa: BLE001 — collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=place, args=(i,)) for i in range(25)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert errors == [] and not [a for a in venue.answers if a[1] == 10006]
    assert len(gw.open_orders(BTC, 5)) == 25
    assert gw.venue.pacer("create").waited > 0


def test_the_request_budget_is_counted_in_bybits_own_weight_unit(venue, make_gw):
    # ccxt writes Bybit's weights for 20 ms a unit (position/list 5 = 10/s); 50 ms gave 2.5x less
    assert make_gw().ex.rateLimit == 20
    assert make_gw("exchange.rate_limit_ms=50").ex.rateLimit == 50


def test_a_403_ban_holds_every_request_for_ten_minutes(venue, gw):
    venue.inject("GET /v5/market/tickers", status=403)
    with pytest.raises(Retryable):
        gw.price(BTC, 2)
    with pytest.raises(Retryable, match=r"rate limited for (600|59\d)\.\ds more; request not sent"):
        gw.place_order(stop(), 2)
    with pytest.raises(Retryable, match="rate limited"):
        gw.positions(2)
    assert venue.calls("POST /v5/order/create") == []


def test_too_many_visits_holds_requests_only_until_the_budget_resets(venue, gw):
    venue.inject("GET /v5/market/tickers", code=10006)  # with the budget's reset a second ahead
    with pytest.raises(Retryable):
        gw.price(BTC, 2)
    assert 0.5 < gw.session.cooldown_until - gw.loop.loop.time() <= 1.0  # held until the reset, not 10 min
    with pytest.raises(Retryable, match="rate limited"):
        gw.price(BTC, 0.3)  # not sent while held
    assert gw.price(BTC, 3) == Decimal("65000")  # then served


# ---- account set-up --------------------------------------------------------------------------


def test_hedge_mode_stops_the_start_with_the_fix_named(venue, keys):
    venue.account.hedge_coins.add("USDT")
    with pytest.raises(AccountRefused, match="one-way.*switch-mode mode=0"):
        bybit_gateway(venue).close()


def test_leverage_and_margin_mode_are_set_and_read_back_before_the_first_entry(venue, make_gw):
    g = make_gw("exchange.leverage=3", "exchange.margin_mode='isolated'")
    assert venue.account.margin_mode == "ISOLATED_MARGIN"  # a unified account: account-wide
    assert BTC not in venue.account.leverage
    g.place_order(entry(), 2)
    assert venue.account.leverage[BTC] == "3"
    g.place_order(entry("wt-p1-e1-9"), 2)
    assert len(venue.calls("POST /v5/position/set-leverage")) == 1  # once per symbol
    assert g.account.ready() == [BTC]


def test_an_entry_whose_symbol_cannot_be_set_up_is_refused_before_it_is_sent(venue, make_gw):
    g = make_gw("exchange.leverage=3")
    venue.inject("POST /v5/position/set-leverage", code=10001)
    with pytest.raises(Exception, match="account set-up of BTC/USDT:USDT"):
        g.place_order(entry(), 2)
    assert venue.calls("POST /v5/order/create") == []


# ---- documented failure modes of the fake itself -------------------------------------------


def test_history_lags_but_a_lookup_by_order_link_id_finds_a_fresh_fill(venue, gw):
    venue.history_delay_s = 60
    gw.place_order(entry(), 2)
    gw.place_order(stop(), 2)
    venue.set_price(BTC, Decimal("63600"))
    assert gw.fetch_order(BTC, "wt-p1-s1-2", 2).status == "filled"  # realtime keeps recent closed orders

    async def history():
        return await gw.ex.fetch_canceled_and_closed_orders(BTC, None, None, {"orderLinkId": "wt-p1-s1-2"})
    assert gw.loop.call(history(), 2) == []  # not in order/history yet


def test_the_private_execution_and_position_topics_reach_ccxt_pro(venue, make_gw):
    g = make_gw(websocket=True)
    trades = g.loop.spawn(g.ex.watch_my_trades())
    assert g.loop.spawn(g.ex.watch_positions()).result(10) == []  # ccxt.pro's REST snapshot first
    positions = g.loop.spawn(g.ex.watch_positions())
    wait_for(lambda: {"execution", "position"} <= {t for ts in list(venue.hub.subs.values()) for t in ts},
             10, "both subscriptions")
    g.place_order(entry(), 2)
    (trade,) = trades.result(10)
    assert (trade["symbol"], trade["side"], trade["amount"], trade["price"]) == (BTC, "buy", 0.003, 65000.0)
    assert trade["info"]["orderLinkId"] == "wt-p1-e1-1"
    (pos,) = positions.result(10)
    assert (pos["symbol"], pos["side"], pos["contracts"]) == (BTC, "long", 0.003)


def test_amending_a_resting_stop_moves_its_trigger_in_place(venue, gw):
    gw.place_order(entry(), 2)
    gw.place_order(stop(), 2)
    oid = venue.orders["wt-p1-s1-2"].order_id

    async def amend():
        return await gw.ex.edit_order(oid, BTC, "market", "sell", None, None, {"triggerPrice": "64000"})
    assert gw.loop.call(amend(), 3)["clientOrderId"] == "wt-p1-s1-2"
    (moved,) = gw.open_orders(BTC, 2)
    assert (moved.cid, moved.stop_price) == ("wt-p1-s1-2", Decimal("64000"))
