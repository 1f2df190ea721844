"""Recovery never strips protection, and never adopts a position its own stop just closed.

Judged from the paper venue itself: every cancel it receives is checked, at that moment,
against the positions and resting stops the venue holds — not against our rows."""
from __future__ import annotations

import threading
from decimal import Decimal

from sqlalchemy import select, update

from core.position_types import Leg
from exchange.gateway import OrderRequest
from exchange.paper.engine import PaperEngine
from exchange.paper.store import PaperStore
from exchange.paper.universe import paper_markets, start_prices
from persistence.db import Database
from persistence.models import EventRow, PositionRow
from service.app import Service
from tests.support.helpers import SYM, make_config, wait_for, wave
from tests.support.recovery_checks import wait_agreed

NAMES = ("BTC", "ETH", "SOL", "XRP")


def opened(start_service, db_url, names) -> dict[str, PositionRow]:
    svc = start_service(f"risk.max_positions_per_wave={len(names)}", db_url=db_url)
    svc.submit(wave("w1", *[(SYM[n], "long", 1 - i / 10) for i, n in enumerate(names)]), "t")
    wait_for(lambda: svc.stats.waves, what="first wave")
    assert svc.stats.waves[0].outcomes == {"protected": len(names)}
    with svc.db.tx("db_read") as tx:
        rows = {r.symbol: r for r in tx.scalars(select(PositionRow))}
    svc.shutdown()
    return rows


class StopCancels:
    """Wraps the venue's cancel: records every cancel of a resting stop-loss on a symbol where
    the venue holds a position, and whether it was that position's last resting stop."""

    def __init__(self, engine) -> None:
        self.engine, self.inner = engine, engine.cancel
        self.of_held: list[str] = []
        self.naked: list[str] = []
        engine.cancel = self.cancel

    def cancel(self, cid: str):
        e = self.engine
        o = e.account.orders.get(cid)
        if o is not None and o.status == "open" and o.leg is Leg.STOP:
            pos = e.account.positions.get(o.symbol)
            if pos is not None and pos.qty != 0:
                self.of_held.append(f"{cid} on {o.symbol} (venue holds {pos.qty})")
                if not [x for x in e.open_orders(o.symbol) if x.cid != cid and x.leg is Leg.STOP]:
                    self.naked.append(self.of_held[-1])
        return self.inner(cid)


def test_a_slow_restart_never_cancels_the_stop_of_a_held_position(start_service, db_url, tmp_path):
    """The venue holds four positions, each with its stop and trailing stop resting, that the
    database records as closed (as a second owner left it). At 2 s per venue call, recovery
    adopts each with the stops already resting on it: no stop of a position the venue holds is
    ever cancelled, nothing is re-placed, and a stop that fills later closes its position."""
    before = opened(start_service, db_url, NAMES)
    db = Database(db_url)
    with db.tx("db_write") as tx:
        tx.execute(update(PositionRow).values(phase="closed", active_symbol=None, exit_price=Decimal(1),
                                              close_reason="recorded closed by another process"))
    db.dispose()

    cfg = make_config(tmp_path, "paper.latency_ms=2000", db_url=db_url)
    svc = Service(cfg)
    engine = svc.gateway.engine
    watch = StopCancels(engine)
    placed_before = set(engine.account.orders)
    try:
        svc.start(with_source=False)
        assert watch.of_held == [], f"stops of held positions cancelled: {watch.of_held}"
        rep = svc.recovery
        assert sorted(rep.unknown_venue_positions) == sorted(f"{SYM[n]} {before[SYM[n]].qty}: adopt" for n in NAMES)
        assert rep.stray_orders_cancelled == [] and rep.stray_orders_kept == []
        assert set(engine.account.orders) == placed_before  # nothing re-placed
        wait_agreed(svc.db, engine, timeout=30)
        with svc.db.tx("db_read") as tx:
            adopted = {r.symbol: r for r in tx.scalars(select(PositionRow).where(PositionRow.origin == "adopted"))}
        for n in NAMES:
            old, new = before[SYM[n]], adopted[SYM[n]]
            assert (new.stop_cid, new.trailing_cid, new.stop_price) == (old.stop_cid, old.trailing_cid, old.stop_price)
        btc = adopted[SYM["BTC"]]
        engine.set_price(SYM["BTC"], btc.stop_price - Decimal(1))  # its taken-over stop fills
        wait_for(lambda: phase_of(svc, btc.id) == "closed", timeout=30, what="BTC closed by its adopted stop")
        assert watch.naked == []
    finally:
        svc.shutdown()


def venue_file(tmp_path) -> PaperEngine:
    """The paper venue on its own, as it lives on while the trader is down."""
    return PaperEngine(paper_markets(), start_prices(), store=PaperStore(tmp_path / "paper-venue.db"))


def phase_of(svc, pid: str) -> str:
    with svc.db.tx("db_read") as tx:
        return tx.scalar(select(PositionRow.phase).where(PositionRow.id == pid))


