"""One contract suite for every real venue: the ccxt adapter with a real ccxt client over loopback
HTTP, and ccxt.pro over websockets, against each local fake (documented shapes, paper engine
behind it). A scenario that involves the feed runs over both transports: the websocket (REST
polling too slow to matter) and REST polling alone."""
from __future__ import annotations

from decimal import Decimal

import ccxt.async_support as ccxt
import pytest

from core.position_types import Leg
from exchange.ccxt.errors import classify
from exchange.gateway import NotSent, OrderNotFound, OrderRequest, Retryable, UnknownOutcome
from tests.support.ccxt_helpers import PROFILES, closing_all, gateway, keyed_fake
from tests.support.helpers import SYM, wait_for

BTC = SYM["BTC"]
VENUES = ["binanceusdm", "bybit"]


@pytest.fixture(params=VENUES)
def venue(request, monkeypatch):
    with keyed_fake(request.param, monkeypatch) as v:
        yield v


@pytest.fixture
def profile(venue):
    return PROFILES[venue.name]


@pytest.fixture
def open_gateway(venue):
    def _open(*extra: str, transport: str = "poll"):
        if transport == "ws":  # polling once a minute: what arrives comes over the socket
            extra = (f"exchange.ws_url='{venue.ws_url}'", "exchange.poll_interval_ms=60000", *extra)
        return gateway(venue.url, *extra, name=venue.name)

    with closing_all(_open) as opened:
        yield opened


@pytest.fixture
def gw(open_gateway):
    return open_gateway()


def entry(cid="wt-p1-e1-1", qty="0.003", side="buy"):
    return OrderRequest(cid, BTC, Leg.ENTRY, side, Decimal(qty))


def stop(cid="wt-p1-s1-2", price="63700.0", side="sell", qty="0.003"):
    return OrderRequest(cid, BTC, Leg.STOP, side, Decimal(qty), stop_price=Decimal(price))


def subscribed(g):
    ticks, orders = {}, []
    g.subscribe(lambda s, p: ticks.__setitem__(s, p), orders.append)
    if g.feed.websocket:
        wait_for(lambda: g.feed.ws_prices_up, 10, "the price socket")
    return ticks, orders


# ---- orders -----------------------------------------------------------------------------


def test_entry_fills_at_the_venue_price_and_is_held(gw):
    e = gw.place_order(entry(), 2)
    assert (e.status, e.filled_qty, e.avg_price) == ("filled", Decimal("0.003"), Decimal("65000"))
    (pos,) = gw.positions(2)
    assert (pos.symbol, pos.qty, pos.entry_price) == (BTC, Decimal("0.003"), Decimal("65000"))


def test_stop_rests_reduce_only_and_is_watched(gw):
    gw.place_order(entry(), 2)
    s = gw.place_order(stop(), 2)
    assert (s.status, s.leg, s.stop_price) == ("open", Leg.STOP, Decimal("63700"))
    assert [(o.cid, o.stop_price) for o in gw.open_orders(BTC, 2)] == [("wt-p1-s1-2", Decimal("63700"))]
    assert "wt-p1-s1-2" in gw.feed.watched()


def test_native_trailing_rests_where_the_venue_has_one(gw):
    if not gw.supports_native_trailing:
        pytest.skip("no native trailing on this venue: the service emulates it")
    gw.place_order(entry(), 2)
    t = gw.place_order(OrderRequest("wt-p1-t1-3", BTC, Leg.TRAILING, "sell", Decimal("0.003"),
                                    activation=Decimal("65650"), callback_pct=Decimal("0.5")), 2)
    assert (t.status, t.leg) == ("open", Leg.TRAILING)
    assert {o.cid for o in gw.open_orders(BTC, 2)} == {"wt-p1-t1-3"}


def test_trailing_moved_places_the_new_stop_before_cancelling_the_old(gw, venue):
    gw.place_order(entry(), 2)
    gw.place_order(stop("wt-p1-s1-2", "63700.0"), 2)
    gw.place_order(stop("wt-p1-s1-3", "64000.0"), 2)
    assert len(venue.engine.open_orders(BTC)) == 2  # both rest for a moment: never none
    assert gw.cancel_order(BTC, "wt-p1-s1-2", 2).status == "cancelled"
    assert [(o.cid, o.stop_price) for o in gw.open_orders(BTC, 2)] == [("wt-p1-s1-3", Decimal("64000"))]


