"""The whole service on the real ccxt adapter, over loopback HTTP to the fake Binance venue."""
from __future__ import annotations

import io
from decimal import Decimal

import pytest
from loguru import logger
from sqlalchemy import select

from core.position_types import Leg
from persistence.models import PositionRow
from control.render import status
from tests.support.ccxt_helpers import KEY, SECRET, binance_overrides, binance_venue  # noqa: F401  (fixture)
from tests.support.helpers import SYM, wait_for, wave

NAMES = ["BTC", "ETH", "SOL", "XRP", "DOGE"]




def _positions(svc) -> dict[str, PositionRow]:
    with svc.db.tx("db_read") as tx:
        return {p.symbol: p for p in tx.scalars(select(PositionRow))}


def _open_wave(svc, wave_id: str, names=NAMES) -> None:
    svc.submit(wave(wave_id, *[(SYM[n], "long" if i % 2 == 0 else "short", 1 - i / 10)
                               for i, n in enumerate(names)]), "test")
    wait_for(lambda: any(w.wave_id == wave_id for w in svc.stats.waves), 20, f"wave {wave_id}")


def test_a_wave_on_the_ccxt_venue_leaves_every_position_protected(start_service, venue):
    svc = start_service(*binance_overrides(venue.url, "risk.max_positions_per_wave=5"))
    _open_wave(svc, "w1")
    assert svc.stats.waves[0].outcomes == {"protected": 5}
    resting = {o.cid: o for o in venue.engine.open_orders()}
    held = {p.symbol: p for p in venue.engine.positions()}
    for sym, p in _positions(svc).items():
        assert p.phase == "trailing"
        assert resting[p.stop_cid].leg is Leg.STOP and resting[p.stop_cid].stop_price == p.stop_price
        assert resting[p.trailing_cid].leg is Leg.TRAILING  # native trailing on Binance
        assert abs(held[sym].qty) == p.qty
    algo_ids = {c["clientAlgoId"] for c in venue.calls("POST /fapi/v1/algoOrder")}
    assert algo_ids == {c for p in _positions(svc).values() for c in (p.stop_cid, p.trailing_cid)}


def _transport(venue, transport: str) -> list[str]:
    """Websocket: REST polling once a minute, so what arrives comes over the socket."""
    return [f"exchange.ws_url='{venue.ws_url}'", "exchange.poll_interval_ms=60000"] if transport == "ws" else []


@pytest.mark.parametrize("transport", ["ws", "poll"])
def test_a_triggered_stop_reaches_its_position_through_the_feed(start_service, venue, transport):
    svc = start_service(*binance_overrides(venue.url, "risk.max_positions_per_wave=2", *_transport(venue, transport)))
    _open_wave(svc, "w1", ["BTC", "ETH"])
    btc = _positions(svc)[SYM["BTC"]]
    venue.set_price(SYM["BTC"], btc.stop_price - Decimal("50"))
    closed = wait_for(lambda: (p := _positions(svc)[SYM["BTC"]]).phase == "closed" and p, 10, "BTC closed")
    assert closed.close_reason == "stop-loss triggered"
    assert closed.exit_price == btc.stop_price - Decimal("50")
    assert _positions(svc)[SYM["ETH"]].phase == "trailing"  # the other position is untouched
    assert SYM["BTC"] not in {v.symbol for v in venue.engine.positions()}
    # the closed position's trailing stop was taken off the venue
    wait_for(lambda: not venue.engine.open_orders(SYM["BTC"]), 5, "BTC orders cancelled")


def test_emulated_trailing_replaces_the_stop_new_first_then_old(start_service, venue):
    svc = start_service(*binance_overrides(venue.url, "risk.max_positions_per_wave=1",
                                           "protection.trailing_mode='emulated'"))
    _open_wave(svc, "w1", ["BTC"])
    first = _positions(svc)[SYM["BTC"]]
    assert first.trailing_cid is None and first.phase == "trailing"
    # one price, past activation (1 %): two in a row could each be polled and move the stop twice
    venue.set_price(SYM["BTC"], Decimal("66000"))
    moved = wait_for(lambda: (p := _positions(svc)[SYM["BTC"]]).stop_cid != first.stop_cid and p, 10, "stop moved")
    assert moved.stop_price > first.stop_price
    old_cancel = ("DELETE", "/fapi/v1/algoOrder", first.stop_cid)
    wait_for(lambda: old_cancel in venue.requests_view(), 5, "old stop cancelled")
    log = venue.requests_view()
    assert log.index(("POST", "/fapi/v1/algoOrder", moved.stop_cid)) < log.index(old_cancel)
    assert [o.cid for o in venue.engine.open_orders(SYM["BTC"])] == [moved.stop_cid]


def test_an_entry_accepted_but_answered_too_late_is_adopted_not_sent_twice(start_service, venue):
    venue.inject("POST /fapi/v1/order", delay_s=3, after=True)  # the first entry's answer is lost
    svc = start_service(*binance_overrides(venue.url, "risk.max_positions_per_wave=1",
                                           "deadlines.venue_call_s=1"))
    _open_wave(svc, "w1", ["BTC"])
    assert svc.stats.waves[0].outcomes == {"protected": 1}
    entries = [p for p in venue.calls("POST /fapi/v1/order") if p.get("reduceOnly") is None]
    assert len(entries) == 1
    (held,) = venue.engine.positions()
    assert held.qty == _positions(svc)[SYM["BTC"]].qty


