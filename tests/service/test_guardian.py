"""The guardian against real actors, the real paper venue and real SQLite: it judges protection
from the venue's own orders, places an emergency stop when a position stays naked past its
grace, has the owner restarted, and survives a venue that does not answer."""
from __future__ import annotations

import threading
import time
from pathlib import Path
from decimal import Decimal

from sqlalchemy import select

from core.config import HealthCfg
from core.faults import FaultRule
from core.position_types import Leg, is_guardian_cid
from exchange.gateway import OrderRequest
from persistence.models import PositionRow
from service.health import HealthMonitor
from service.invariants import check_invariants, settle
from service.metrics import Metrics
from tests.support.helpers import SYM, wait_for, wave

GUARD = ("guardian.enabled=true", "guardian.interval_s=0.1", "guardian.grace_s=0.5",
         "deadlines.venue_call_s=2", "deadlines.db_call_s=2", "deadlines.operation_s=30")


def _health(svc) -> HealthMonitor:
    return HealthMonitor(svc, HealthCfg(), Metrics(), restart_window_s=60)


def _row(svc, symbol):
    with svc.db.tx("db_read") as tx:
        return tx.scalars(select(PositionRow).where(PositionRow.symbol == symbol)).one()


def _stops(svc, symbol):
    return [o for o in svc.gateway.engine.open_orders(symbol) if o.leg is Leg.STOP]


def _open(svc, wave_id, *signals):
    n = len(svc.stats.waves)
    svc.submit(wave(wave_id, *signals), "t")
    wait_for(lambda: len(svc.stats.waves) > n, timeout=20, what=f"wave {wave_id}")


class HangWritesAfterEntryFill:
    """Passes calls through; once the entry of `symbol` has filled, the next database write of
    that position hangs — the write that would record the fill."""

    def __init__(self, inner, db_faults, symbol: str) -> None:
        self.inner, self.db_faults, self.symbol = inner, db_faults, symbol  # db_faults: () -> FaultPlan
        self.filled_at: float | None = None

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def place_order(self, req, timeout):
        o = self.inner.place_order(req, timeout)
        if req.leg is Leg.ENTRY and req.symbol == self.symbol and self.filled_at is None:
            self.db_faults().add(FaultRule("hang", op="db_write", symbols=[self.symbol], times=1))
            self.filled_at = time.monotonic()
        return o


def test_exposure_counts_from_the_fill_when_the_write_after_it_hangs(start_service):
    """protect_s must fire although the database still says 'entering' (the write hangs);
    the guardian, which may not place anything here, must report health critical meanwhile."""
    protect_s = 2.0
    svc = start_service(*GUARD, f"deadlines.protect_s={protect_s}", "guardian.emergency_stop=false",
                        wrap_gateway=lambda inner: HangWritesAfterEntryFill(inner, lambda: svc.db_faults, SYM["BTC"]))
    gw = svc.ctx.gateway
    mon = _health(svc)
    critical = []
    svc.submit(wave("w", (SYM["BTC"], "long", .9)), "t")

    def reprotected():
        h = mon.report()
        if h.status == "critical":
            critical.append(h.reasons)
        return gw.filled_at is not None and _stops(svc, SYM["BTC"])

    wait_for(reprotected, timeout=protect_s + 8, what="BTC re-protected after the hung write")
    naked_s = time.monotonic() - gw.filled_at
    assert naked_s <= protect_s + 5, f"naked {naked_s:.1f}s after the fill"
    assert critical and any("guardian.grace_s" in r for r in critical[0]), critical[:1]
    assert svc.guardian.stats.emergency_stops == 0  # re-protected by the restart, not the guardian
    assert _row(svc, SYM["BTC"]).epoch == 2
    wait_for(lambda: svc.stats.waves, timeout=10, what="wave completion")
    assert svc.stats.waves[0].outcomes == {"protected": 1}


