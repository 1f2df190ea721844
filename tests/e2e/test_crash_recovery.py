"""`kill -9` of a real `bin/trader run` on PostgreSQL, at chosen points of a wave, then a restart:
no position lost, no order duplicated, every position protected within deadlines.protect_s,
database and venue in agreement, and exactly one outcome per signal.

Kills land at their points by fault-injected latency on one leg of one symbol (the call is
parked at the venue, before or after the venue acted) and by watching the database and the
venue's file until every point is reached — never by sleeping.
"""
from __future__ import annotations

from collections import Counter

import pytest

from tests.support.crash_harness import Trader
from tests.support.helpers import SYM, wait_for, wave
from tests.support.recovery_checks import account_problems

pytestmark = pytest.mark.slow

PROTECT_S = 10.0
PARK = 60_000  # ms: far longer than the test, so a parked call never completes before the kill
BTC, ETH, SOL, XRP, DOGE, ADA = (SYM[n] for n in ("BTC", "ETH", "SOL", "XRP", "DOGE", "ADA"))


def park(symbol: str, leg: str, kind: str = "latency") -> dict:
    """`latency`: the request hangs before the venue sees it. `slow_reply`: the venue acts at
    once and the answer never comes back in time."""
    return {"kind": kind, "op": "place_order", "leg": leg, "symbols": [symbol], "latency_ms": PARK}


@pytest.fixture
def trader(pg_cluster, tmp_path):
    t = Trader(tmp_path, pg_cluster.create_database(), settings={
        "deadlines": {"protect_s": PROTECT_S}, "paper": {"tick_interval_ms": 0}})
    yield t
    if t.alive():
        t.kill()
    t.db.dispose()


def intents(t: Trader) -> dict[tuple[str, str], list]:
    """Order rows by (symbol, leg), oldest first."""
    out: dict[tuple[str, str], list] = {}
    for o in t.orders():
        out.setdefault((o.symbol, o.leg), []).append(o)
    return out


def check_after_restart(t: Trader, expected: dict[str, str]) -> None:
    """The invariants every scenario ends with, read from the database and the venue's file."""
    assert t.outcomes() == expected, "exactly one outcome per signal"
    venue = t.venue()
    try:
        assert account_problems(t.db, venue) == []
    finally:
        venue.close()
    db_cids = {o.cid for o in t.orders()}
    ours_at_venue = {c for c in t.venue_orders() if c.startswith("wt-")}
    assert ours_at_venue <= db_cids, f"orders at the venue never written ahead: {ours_at_venue - db_cids}"


def test_kill_at_every_step_of_opening_a_position(trader):
    t = trader
    names = [BTC, ETH, SOL, XRP, DOGE, ADA]
    t.write_waves(wave("w1", *[(s, "long", 1 - i / 10) for i, s in enumerate(names)]))
    t.start(faults=[park(BTC, "entry"),                    # intent written, order not yet sent
                    park(ETH, "entry", "slow_reply"),      # entry filled, the answer lost
                    park(SOL, "stop"),                     # entered, stop intent not yet at the venue
                    park(XRP, "stop", "slow_reply"),       # stop resting, the answer lost
                    park(DOGE, "trailing", "slow_reply")],  # trailing stop resting, answer lost
            risk={"max_positions_per_wave": 6})

    def all_points_reached() -> bool:
        o, v = intents(t), t.venue_orders()
        pending = lambda sym, leg: (rows := o.get((sym, leg))) and rows[-1].status == "intent" and rows[-1]  # noqa: E731
        at_venue = lambda row, status: bool(row) and v.get(row.cid, {}).get("status") == status  # noqa: E731
        return (bool(pending(BTC, "e")) and at_venue(pending(ETH, "e"), "filled")
                and bool(pending(SOL, "s")) and at_venue(pending(XRP, "s"), "open")
                and at_venue(pending(DOGE, "t"), "open")
                and (p := t.positions().get(ADA)) is not None and p.phase == "trailing")

    wait_for(all_points_reached, timeout=20, what="every kill point reached")
    t.kill()
    before = t.positions()
    assert before[BTC].phase == "entering" and before[SOL].phase == "open" and before[DOGE].phase == "protected"

    # the restart itself is killed while re-protecting SOL: recovery must survive a crash too
    t.start(faults=[park(SOL, "stop")])
    wait_for(lambda: any("-s2-" in o.cid and o.status == "intent" for o in intents(t).get((SOL, "s"), [])),
             timeout=20, what="SOL's stop re-placement in flight during recovery")
    t.kill()

    still_open = sum(1 for r in t.positions().values() if r.phase not in ("failed", "closed"))
    t.start()
    t.wait_protected(timeout=PROTECT_S)
    summary = t.finish()
    assert summary["recovery"]["restored"] == still_open >= 5
    after = t.positions()
    assert after[BTC].phase == "failed"  # its entry never reached the venue: not re-sent blindly
    assert all(after[s].phase == "trailing" for s in names[1:])
    assert after[ADA].epoch == 3 and after[ADA].stop_cid == before[ADA].stop_cid  # untouched, fenced twice
    counts = t.venue_orders_by_position()
    assert BTC not in {r.symbol for r in t.orders() if r.position_id in counts}
    assert dict(counts[after[ETH].id]) == {"e": 1, "s": 1, "t": 1}  # adopted by client id, once
    assert counts[after[XRP].id]["s"] == 1 and counts[after[DOGE].id]["t"] == 1  # kept, not re-sent
    assert counts[after[SOL].id]["s"] == 1  # only the placement that reached the venue
    check_after_restart(t, {f"w1-{i}": "protected" for i in range(1, 6)} | {"w1-0": "failed"})