def test_secrets_never_reach_a_log_line(start_service, venue):
    sink = io.StringIO()
    logger.add(sink, level="DEBUG", format="{message} {extra}")
    venue.inject("POST /fapi/v1/algoOrder", code=-2019, times=2)  # exercise the error paths too
    svc = start_service(*binance_overrides(venue.url, "risk.max_positions_per_wave=2", "log.level='DEBUG'"))
    _open_wave(svc, "w1", ["BTC", "ETH"])
    text = sink.getvalue()
    assert "-2019" in text  # the refusals were logged…
    assert SECRET not in text and KEY not in text  # …without the credentials


def test_after_a_restart_positions_are_reconciled_with_the_venue_and_stay_watched(start_service, venue, tmp_path):
    overrides = binance_overrides(venue.url, "risk.max_positions_per_wave=2")
    first = start_service(*overrides)
    _open_wave(first, "w1", ["BTC", "ETH"])
    before = _positions(first)
    first.shutdown()  # resting stops stay on the venue while we are down
    assert len(venue.engine.open_orders()) == 4
    second = start_service(*overrides)  # same database file, same venue
    resting = {c for p in before.values() for c in (p.stop_cid, p.trailing_cid)}
    # reconciliation reads the venue's open orders: the feed watches the stops it finds there
    wait_for(lambda: set(second.gateway.feed.watched()) == resting, 10, "restored stops watched again")
    after = wait_for(lambda: (a := _positions(second)) and all(p.epoch == 2 for p in a.values()) and a,
                     10, "positions restored under a new epoch")
    assert {s: (p.phase, p.stop_cid, p.trailing_cid) for s, p in after.items()} == \
        {s: ("trailing", p.stop_cid, p.trailing_cid) for s, p in before.items()}  # adopted, not re-placed
    assert len(venue.calls("POST /fapi/v1/algoOrder")) == 4
    venue.set_price(SYM["ETH"], after[SYM["ETH"]].stop_price + Decimal("5"))  # ETH is short: stop above
    wait_for(lambda: _positions(second)[SYM["ETH"]].phase == "closed", 10, "ETH stopped out after the restart")


@pytest.mark.parametrize("transport", ["ws", "poll"])
@pytest.mark.parametrize("outcome", ["triggered", "expire"])
def test_a_stop_that_fired_without_filling_makes_its_position_reconcile_and_close(start_service, venue, transport,
                                                                                 outcome):
    """Stuck past the bound (its market order never fills), or its market order expired."""
    svc = start_service(*binance_overrides(venue.url, "risk.max_positions_per_wave=1", "exchange.trigger_stuck_s=0.5",
                                           *_transport(venue, transport)))
    _open_wave(svc, "w1", ["BTC"])
    btc = _positions(svc)[SYM["BTC"]]
    venue.inject("trigger", outcome=outcome)
    venue.set_price(SYM["BTC"], btc.stop_price - Decimal("50"))
    # that stop protects nothing: the position reconciles, finds no resting stop and the
    # market already through its level, and closes at market
    closed = wait_for(lambda: (p := _positions(svc)[SYM["BTC"]]).phase in ("closed", "emergency_closed") and p,
                      15, "BTC re-protected or closed")
    assert "already through stop" in closed.close_reason
    assert SYM["BTC"] not in {v.symbol for v in venue.engine.positions()}


def test_a_stop_filled_while_down_is_booked_at_its_fill_after_the_restart(start_service, venue):
    overrides = binance_overrides(venue.url, "risk.max_positions_per_wave=1")
    first = start_service(*overrides)
    _open_wave(first, "w1", ["BTC"])
    btc = _positions(first)[SYM["BTC"]]
    first.shutdown()
    fill = btc.stop_price - Decimal("20")
    venue.set_price(SYM["BTC"], fill)  # the stop fires while we are down…
    venue.set_price(SYM["BTC"], fill + Decimal("400"))  # …and the market moves on
    second = start_service(*overrides)
    closed = wait_for(lambda: (p := _positions(second)[SYM["BTC"]]).phase == "closed" and p, 10, "BTC closed")
    assert closed.close_reason == "stop-loss filled while down"
    assert closed.exit_price == fill  # the venue's fill, read from actualPrice, not the price now


def test_a_zero_activation_trails_natively_armed_at_the_venue_price(start_service, venue):
    svc = start_service(*binance_overrides(venue.url, "risk.max_positions_per_wave=1",
                                           "protection.trailing_activation_pct=0"))
    _open_wave(svc, "w1", ["BTC"])
    p = _positions(svc)[SYM["BTC"]]
    assert p.trailing_mode == "native" and p.trailing_cid is not None  # not fallen back to emulated
    (sent,) = [c for c in venue.calls("POST /fapi/v1/algoOrder") if c["type"] == "TRAILING_STOP_MARKET"]
    assert "activatePrice" not in sent


def test_status_shows_the_clock_offset_measured_at_start(control_service, venue):
    venue.clock_skew_ms = -20_000  # the venue's clock runs 20 s behind this machine's
    _svc, _plane, client = control_service(*binance_overrides(venue.url))
    st = client.call("status")
    assert 19_000 <= st.venue_clock_offset_ms <= 21_000
    assert f"clock offset {st.venue_clock_offset_ms} ms" in status(st)
