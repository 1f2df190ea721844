"""Recovery on start, on SQLite and PostgreSQL: restored under a raised epoch, reconciled with the
venue (which kept living while we were down) before acting, and nothing the venue holds is
dropped. The venue is the real paper engine reopened on its own state file."""
from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest
from sqlalchemy import select

from actors.messages import Control, RecoverPosition
from actors.position import PositionActor
from core import trailing as tr
from core.position_logic import step
from core.position_types import Begin, CloseRequested, Leg, OrderIntent, Outcome, Phase, PositionState
from core.types import Side
from exchange.gateway import OrderRequest
from exchange.paper.engine import PaperEngine
from exchange.paper.store import PaperStore
from exchange.paper.universe import paper_markets, start_prices
from persistence.db import Database
from persistence.models import EventRow, OrderRow, PositionRow, SignalRow
from persistence.positions import PositionStore
from persistence.waves import WaveStore
from service.app import position_params
from service.position_supervision import PositionHandle
from signals.wave import parse_wave
from tests.support.helpers import SYM, make_config, wait_for, wave
from tests.support.recovery_checks import wait_agreed

BTC, ETH, SOL, XRP, DOGE, LINK = (SYM[n] for n in ("BTC", "ETH", "SOL", "XRP", "DOGE", "LINK"))


def rows_by_symbol(db: Database) -> dict[str, PositionRow]:
    with db.tx("db_read") as tx:
        return {r.symbol: r for r in tx.scalars(select(PositionRow).order_by(PositionRow.opened_ts))}


def venue_file(tmp_path) -> PaperEngine:
    """The paper venue on its own, as it lives on while the trader is down."""
    return PaperEngine(paper_markets(), start_prices(), store=PaperStore(tmp_path / "paper-venue.db"))


def opened(start_service, db_url, *signals, **kw):
    svc = start_service(f"risk.max_positions_per_wave={len(signals)}", db_url=db_url, **kw)
    svc.submit(wave("w1", *signals), "t")
    wait_for(lambda: svc.stats.waves, what="first wave")
    assert svc.stats.waves[0].outcomes == {"protected": len(signals)}
    return svc


def test_a_restart_resumes_the_same_account_and_sends_nothing_again(start_service, db_url):
    svc = opened(start_service, db_url, (BTC, "long", 0.9), (ETH, "short", 0.8), (SOL, "long", 0.7))
    before = rows_by_symbol(svc.db)
    venue_before = (svc.gateway.engine.positions(), svc.gateway.engine.open_orders())
    with svc.db.tx("db_read") as tx:
        n_orders = len(tx.scalars(select(OrderRow.cid)).all())
    svc.shutdown()

    svc2 = start_service(db_url=db_url)
    assert svc2.recovery.restored == svc2.recovery.reconciled == 3
    assert dict(svc2.recovery.phases) == {"trailing": 3}
    after = rows_by_symbol(svc2.db)
    for sym, r in after.items():
        assert (r.phase, r.epoch, r.stop_cid, r.trailing_cid) == ("trailing", 2, before[sym].stop_cid,
                                                                  before[sym].trailing_cid)
    venue = svc2.gateway.engine
    assert (venue.positions(), venue.open_orders()) == venue_before  # the same paper account
    with svc2.db.tx("db_read") as tx:
        assert len(tx.scalars(select(OrderRow.cid)).all()) == n_orders  # nothing re-sent
    wait_agreed(svc2.db, venue)
    # restored positions act again: the venue triggers BTC's stop, its actor closes it
    venue.set_price(BTC, after[BTC].stop_price - 1)
    wait_for(lambda: rows_by_symbol(svc2.db)[BTC].phase == "closed", what="BTC closed by its stop")
    wait_agreed(svc2.db, venue)