def test_a_stop_gone_from_the_venue_gets_an_emergency_stop_and_the_owner_restarts(start_service):
    svc = start_service(*GUARD, "deadlines.protect_s=60")
    _open(svc, "w", (SYM["ETH"], "long", .9), (SYM["SOL"], "short", .8))
    row = _row(svc, SYM["ETH"])
    svc.gateway.engine.cancel(row.stop_cid)  # behind the actor's back: it still believes in it
    mon = _health(svc)
    wait_for(lambda: mon.report().status == "critical", timeout=10, what="critical health")
    assert mon.report().unprotected[0].symbol == SYM["ETH"]
    wait_for(lambda: svc.guardian.stats.emergency_stops == 1, timeout=10, what="an emergency stop")
    wait_for(lambda: _row(svc, SYM["ETH"]).epoch == row.epoch + 1, timeout=10, what="the owner restarted")
    assert settle(svc)
    after = _row(svc, SYM["ETH"])
    stops = _stops(svc, SYM["ETH"])
    assert [o.cid for o in stops] == [after.stop_cid], "one stop rests, and it is the position's own"
    assert after.phase == "trailing" and after.stop_price == row.stop_price
    assert _row(svc, SYM["SOL"]).epoch == 1, "the other position was left alone"
    assert svc.guardian.stats.disagreements["actor thinks protected, venue holds no stop"] >= 1
    wait_for(lambda: mon.report().status != "critical", timeout=5, what="health back from critical")
    assert not check_invariants(svc)


def test_reporting_only_places_nothing_but_stays_critical(start_service):
    svc = start_service(*GUARD, "deadlines.protect_s=60", "guardian.emergency_stop=false")
    _open(svc, "w", (SYM["XRP"], "short", .9))
    row = _row(svc, SYM["XRP"])
    svc.gateway.engine.cancel(row.stop_cid)
    mon = _health(svc)
    wait_for(lambda: mon.report().status == "critical", timeout=10, what="critical health")
    rounds = svc.guardian.stats.rounds
    wait_for(lambda: svc.guardian.stats.rounds >= rounds + 5, what="five more rounds")
    assert not _stops(svc, SYM["XRP"]) and svc.guardian.stats.emergency_stops == 0
    assert not any(is_guardian_cid(c) for c in svc.gateway.engine.account.orders)
    assert svc.guardian.stats.max_unprotected_s > 0.5
    assert mon.report().status == "critical"


def test_price_through_the_stop_closes_at_market(start_service):
    svc = start_service(*GUARD, "deadlines.protect_s=60")
    _open(svc, "w", (SYM["DOGE"], "long", .9))
    row = _row(svc, SYM["DOGE"])
    eng = svc.gateway.engine
    eng.cancel(row.stop_cid)
    eng.set_price(SYM["DOGE"], svc.markets[SYM["DOGE"]].floor_price(row.stop_price * Decimal("0.9")))
    wait_for(lambda: not any(p.symbol == SYM["DOGE"] for p in eng.positions()), timeout=10,
             what="DOGE closed at market")
    # counted once the close order's answer is back, a moment after the venue went flat
    wait_for(lambda: svc.guardian.stats.emergency_closes >= 1, timeout=5, what="the close counted")
    assert svc.guardian.stats.emergency_closes == 1 and svc.guardian.stats.emergency_stops == 0
    wait_for(lambda: _row(svc, SYM["DOGE"]).phase in ("closed", "emergency_closed"), timeout=10,
             what="the restarted owner records the close")
    assert settle(svc) and not check_invariants(svc)


def test_a_venue_that_does_not_answer_degrades_health_and_the_guardian_carries_on(start_service):
    svc = start_service(*GUARD, "deadlines.protect_s=60", "deadlines.venue_call_s=0.3")
    _open(svc, "w", (SYM["ADA"], "long", .9))
    mon = _health(svc)
    refuse = svc.venue_faults.add(FaultRule("unavailable", op="positions"))
    wait_for(lambda: svc.guardian.stats.failing_rounds >= 2, what="failing guardian rounds")
    assert any("guardian" in r for r in mon.report().reasons)
    hang = svc.venue_faults.add(FaultRule("hang", op="open_orders", times=1))
    svc.venue_faults.rules.remove(refuse)
    wait_for(lambda: hang.fired and svc.guardian.stats.failing_rounds >= 3, what="a hung read counted")
    assert svc.guardian._thread.is_alive()
    svc.venue_faults.release()
    wait_for(lambda: svc.guardian.stats.failing_rounds == 0, what="the guardian reading again")
    wait_for(lambda: mon.report().status == "healthy", what="healthy again")