def test_cancel_is_final_and_a_lookup_says_so(gw):
    gw.place_order(entry(), 2)
    gw.place_order(stop(), 2)
    assert gw.cancel_order(BTC, "wt-p1-s1-2", 2).status == "cancelled"
    assert gw.fetch_order(BTC, "wt-p1-s1-2", 2).status == "cancelled"
    assert "wt-p1-s1-2" not in gw.feed.watched() and gw.open_orders(BTC, 2) == []
    with pytest.raises(OrderNotFound):  # Binance -2011, Bybit 110001
        gw.cancel_order(BTC, "wt-p1-s1-2", 2)


def test_lookups_after_timeouts_find_the_orders_without_duplicates(gw, venue, profile):
    venue.inject(profile.entry_route, delay_s=4, after=True)  # accepted, answer lost
    with pytest.raises(UnknownOutcome):
        gw.place_order(entry(), timeout=1)
    assert gw.fetch_order(BTC, "wt-p1-e1-1", 2).status == "filled"
    venue.inject(profile.stop_route, delay_s=4, after=True)
    with pytest.raises(UnknownOutcome):
        gw.place_order(stop(), timeout=1)
    assert gw.fetch_order(BTC, "wt-p1-s1-2", 2).status == "open"
    assert len(sent(venue, profile.entry_route, "wt-p1-e1-1")) == 1
    assert len(sent(venue, profile.stop_route, "wt-p1-s1-2")) == 1
    assert [p.qty for p in gw.positions(2)] == [Decimal("0.003")]
    with pytest.raises(OrderNotFound):
        gw.fetch_order(BTC, "wt-p1-s1-77", 2)


def sent(venue, route: str, cid: str) -> list[dict]:
    """The requests on `route` that carried client id `cid` (one route may take every kind)."""
    return [p for p in venue.calls(route) if cid in p.values()]


def test_recovery_reads_more_than_fifty_resting_stops(venue, open_gateway):
    first = open_gateway()
    first.place_order(OrderRequest("wt-p9-e1-1", BTC, Leg.ENTRY, "buy", Decimal("0.1")), 2)
    cids = [f"wt-p9-s1-{i + 2}" for i in range(55)]
    for i, cid in enumerate(cids):
        first.place_order(OrderRequest(cid, BTC, Leg.STOP, "sell", Decimal("0.001"),
                                       stop_price=Decimal(60000 + i)), 2)
    second = open_gateway()  # a restart: nothing known but what the venue lists
    listed = {o.cid for o in second.open_orders(None, 5)}
    assert listed == set(cids)
    assert set(second.feed.watched()) == set(cids)


def test_rate_limit_holds_every_request_for_retry_after(gw, venue, profile):
    venue.inject(profile.price_route, **profile.rate_limit)
    with pytest.raises(Retryable):
        gw.price(BTC, 2)
    sent = len(venue.requests)
    with pytest.raises(Retryable, match="not sent"):
        gw.place_order(stop(), 2)
    assert len(venue.requests) == sent


# ---- clock ------------------------------------------------------------------------------


def test_clock_offset_is_measured_at_start(venue, open_gateway):
    venue.clock_skew_ms = -30_000  # the venue's clock is 30 s behind ours
    g = open_gateway()
    assert 29_000 <= g.clock_offset_ms <= 31_000
    assert g.place_order(entry(), 2).status == "filled"  # signed with the venue's time


def test_clock_drift_after_start_is_resynced_and_the_request_sent_once_more(venue, open_gateway, profile):
    g = open_gateway()
    assert abs(g.clock_offset_ms) < 1_000
    set_up_by_trading(g)
    sent = len(venue.calls(profile.entry_route))
    venue.clock_skew_ms = 45_000  # the venue's clock jumps 45 s ahead: our stamps are too old
    assert g.place_order(entry(), 2).status == "filled"
    assert len(venue.calls(profile.entry_route)) == sent + 2  # refused unread (-1021/10002), then sent again
    assert -46_000 <= g.clock_offset_ms <= -44_000
    assert [p.qty for p in g.positions(2)] == [Decimal("0.003")]