def test_what_changed_while_down_is_reconciled_and_nothing_is_dropped(start_service, db_url, tmp_path):
    svc = opened(start_service, db_url, (BTC, "long", 0.9), (ETH, "long", 0.8), (SOL, "short", 0.7),
                 (XRP, "long", 0.6))
    before = rows_by_symbol(svc.db)
    svc.shutdown()

    venue = venue_file(tmp_path)
    venue.cancel(before[BTC].stop_cid)  # someone removed BTC's stop by hand
    venue.set_price(ETH, before[ETH].stop_price - Decimal("0.01"))  # ETH stopped out while down
    venue.place(OrderRequest("manual-1", SOL, Leg.EXIT, "buy", before[SOL].qty))  # SOL closed by hand
    venue.place(OrderRequest("manual-2", DOGE, Leg.ENTRY, "buy", Decimal(500)))  # opened by hand
    venue.place(OrderRequest("wt-0123456789ab-s1-1", LINK, Leg.STOP, "sell", Decimal(1),
                             stop_price=Decimal(10)))  # ours, for no position we know
    venue.place(OrderRequest("manual-3", XRP, Leg.STOP, "sell", Decimal(10), stop_price=Decimal("0.4")))
    eth_stop_fill = venue.fetch(before[ETH].stop_cid).avg_price
    venue.close()

    svc2 = start_service(db_url=db_url)
    rep = svc2.recovery
    assert rep.restored == rep.reconciled == 4
    assert rep.stray_orders_cancelled == ["wt-0123456789ab-s1-1"] and rep.foreign_orders == 1
    assert rep.unknown_venue_positions == [f"{DOGE} 500: adopt"]
    rows = rows_by_symbol(svc2.db)
    assert rows[BTC].phase == "trailing" and rows[BTC].stop_cid != before[BTC].stop_cid
    assert rows[BTC].stop_cid.startswith(f"wt-{rows[BTC].id}-s2-")  # re-placed under the new epoch
    assert rows[BTC].stop_price == before[BTC].stop_price
    assert rows[ETH].phase == "closed" and rows[ETH].exit_price == eth_stop_fill
    assert rows[ETH].close_reason == "stop-loss filled while down"
    assert rows[SOL].phase == "closed" and "closed at venue while down" in rows[SOL].close_reason
    assert (rows[XRP].phase, rows[XRP].stop_cid) == ("trailing", before[XRP].stop_cid)
    doge = wait_for(lambda: (r := rows_by_symbol(svc2.db).get(DOGE)) and r.phase == "trailing" and r,
                    what="the unknown DOGE position adopted and protected")
    assert doge.origin == "adopted" and doge.needs_attention and "did not know" in doge.attention_reason
    assert doge.stop_price == tr.initial_stop(doge.entry_price, Side.LONG, Decimal(2), svc2.markets[DOGE])
    v = svc2.gateway.engine
    assert v.fetch("manual-3").status == "open"  # another client's order is left alone
    assert v.fetch(before[ETH].trailing_cid).status == "cancelled"
    assert {v.fetch(c).status for c in (before[SOL].stop_cid, before[SOL].trailing_cid)} == {"cancelled"}
    wait_agreed(svc2.db, v)
    with svc2.db.tx("db_read") as tx:  # signal outcomes are final: closing later changes none
        assert {s.outcome for s in tx.scalars(select(SignalRow))} == {"protected"}
        kinds = set(tx.scalars(select(EventRow.kind)))
        status = dict(tx.execute(select(OrderRow.cid, OrderRow.status)).all())
    assert (status[before[BTC].stop_cid], status[before[ETH].stop_cid]) == ("cancelled", "filled")
    assert {"reconciled", "stop_missing", "venue_position_unknown", "stray_order_cancelled",
            "foreign_orders", "recovery"} <= kinds


@pytest.mark.parametrize("policy", ["close", "report"])
def test_unknown_venue_position_policy(start_service, db_url, tmp_path, policy):
    start_service(db_url=db_url).shutdown()  # an empty database with its schema
    venue = venue_file(tmp_path)
    venue.place(OrderRequest("manual-1", DOGE, Leg.ENTRY, "sell", Decimal(500)))
    venue.close()
    svc = start_service(f"recovery.unknown_venue_position={policy!r}".replace("'", '"'), db_url=db_url)
    assert svc.recovery.unknown_venue_positions == [f"{DOGE} -500: {policy}"]
    if policy == "close":
        doge = wait_for(lambda: (r := rows_by_symbol(svc.db)[DOGE]).phase == "closed" and r,
                        what="unknown position closed")
        assert doge.origin == "adopted" and doge.needs_attention
        assert svc.gateway.engine.positions() == []
    else:
        assert [p.symbol for p in svc.gateway.engine.positions()] == [DOGE]  # left, but never silently
        assert rows_by_symbol(svc.db) == {}
        assert any("unknown venue position" in n for n in svc.health_notes)
    with svc.db.tx("db_read") as tx:
        ev = tx.scalars(select(EventRow).where(EventRow.kind == "venue_position_unknown")).one()
    assert ev.data["symbol"] == DOGE and ev.data["action"] == policy


