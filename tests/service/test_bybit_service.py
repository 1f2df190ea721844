"""The whole service on Bybit v5 linear: real ccxt over loopback HTTP and ccxt.pro websockets
against the fake Bybit venue — protection, stops fired at the venue, emulated trailing, refused
and acknowledged entries, a restart with pages of resting orders."""
from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import select

from persistence.models import PositionRow, SignalRow
from tests.support.bybit_helpers import BTC, bybit_keys, bybit_overrides, bybit_venue  # noqa: F401 (fixtures)
from tests.support.helpers import SYM, wait_for, wave


def _rows(svc):
    with svc.db.tx("db_read") as tx:
        return ({p.symbol: p for p in tx.scalars(select(PositionRow))},
                {s.symbol: s for s in tx.scalars(select(SignalRow))})


def _one_wave(svc, *names: str) -> None:
    svc.submit(wave("w1", *[(SYM[n], "long", 1.0) for n in names]), "test")
    wait_for(lambda: svc.stats.waves, 30, "the wave")


def test_an_acknowledged_entry_the_venue_holds_ends_protected_not_failed(start_service, venue, keys):
    venue.inject("POST /v5/order/create", hide_s=60)  # the order never shows; the position does
    svc = start_service(*bybit_overrides(venue, "risk.max_positions_per_wave=1", "deadlines.venue_call_s=1"))
    _one_wave(svc, "BTC")
    positions, signals = _rows(svc)
    assert svc.stats.waves[0].outcomes == {"protected": 1}, signals[BTC].reason
    (held,) = venue.engine.positions()
    assert positions[BTC].qty == held.qty and positions[BTC].entry_price == held.entry_price
    assert [o.cid for o in venue.engine.open_orders(BTC)] == [positions[BTC].stop_cid]


def test_a_market_entry_cancelled_with_nothing_filled_is_a_refused_entry(start_service, venue, keys):
    venue.inject("POST /v5/order/create", fill_qty=Decimal(0))  # IOC found no liquidity
    svc = start_service(*bybit_overrides(venue, "risk.max_positions_per_wave=1"))
    _one_wave(svc, "BTC")
    positions, signals = _rows(svc)
    assert svc.stats.waves[0].outcomes == {"failed": 1}
    assert "nothing filled" in signals[BTC].reason
    assert len(venue.calls("POST /v5/order/create")) == 1  # no stop placed for nothing
    assert venue.engine.positions() == [] and positions[BTC].phase == "failed"


def test_a_partly_filled_market_entry_is_protected_for_what_filled(start_service, venue, keys):
    venue.inject("POST /v5/order/create", fill_qty=Decimal("0.002"))  # of 0.003
    svc = start_service(*bybit_overrides(venue, "risk.max_positions_per_wave=1",
                                         "risk.position_notional_usdt=200"))
    _one_wave(svc, "BTC")
    positions, _ = _rows(svc)
    assert svc.stats.waves[0].outcomes == {"protected": 1}
    assert positions[BTC].qty == Decimal("0.002")
    stops = [p for p in venue.calls("POST /v5/order/create") if p.get("triggerPrice")]
    assert [Decimal(p["qty"]) for p in stops] == [Decimal("0.002")]


def _working_entry(start_service, venue, filled: str):
    """The entry's answer is lost (a plain timeout) while the venue still works the order."""
    venue.inject("POST /v5/order/create", delay_s=3, after=True, working=True, fill_qty=Decimal(filled))
    svc = start_service(*bybit_overrides(venue, "risk.max_positions_per_wave=1", "deadlines.venue_call_s=1",
                                         "risk.position_notional_usdt=200"))
    _one_wave(svc, "BTC")
    (entry,) = [r for r in venue.orders.values() if r.leg.value == "e"]
    assert entry.status == "cancelled", "an entry still working was left to fill behind our back"
    return svc


def test_an_entry_still_working_after_a_timeout_is_cancelled_and_kept_for_what_filled(start_service, venue, keys):
    svc = _working_entry(start_service, venue, "0.002")  # of 0.003: PartiallyFilled
    positions, _ = _rows(svc)
    assert svc.stats.waves[0].outcomes == {"protected": 1}
    assert positions[BTC].qty == Decimal("0.002") == venue.engine.positions()[0].qty
    stops = [p for p in venue.calls("POST /v5/order/create") if p.get("triggerPrice")]
    assert [Decimal(p["qty"]) for p in stops] == [Decimal("0.002")]