def test_native_trailing_counts_as_trailing_not_as_the_stop(start_service):
    """A position whose only resting order is its trailing stop is unprotected."""
    svc = start_service(*GUARD, "deadlines.protect_s=60", "guardian.emergency_stop=false")
    _open(svc, "w", (SYM["LINK"], "long", .9))
    row = _row(svc, SYM["LINK"])
    assert row.trailing_cid
    mon = _health(svc)
    wait_for(lambda: mon.report().trailing == 1, what="trailing coverage from the venue")
    svc.gateway.engine.cancel(row.stop_cid)
    wait_for(lambda: mon.report().unprotected, what="LINK seen naked with its trailing stop resting")
    h = mon.report()
    assert h.unprotected[0].symbol == SYM["LINK"] and h.trailing == 0


def test_health_trusts_the_venue_when_the_actor_is_behind(start_service):
    """The mirror case: the stop rests but the write that records it hangs — not unprotected."""
    gate = threading.Event()

    class HangAfterStop:
        def __init__(self, inner):
            self.inner = inner

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def place_order(self, req, timeout):
            o = self.inner.place_order(req, timeout)
            if req.leg is Leg.STOP:
                svc.db_faults.add(FaultRule("hang", op="db_write", symbols=[req.symbol], times=1))
                gate.set()
            return o

    svc = start_service(*GUARD, "deadlines.protect_s=60", wrap_gateway=HangAfterStop)
    mon = _health(svc)
    svc.submit(wave("w", (SYM["DOT"], "long", .9)), "t")
    gate.wait(10)
    rounds = svc.guardian.stats.rounds
    wait_for(lambda: svc.guardian.stats.rounds >= rounds + 3, what="three guardian rounds")
    h = mon.report()
    assert h.open == 1 and not h.unprotected, h


def test_guardian_ids_read_as_the_positions_stop_and_are_kept_until_ours_rests():
    """Pure: a replacement finding the guardian's stop while its entry was unresolved places
    its own stop first and only then cancels the guardian's."""
    from core.position_logic import step
    from core.position_types import (
        Cancel, Params, Phase, Place, Placed, PositionState, Reconciled, Resting, guardian_cid, leg_of,
        position_id_of,
    )
    from core.types import MarketSpec, Side

    cid = guardian_cid("abc123", 2, Leg.STOP, 17)
    assert leg_of(cid) is Leg.STOP and position_id_of(cid) == "abc123" and is_guardian_cid(cid)
    assert leg_of(guardian_cid("abc123", 2, Leg.EXIT, 18)) is Leg.EXIT
    assert not is_guardian_cid("wt-abc123-s2-3") and leg_of("wt-abc123-s2-3") is Leg.STOP
    spec = MarketSpec("X/USDT:USDT", Decimal("0.01"), Decimal("0.1"), Decimal("0.1"), Decimal(5))
    params = Params(Decimal(2), Decimal(1), Decimal("0.5"), notional=Decimal(100))
    s = PositionState("abc123", "s", "w", spec.symbol, Side.LONG, params, phase=Phase.ENTERING, epoch=3)
    s, cmds = step(s, Reconciled(Decimal(10), Decimal(10), (Resting(cid, Leg.STOP, Decimal("9.8")),),
                                 Decimal(10), entry_fill=Decimal(10)), spec)
    assert not [c for c in cmds if isinstance(c, Cancel)], "the guardian's stop went before ours rests"
    assert s.stop_cid == cid
    (own,) = [c.intent for c in cmds if isinstance(c, Place)]
    s, cmds = step(s, Placed(own), spec)
    assert s.stop_cid == own.cid and Cancel(cid) in cmds


def test_positions_stripped_of_their_stops_while_recovery_is_stuck_get_emergency_stops(start_service):
    """Stops gone while the trader was down, and the restored actors stuck in their reconcile:
    the guardian, running from before recovery, protects both within its grace."""
    first = start_service(*GUARD, "deadlines.protect_s=60")
    _open(first, "w", (SYM["ETH"], "long", .9), (SYM["SOL"], "short", .8))
    rows = {sym: _row(first, sym) for sym in (SYM["ETH"], SYM["SOL"])}
    first.shutdown()
    from service.app import Service
    from tests.support.helpers import make_config

    svc = Service(make_config(Path(first.cfg.run_dir), *GUARD, "deadlines.protect_s=60"))
    try:
        for r in rows.values():
            svc.gateway.engine.cancel(r.stop_cid)
        svc.actor_faults.add(FaultRule("hang", op="recover", times=2))
        starting = threading.Thread(target=svc.start, kwargs={"with_source": False}, daemon=True)
        starting.start()
        wait_for(lambda: svc.guardian.stats.emergency_stops == 2, timeout=15, what="two emergency stops")
        for sym in rows:
            assert any(is_guardian_cid(o.cid) for o in _stops(svc, sym)), sym
        starting.join(30)
        assert settle(svc)
        for sym in rows:
            after = _row(svc, sym)
            assert after.phase == "trailing"
            # its replacement read the venue before our stop went out: ours is withdrawn
            wait_for(lambda: [o.cid for o in _stops(svc, sym)] == [after.stop_cid], timeout=5,
                     what=f"{sym}: one stop, the position's own")
        assert not check_invariants(svc)
    finally:
        svc.actor_faults.release()
        svc.shutdown()