def test_a_stop_that_fills_during_recovery_is_recorded_closed_by_it_never_adopted(start_service, db_url, tmp_path):
    """BTC's stop fills at the venue after its position reconciled but while recovery is still
    sweeping the account (a read of the venue already taken holds BTC). BTC is recorded
    closed by that stop at its fill price, and no phantom is adopted for it."""
    btc = SYM["BTC"]
    row = opened(start_service, db_url, ("BTC",))[btc]
    cfg = make_config(tmp_path, db_url=db_url)
    svc = Service(cfg)
    engine, gw = svc.gateway.engine, svc.gateway
    inner = gw.positions
    fired = threading.Event()

    def phase() -> str:
        with svc.db.tx("db_read") as tx:
            return tx.scalar(select(PositionRow.phase).where(PositionRow.id == row.id))

    def reconciled() -> bool:
        with svc.db.tx("db_read") as tx:
            return tx.scalar(select(EventRow.id).where(EventRow.position_id == row.id,
                                                       EventRow.kind == "reconciled")) is not None

    def fill_the_stop() -> None:
        engine.set_price(btc, row.stop_price - Decimal(1))
        wait_for(lambda: phase() == "closed", what="BTC closed by its stop")

    def positions(timeout):
        got = inner(timeout=timeout)  # the venue as it was; the stop fills right after this read
        if not fired.is_set() and reconciled() and any(p.symbol == btc for p in got):
            fired.set()
            fill_the_stop()
        return got

    gw.positions = positions
    try:
        svc.start(with_source=False)
        if not fired.is_set():  # recovery read the venue only before BTC reconciled
            fill_the_stop()
        with svc.db.tx("db_read") as tx:
            rows = list(tx.scalars(select(PositionRow)))
            unknown = tx.scalars(select(EventRow).where(EventRow.kind == "venue_position_unknown")).all()
        assert [r.origin for r in rows] == ["signal"], "a phantom position was adopted"
        assert unknown == [] and svc.recovery.unknown_venue_positions == []
        (closed,) = rows
        assert closed.phase == "closed" and closed.close_reason == "stop-loss triggered"
        assert closed.exit_price == engine.fetch(row.stop_cid).avg_price
        assert engine.positions() == []
    finally:
        svc.shutdown()


def test_a_stray_stop_is_kept_while_it_is_the_only_protection_of_a_held_position(start_service, db_url, tmp_path):
    """Policy "report": the venue's DOGE position is not adopted, so nobody of ours protects it;
    the stop of ours resting on it (its position not open in our database) stays, reported."""
    doge, stray, lone = SYM["DOGE"], "wt-0123456789ab-s1-1", "wt-ba9876543210-s1-1"
    start_service(db_url=db_url).shutdown()  # an empty database with its schema
    venue = venue_file(tmp_path)
    venue.place(OrderRequest("manual-1", doge, Leg.ENTRY, "buy", Decimal(500)))
    venue.place(OrderRequest(stray, doge, Leg.STOP, "sell", Decimal(500), stop_price=Decimal("0.01")))
    venue.place(OrderRequest(lone, SYM["LINK"], Leg.STOP, "sell", Decimal(1), stop_price=Decimal(1)))
    venue.close()
    svc = start_service('recovery.unknown_venue_position="report"', db_url=db_url)
    rep = svc.recovery
    assert rep.stray_orders_kept == [stray] and rep.stray_orders_cancelled == [lone]
    assert svc.gateway.engine.fetch(stray).status == "open"
    with svc.db.tx("db_read") as tx:
        kinds = set(tx.scalars(select(EventRow.kind)))
    assert {"stray_order_kept", "stray_order_cancelled", "venue_position_unknown"} <= kinds


def test_a_stray_stop_on_the_wrong_side_is_not_taken_over(start_service, db_url, tmp_path):
    """The venue holds a long DOGE; the stop of ours resting on DOGE is a buy stop above the
    price (left by an old short): it protects nothing. The adopted long gets a stop of its own,
    and the stray is cancelled once that stop rests."""
    doge, stray = SYM["DOGE"], "wt-0123456789ab-s1-1"
    start_service(db_url=db_url).shutdown()
    venue = venue_file(tmp_path)
    venue.place(OrderRequest("manual-1", doge, Leg.ENTRY, "buy", Decimal(500)))
    venue.place(OrderRequest(stray, doge, Leg.STOP, "buy", Decimal(500), stop_price=venue.price(doge) * 2))
    venue.close()
    svc = start_service(db_url=db_url)
    assert svc.recovery.stray_orders_cancelled == [stray]
    with svc.db.tx("db_read") as tx:
        (row,) = tx.scalars(select(PositionRow)).all()
    assert row.origin == "adopted" and row.stop_cid.startswith(f"wt-{row.id}-s")
    wait_agreed(svc.db, svc.gateway.engine)