def test_kill_during_trailing_stop_updates(trader):
    """Emulated trailing: the stop is replaced as the price rises (place new, then cancel old).
    Killed with one replacement not yet at the venue and another resting but unanswered."""
    t = trader
    LINK, DOT = SYM["LINK"], SYM["DOT"]
    # SOL's entry is parked: the wave stays in progress, so the run keeps going until the kill
    t.write_waves(wave("w1", (LINK, "long", 0.9), (DOT, "long", 0.8), (SOL, "long", 0.7)))
    trailing = {"trailing_mode": "emulated", "trailing_activation_pct": 0, "trailing_callback_pct": 3,
                "stop_loss_pct": 5, "replace_min_interval_s": 0}
    feed = {"tick_interval_ms": 20, "volatility": 0.003}
    first_stop_free = lambda sym: {"kind": "latency", "op": "place_order", "leg": "stop",  # noqa: E731
                                   "symbols": [sym], "times": 1, "latency_ms": 0}
    t.start(faults=[first_stop_free(LINK), park(LINK, "stop"), first_stop_free(DOT),
                    park(DOT, "stop", "slow_reply"), park(SOL, "entry")], protection=trailing, paper=feed)

    def updates_in_flight() -> bool:
        o, v = intents(t), t.venue_orders()
        link, dot = o.get((LINK, "s"), []), o.get((DOT, "s"), [])
        return (len(link) == 2 and link[1].status == "intent" and link[1].cid not in v
                and len(dot) == 2 and dot[1].status == "intent" and v.get(dot[1].cid, {}).get("status") == "open")

    wait_for(updates_in_flight, timeout=20, what="a stop replacement in flight for each position")
    t.kill()
    before = intents(t)
    t.start(protection=trailing, paper=feed)
    t.wait_protected(timeout=PROTECT_S)
    t.finish()
    after = t.positions()
    dot_new = before[(DOT, "s")][1]
    assert after[DOT].phase == "trailing" and after[DOT].stop_cid != before[(DOT, "s")][0].cid
    assert after[DOT].stop_price >= dot_new.stop_price  # the accepted, tighter one kept (or tighter still)
    status = {o.cid: o.status for o in t.orders()}
    assert status[before[(LINK, "s")][1].cid] == "not_found" and status[dot_new.cid] in ("open", "cancelled")
    assert status[before[(DOT, "s")][0].cid] == "cancelled"  # the looser old stop taken off
    check_after_restart(t, {"w1-0": "protected", "w1-1": "protected", "w1-2": "failed"})


def test_kill_sweep_at_successive_points_of_one_wave(trader):
    """Kill each run at the next point of a plan: just after an intent is written (before its
    order reaches the venue), just after the venue accepted an order (before its answer is
    recorded), or a few log events in (recovery itself, entries, stops). Every run restarts
    from what the previous one left; the last one runs to the end and the invariants hold."""
    t = trader
    names = [SYM[n] for n in ("LINK", "DOT", "AVAX", "LTC", "BNB", "SUI")]
    t.write_waves(wave("w1", *[(s, "long" if i % 2 else "short", 1 - i / 10) for i, s in enumerate(names)]))
    slow = {"latency_ms": 150}  # every venue call: wide windows between intent, order and answer
    one_by_one = {"max_positions_per_wave": 6, "max_concurrent_opens": 1}  # a kill hits one entry
    measures = {"intent": lambda: len(t.orders()), "venue": lambda: len(t.venue_orders()), "event": t.events}
    plan = [("intent", 1), ("venue", 1), ("event", 3), ("intent", 2), ("venue", 2), ("event", 2), ("intent", 1)]
    for what, n in plan:  # 6 positions need 18 orders: every point of the plan is still ahead
        start = measures[what]()
        t.start(paper=slow, risk=one_by_one)
        wait_for(lambda: measures[what]() >= start + n, timeout=20, what=f"{n} more {what}(s)")
        t.kill()
    t.start(paper=slow, risk=one_by_one)
    t.wait_protected(timeout=PROTECT_S)
    t.finish()
    outcomes = t.outcomes()
    assert set(outcomes) == {f"w1-{i}" for i in range(6)} and None not in outcomes.values()
    assert Counter(outcomes.values())["protected"] == sum(1 for r in t.positions().values() if r.phase == "trailing")
    check_after_restart(t, outcomes)