def test_an_entry_still_new_after_a_timeout_is_cancelled_not_booked_at_full_size(start_service, venue, keys):
    svc = _working_entry(start_service, venue, "0")  # New: nothing filled
    positions, _ = _rows(svc)
    assert svc.stats.waves[0].outcomes == {"failed": 1}
    assert venue.engine.positions() == [] and positions[BTC].phase == "failed"
    assert not [p for p in venue.calls("POST /v5/order/create") if p.get("triggerPrice")]


# ---- the whole service on Bybit ----------------------------------------------------------


@pytest.mark.parametrize("via", ["websocket", "polling"])
def test_a_stop_fired_at_the_venue_closes_the_position_at_the_venues_fill_price(start_service, venue, keys, via):
    extra = ["exchange.poll_interval_ms=600000"] if via == "websocket" else []  # only the socket can tell
    svc = start_service(*bybit_overrides(venue, "risk.max_positions_per_wave=2", *extra,
                                         websocket=via == "websocket"))
    _one_wave(svc, "BTC", "ETH")
    assert svc.stats.waves[0].outcomes == {"protected": 2}
    btc = _rows(svc)[0][BTC]
    venue.set_price(BTC, btc.stop_price - Decimal("50"))
    closed = wait_for(lambda: (p := _rows(svc)[0][BTC]).phase == "closed" and p, 15, "BTC closed")
    assert closed.close_reason == "stop-loss triggered"
    assert closed.exit_price == btc.stop_price - Decimal("50")  # the venue's fill, not a guess
    assert _rows(svc)[0][SYM["ETH"]].phase == "trailing"
    assert svc.gateway.feed.stats.polls == 0 if via == "websocket" else svc.gateway.feed.stats.polls > 0


def test_emulated_trailing_moves_the_stop_on_bybit_new_first_then_old(start_service, venue, keys):
    svc = start_service(*bybit_overrides(venue, "risk.max_positions_per_wave=1"))
    _one_wave(svc, "BTC")
    first = _rows(svc)[0][BTC]
    assert first.trailing_cid is None and first.phase == "trailing"  # emulated: Bybit's only kind
    venue.set_price(BTC, Decimal("66000"))  # past the 1 % activation
    moved = wait_for(lambda: (p := _rows(svc)[0][BTC]).stop_cid != first.stop_cid and p, 10, "stop moved")
    assert moved.stop_price > first.stop_price
    wait_for(lambda: venue.calls("POST /v5/order/cancel"), 5, "old stop cancelled")
    log = [(pa, p.get("orderLinkId")) for m, pa, p in venue.requests if m == "POST"]
    assert log.index(("/v5/order/create", moved.stop_cid)) < log.index(("/v5/order/cancel", first.stop_cid))
    assert [o.cid for o in venue.engine.open_orders(BTC)] == [moved.stop_cid]


def test_recovery_with_pages_of_resting_orders_keeps_each_stop_and_sweeps_every_stray(start_service, venue, keys,
                                                                                     tmp_path):
    db = f"sqlite:///{tmp_path / 'recovery.db'}"
    # polling once a second: 66 cancels and the restart's reads fit ccxt's request budget
    conf = bybit_overrides(venue, "risk.max_positions_per_wave=3", "exchange.poll_interval_ms=1000")
    svc = start_service(*conf, db_url=db)
    _one_wave(svc, "BTC", "ETH", "SOL")
    stops = {p.stop_cid for p in _rows(svc)[0].values()}
    svc.shutdown()
    strays = []
    for name in ("BTC", "ETH", "SOL"):  # newer than our stops: they fill the first pages of each symbol
        sym = SYM[name]
        spec, price = venue.engine.markets[sym], venue.engine.price(sym)
        for i in range(22):
            strays.append(cid := f"wt-gone{name}{i}-s1-1")
            venue.add_order(symbol=name + "USDT", side="Sell", orderType="Market", qty=str(spec.min_qty),
                            orderLinkId=cid, reduceOnly=True, triggerDirection=2,
                            triggerPrice=str(spec.floor_price(price * Decimal("0.8")) - spec.tick_size * i))
    created = len(venue.calls("POST /v5/order/create"))
    svc2 = start_service(*conf, db_url=db)
    assert sorted(svc2.recovery.stray_orders_cancelled) == sorted(strays)
    assert {o.cid for o in venue.engine.open_orders()} == stops  # each stop kept, none duplicated
    assert len(venue.calls("POST /v5/order/create")) == created