def test_a_position_the_venue_no_longer_holds_is_restarted_and_recorded_closed(start_service):
    """The venue closed it and no fill reached the actor: it must not stay 'open' in our books."""
    svc = start_service(*GUARD, "deadlines.protect_s=60")
    _open(svc, "w", (SYM["AVAX"], "long", .9))
    row = _row(svc, SYM["AVAX"])
    svc.gateway.engine.place(OrderRequest("manual-close", SYM["AVAX"], Leg.EXIT, "sell", row.qty))
    wait_for(lambda: _row(svc, SYM["AVAX"]).phase in ("closed", "emergency_closed"), timeout=10,
             what="AVAX recorded closed")
    assert svc.guardian.stats.disagreements["actor holds a position the venue does not"] == 1
    assert settle(svc) and not check_invariants(svc)


def test_a_native_trailing_stop_replaced_looser_is_counted(start_service):
    from tests.service.test_invariants_venue import _armed_then_pulled_back

    svc = start_service(*GUARD, "deadlines.protect_s=60")
    row = _armed_then_pulled_back(svc)
    rounds = svc.guardian.stats.rounds
    wait_for(lambda: svc.guardian.stats.rounds >= rounds + 2, what="the guardian seeing the armed order")
    cid = row.trailing_cid.rsplit("-", 1)[0] + "-99"
    # armed at today's price (an activation already reached is refused): the best so far is lost
    svc.gateway.place_order(OrderRequest(cid, SYM["BTC"], Leg.TRAILING, "sell", row.qty, None,
                                         None, row.callback_pct), timeout=2)
    svc.gateway.cancel_order(SYM["BTC"], row.trailing_cid, timeout=2)
    wait_for(lambda: svc.guardian.stats.disagreements["native trailing stop replaced by a looser one at the venue"],
             what="the looser replacement counted")


def test_the_interval_stays_inside_the_venue_weight_budget():
    from core.config import load_config
    from service.guardian import effective_interval

    assert effective_interval(load_config(None, [])) == 2.0  # paper: no weight budget
    binance = load_config(None, ["exchange.name=binanceusdm"])
    # 85 weight a round, a quarter of 2,400 a minute: one round per 8.5 s at most
    assert effective_interval(binance) == 8.5
    assert effective_interval(load_config(None, ["exchange.name=binanceusdm", "guardian.interval_s=20"])) == 20


def test_a_new_position_on_the_symbol_is_not_a_looser_trailing_stop():
    """Pure: the trailing stops of two positions one after the other on a symbol are not one
    order replaced by another; a replacement within one position is."""
    from core.config import load_config
    from exchange.gateway import OrderState
    from service.guardian import LOOSENED, Guardian
    from service.venue_truth import Cover

    def cover(cid, activated, best):
        o = OrderState(cid, "X/USDT:USDT", Leg.TRAILING, "open", side="sell", qty=Decimal(1),
                       callback_pct=Decimal("0.5"), activated=activated, best=best)
        return {"X/USDT:USDT": Cover("X/USDT:USDT", Decimal(1), Decimal(10), None, o)}

    g = Guardian(load_config(None, []), None, None, {}, None)
    g._watch_trailing(cover("wt-aaa-t1-3", True, Decimal(11)))
    g._watch_trailing(cover("wt-bbb-t1-3", False, None))  # closed, and another position opened
    assert g.stats.disagreements[LOOSENED] == 0
    g._watch_trailing(cover("wt-bbb-t1-3", True, Decimal(12)))
    g._watch_trailing(cover("wt-bbb-t1-5", False, None))  # the same position, unarmed again
    assert g.stats.disagreements[LOOSENED] == 1