def test_clock_drift_met_by_the_account_set_up_is_resynced_and_the_entry_sent_once(venue, open_gateway, profile):
    g = open_gateway()
    venue.clock_skew_ms = 45_000  # before the symbol's first entry: its set-up's calls meet it first
    assert g.place_order(entry(), 2).status == "filled"
    assert len(venue.calls(profile.entry_route)) == 1
    assert -46_000 <= g.clock_offset_ms <= -44_000
    assert [p.qty for p in g.positions(2)] == [Decimal("0.003")]


@pytest.mark.parametrize("first", ["set-up", "entry"])
def test_a_clock_that_stays_off_is_not_sent_not_unknown(venue, open_gateway, profile, monkeypatch, first):
    g = open_gateway()
    if first == "entry":  # else the symbol's account set-up meets the clock before the entry does
        set_up_by_trading(g)

    async def no_sync(_why=None):  # the time endpoint answers, but the clock keeps jumping
        venue.clock_skew_ms += 60_000

    monkeypatch.setattr(g.session, "sync_clock", no_sync)
    venue.clock_skew_ms = 60_000
    with pytest.raises(NotSent) as err:
        g.place_order(entry(), 2)
    assert err.value.code == profile.clock_code
    assert not isinstance(err.value, UnknownOutcome) and venue.engine.positions() == []
    assert ("account set-up of" in str(err.value)) == (first == "set-up")


def set_up_by_trading(g) -> None:
    """In and out of BTC: its account set-up is done, so the next entry is the first call."""
    g.place_order(entry("wt-p0-e1-1"), 2)
    g.place_order(OrderRequest("wt-p0-x1-2", BTC, Leg.EXIT, "sell", Decimal("0.003")), 2)


@pytest.mark.parametrize("message, code", [
    ('binanceusdm {"code":-1021,"msg":"Timestamp for this request is outside of the recvWindow."}', -1021),
    ('bybit {"retCode":10002,"retMsg":"invalid request, please check your server timestamp or recv_window param"}',
     10002)])
@pytest.mark.parametrize("write", [True, False])
def test_invalid_nonce_on_either_venue_means_not_sent(message, code, write):
    err = classify(ccxt.InvalidNonce(message), write=write)
    assert isinstance(err, NotSent) and not isinstance(err, UnknownOutcome) and err.code == code


# ---- the feed: stops fired at the venue -------------------------------------------------


def fire_stop(open_gateway, venue, transport: str, outcome: str | None = None):
    """A long with a resting stop, listened to over `transport`; then the price goes through it."""
    g = open_gateway(transport=transport)
    ticks, orders = subscribed(g)
    g.place_order(entry(), 2)
    g.place_order(stop(), 2)
    if outcome is not None:
        venue.inject("trigger", outcome=outcome)
    venue.set_price(BTC, Decimal("63650"))
    return g, ticks, orders


@pytest.mark.parametrize("transport", ["ws", "poll"])
def test_stop_fired_and_filled_reaches_the_owner_with_the_venue_fill(open_gateway, venue, transport):
    g, ticks, orders = fire_stop(open_gateway, venue, transport)
    (fill,) = wait_for(lambda: orders, 5, "the stop's fill")
    assert (fill.cid, fill.status, fill.avg_price, fill.filled_qty) == \
        ("wt-p1-s1-2", "filled", Decimal("63650"), Decimal("0.003"))
    assert g.positions(2) == [] and "wt-p1-s1-2" not in g.feed.watched()
    wait_for(lambda: ticks.get(BTC) == Decimal("63650"), 5, "the new price")
    assert g.feed.stats.polls == 0 if transport == "ws" else g.feed.stats.polls > 0


@pytest.mark.parametrize("transport", ["ws", "poll"])
def test_stop_whose_market_order_expires_is_handed_back_not_read_as_a_fill(open_gateway, venue, transport):
    g, _ticks, orders = fire_stop(open_gateway, venue, transport, outcome="expire")
    (update,) = wait_for(lambda: orders, 5, "the stop's end")
    assert (update.cid, update.status, update.filled_qty, update.avg_price) == ("wt-p1-s1-2", "expired", 0, None)
    assert [p.qty for p in g.positions(2)] == [Decimal("0.003")]  # still held, and no stop rests
    assert g.open_orders(BTC, 2) == []