def test_intents_of_unknown_fate_are_resolved_by_client_id(start_service, db_url, tmp_path):
    """Write-ahead intents left by a crash: the venue is asked by client id before anything is
    sent again. Accepted ones are adopted, missing ones are marked not found; no duplicates."""
    svc = opened(start_service, db_url, (BTC, "long", 0.9), (ETH, "long", 0.8))
    before = rows_by_symbol(svc.db)
    svc.shutdown()
    cfg = make_config(tmp_path, db_url=db_url)
    db = Database(db_url)
    store, waves = PositionStore(db), WaveStore(db)
    venue = venue_file(tmp_path)
    # BTC: a tighter replacement stop was accepted by the venue, the answer never came back
    btc = store.load(before[BTC].id, position_params(cfg))
    tighter = before[BTC].stop_price + Decimal(100)
    new_stop = _intent(store, btc, Leg.STOP, tighter)
    venue.place(OrderRequest(new_stop, BTC, Leg.STOP, "sell", btc.qty, stop_price=tighter))
    # ETH: a replacement stop written ahead, never sent
    eth = store.load(before[ETH].id, position_params(cfg))
    lost_stop = _intent(store, eth, Leg.STOP, before[ETH].stop_price + Decimal(1))
    # SOL, XRP: two entries of a new wave in flight; SOL's reached the venue, XRP's did not
    w2 = parse_wave(wave("w2", (SOL, "long", 0.9), (XRP, "long", 0.8)), markets=paper_markets(), source="t")
    waves.insert(w2, 120)
    entries = {}
    for sig in w2.signals:
        s = PositionState(id=f"p{sig.symbol[:3].lower()}000000", signal_id=sig.id, wave_id="w2",
                          symbol=sig.symbol, side=Side.LONG, params=position_params(cfg))
        store.create(s)
        s2, cmds = step(s, Begin(venue.price(sig.symbol)), paper_markets()[sig.symbol])
        store.commit_step(s2, intents=[cmds[0].intent])
        entries[sig.symbol] = cmds[0].intent
    i = entries[SOL]
    venue.place(OrderRequest(i.cid, SOL, Leg.ENTRY, i.side, i.qty))
    venue.close()
    db.dispose()

    # SOL's re-protection hangs at the venue: recovery stops waiting for it, and the wave must
    # resume with SOL's signal still waiting on its position, never launched a second time
    hang = f'faults.venue=[{{kind="hang", op="place_order", leg="stop", symbols=["{SOL}"], times=1}}]'
    svc2 = start_service("risk.max_positions_per_wave=2", "recovery.reconcile_timeout_s=2", hang,
                         db_url=db_url)
    assert svc2.recovery.still_reconciling == [f"p{SOL[:3].lower()}000000"]
    assert not svc2.stats.waves
    svc2.venue_faults.release()
    wait_for(lambda: svc2.stats.waves, what="wave w2 finished after the restart")
    rows = rows_by_symbol(svc2.db)
    assert rows[BTC].stop_cid == new_stop and rows[BTC].stop_price == tighter  # tightest kept
    assert svc2.gateway.engine.fetch(before[BTC].stop_cid).status == "cancelled"
    assert rows[ETH].stop_cid == before[ETH].stop_cid
    assert rows[SOL].phase == "trailing" and rows[SOL].qty == i.qty
    assert rows[XRP].phase == "failed"
    with svc2.db.tx("db_read") as tx:
        status = dict(tx.execute(select(OrderRow.cid, OrderRow.status)).all())
        outcomes = dict(tx.execute(select(SignalRow.id, SignalRow.outcome).where(SignalRow.wave_id == "w2")).all())
    assert (status[new_stop], status[before[BTC].stop_cid], status[lost_stop]) == ("open", "cancelled", "not_found")
    assert status[entries[SOL].cid] == "filled" and status[entries[XRP].cid] == "not_found"
    assert "intent" not in status.values()
    assert outcomes == {"w2-0": Outcome.PROTECTED.value, "w2-1": Outcome.FAILED.value}
    wait_agreed(svc2.db, svc2.gateway.engine)


def _intent(store: PositionStore, s: PositionState, leg: Leg, stop: Decimal) -> str:
    """A write-ahead intent for one more order of `s`, as a step of the killed run wrote it."""
    s = replace(s, seq=s.seq + 1)
    intent = OrderIntent(s.cid(leg), leg, s.side.exit_order_side, s.qty, stop_price=stop)
    store.commit_step(s, intents=[intent])
    return intent.cid


def test_a_restored_position_acts_only_after_reconciling(start_service, db_url):
    """A close request and a tick that reach a restored actor before its RecoverPosition wait:
    the event log shows reconciliation first, then the close."""
    svc = opened(start_service, db_url, (BTC, "long", 0.9))
    pid = rows_by_symbol(svc.db)[BTC].id
    svc.shutdown()
    svc2 = start_service(db_url=db_url)
    old = svc2.supervisor.children[pid]
    old.retired = True
    old.ref.stop()
    epoch = svc2.positions.bump_epoch(pid, old.epoch)
    svc2.ctx.epochs[pid] = epoch
    state = svc2.positions.load(pid, svc2.defaults)
    handle = PositionHandle(svc2.supervisor, pid, epoch, BTC)
    ref = PositionActor.start(state, svc2.ctx, handle)
    ref.tell(Control(CloseRequested("operator close")))
    svc2.market_data.on_tick(BTC, Decimal(60000))  # through the stop: would close if acted on
    ref.tell(RecoverPosition())
    wait_for(lambda: rows_by_symbol(svc2.db)[BTC].phase == "closed", what="closed after reconciling")
    with svc2.db.tx("db_read") as tx:
        kinds = list(tx.scalars(select(EventRow.kind).where(EventRow.position_id == pid, EventRow.epoch == epoch)
                                .order_by(EventRow.id)))
    assert kinds[:2] == ["reconciled", "closing"], kinds
    assert Phase(rows_by_symbol(svc2.db)[BTC].phase) is Phase.CLOSED
