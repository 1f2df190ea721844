"""Close-position stops are withdrawn until the venue says they are gone, and a withdrawal asks
the venue before it ends FAILED (core/entry_protocol.py, driven through `step`)."""
from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from core import entry_protocol as ep
from core.position_logic import step
from core.position_types import (
    Cancel, CancelOutcome, Begin, CloseRequested, FailureKind, Filled, Leg, LookedUp, Lookup, Outcome, Phase, Place,
    Placed, PlaceFailed, Reconcile, Reconciled, Record, Resting, RetryDue, RetryLater, Tick,
)
from tests.core.test_entry_protocol import SPEC, new, places, reports

P = Decimal(10)


def cancels(cmds):
    return [c.cid for c in cmds if isinstance(c, Cancel)]


def trailing_with_stop():
    """stop_first through to TRAILING, the close-position stop still the position's stop."""
    s, cmds = step(new(), Begin(P), SPEC)
    (stop,) = places(cmds)
    s, cmds = step(s, Placed(stop), SPEC)
    (entry,) = places(cmds)
    s, cmds = step(s, Placed(entry, Decimal("9.9"), entry.qty), SPEC)  # no tighter level: no ratchet
    (trail,) = places(cmds)
    s, cmds = step(s, Placed(trail), SPEC)
    assert s.phase is Phase.TRAILING and s.stop_cid == stop.cid
    return s, stop, entry


def test_a_failed_cancel_of_the_close_position_stop_at_close_is_retried_before_final():
    s, stop, entry = trailing_with_stop()
    s, cmds = step(s, CloseRequested("operator"), SPEC)
    (exit_,) = places(cmds)
    s, cmds = step(s, Placed(exit_, P, entry.qty), SPEC)
    assert stop.cid in cancels(cmds) and s.phase is Phase.WITHDRAWING and not s.phase.final
    s, cmds = step(s, CancelOutcome(stop.cid, False, "502"), SPEC)
    (later,) = [c for c in cmds if isinstance(c, RetryLater)]
    assert s.phase is Phase.WITHDRAWING
    s, cmds = step(s, RetryDue(later.intent), SPEC)
    assert cmds == [Cancel(stop.cid)]
    s, cmds = step(s, CancelOutcome(stop.cid, True), SPEC)
    assert s.phase is Phase.CLOSED


def ratcheting():
    """stop_first filled higher than the pre-trade price: the ratchet's new stop is on its way."""
    s, cmds = step(new(), Begin(P), SPEC)
    (stop,) = places(cmds)
    s, cmds = step(s, Placed(stop), SPEC)
    (entry,) = places(cmds)
    s, cmds = step(s, Placed(entry, Decimal("10.1"), entry.qty), SPEC)
    (trail,) = places(cmds)
    s, cmds = step(s, Placed(trail), SPEC)
    (moved,) = places(cmds)
    return s, stop, moved


def test_a_failed_cancel_of_the_old_stop_after_the_ratchet_is_retried_and_blocks_final():
    s, stop, moved = ratcheting()
    s, cmds = step(s, Placed(moved), SPEC)
    assert cancels(cmds) == [stop.cid]
    s, cmds = step(s, CancelOutcome(stop.cid, False, "502"), SPEC)
    (later,) = [c for c in cmds if isinstance(c, RetryLater)]  # retried while the position lives
    s, cmds = step(s, Filled(moved.cid, Decimal("9.89")), SPEC)  # the ratcheted stop fires
    assert s.phase is Phase.WITHDRAWING and stop.cid in s.close_stops
    s, cmds = step(s, RetryDue(later.intent), SPEC)
    assert cmds == [Cancel(stop.cid)]
    s, cmds = step(s, CancelOutcome(stop.cid, True), SPEC)
    assert s.phase is Phase.CLOSED


def withdrawing_after_unknown_entry():
    s, cmds = step(new(), Begin(P), SPEC)
    (stop,) = places(cmds)
    s, cmds = step(s, Placed(stop), SPEC)
    (entry,) = places(cmds)
    s, cmds = step(s, PlaceFailed(entry, FailureKind.UNKNOWN, "timeout"), SPEC)
    (look,) = [c for c in cmds if isinstance(c, Lookup)]
    s, cmds = step(s, LookedUp(entry, False), SPEC)  # not found … and it lands right after
    assert s.phase is Phase.WITHDRAWING and cancels(cmds) == [stop.cid] and not reports(cmds)
    return s, stop, entry


def test_withdrawal_asks_the_venue_and_adopts_an_entry_that_landed_late():
    s, stop, entry = withdrawing_after_unknown_entry()
    s, cmds = step(s, CancelOutcome(stop.cid, True), SPEC)
    assert not s.phase.final and Reconcile() in cmds
    s, cmds = step(s, Reconciled(entry.qty, P, (), P, entry_fill=P), SPEC)
    assert s.phase is Phase.OPEN and [i.leg for i in places(cmds)] == [Leg.STOP]  # protected again
    assert Outcome.FAILED not in reports(cmds) and not s.reported


def test_a_late_fill_while_withdrawing_keeps_the_resting_stop_and_never_cancels_it():
    s, stop, entry = withdrawing_after_unknown_entry()
    s, cmds = step(s, CancelOutcome(stop.cid, False, "502"), SPEC)  # it still rests
    s, cmds = step(s, Reconciled(entry.qty, P, (Resting(stop.cid, Leg.STOP, stop.stop_price),), P,
                                 entry_fill=P), SPEC)
    assert s.stop_cid == stop.cid and stop.cid not in cancels(cmds)
    assert [i.leg for i in places(cmds)] == [Leg.TRAILING]


def test_a_late_placed_entry_while_withdrawing_is_protected_with_a_fresh_stop():
    s, stop, entry = withdrawing_after_unknown_entry()
    s, cmds = step(s, Placed(entry, P, entry.qty), SPEC)
    assert s.phase is Phase.OPEN and s.stop_cid is None
    (fresh,) = places(cmds)
    assert fresh.leg is Leg.STOP


def test_a_restart_that_finds_the_withdrawn_entry_filled_adopts_the_resting_stop():
    s, stop, entry = withdrawing_after_unknown_entry()
    s = replace(s, epoch=2)
    ev = Reconciled(entry.qty, P, (Resting(stop.cid, Leg.STOP, stop.stop_price),), P, entry_fill=P)
    s, cmds = step(s, ev, SPEC)
    assert not cancels(cmds) and s.stop_cid == stop.cid and s.phase is Phase.PROTECTED


def test_a_refused_ratchet_is_not_resent_in_a_loop():
    s, stop, moved = ratcheting()
    s, cmds = step(s, PlaceFailed(moved, FailureKind.REJECTED, "no"), SPEC)
    assert not places(cmds)
    s, cmds = step(s, Tick(Decimal("10.2"), 100.0), SPEC)
    assert not places(cmds) and s.stop_cid == stop.cid  # that level was tried once


def test_a_stop_unknown_through_every_attempt_withdraws_every_attempted_id():
    s, cmds = step(new(), Begin(P), SPEC)
    sent = []
    for _ in range(3):
        (stop,) = [c.intent for c in cmds if isinstance(c, Place)]
        sent.append(stop.cid)
        s, cmds = step(s, PlaceFailed(stop, FailureKind.UNKNOWN, "502"), SPEC)
        s, cmds = step(s, LookedUp(stop, False), SPEC)
        if retry := [c for c in cmds if isinstance(c, RetryLater)]:
            s, cmds = step(s, RetryDue(retry[0].intent), SPEC)
    assert s.phase is Phase.WITHDRAWING and sorted(cancels(cmds)) == sorted(sent) and not reports(cmds)
    for c in sent:
        s, cmds = step(s, CancelOutcome(c, True, "not found"), SPEC)
    s, cmds = step(s, Reconciled(Decimal(0), None, (), P), SPEC)
    assert s.phase is Phase.FAILED and reports(cmds) == [Outcome.FAILED]


def test_withdrawal_retries_back_off_doubling_to_a_cap_and_are_flagged_stuck():
    s, stop, entry = withdrawing_after_unknown_entry()
    delays, stuck = [], []
    for _ in range(9):
        s, cmds = step(s, CancelOutcome(stop.cid, False, "502"), SPEC)
        (later,) = [c for c in cmds if isinstance(c, RetryLater)]
        delays.append(later.delay_s)
        stuck += [c for c in cmds if isinstance(c, Record) and c.kind == "withdraw_stuck"]
        s, cmds = step(s, RetryDue(later.intent), SPEC)
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    assert len(stuck) == 1 and s.phase is Phase.WITHDRAWING


def test_a_restart_with_another_protocol_mid_entry_does_not_keep_a_cancelled_stop():
    s, cmds = step(new(), Begin(P), SPEC)
    (stop,) = places(cmds)
    s, cmds = step(s, Placed(stop), SPEC)
    (entry,) = places(cmds)
    s = replace(s, pending=None, epoch=2, params=replace(s.params, entry_mode="after_fill"), close_stops=())
    ev = Reconciled(entry.qty, P, (Resting(stop.cid, Leg.STOP, stop.stop_price),), P, entry_fill=P)
    s, cmds = step(s, ev, SPEC)
    # the after_fill path protects anew; what rests keeps protecting until the new stop rests …
    (own,) = places(cmds)
    assert own.leg is Leg.STOP and not own.close_position and stop.cid not in cancels(cmds)
    s, cmds = step(s, Placed(own), SPEC)
    assert s.stop_cid == own.cid and stop.cid in cancels(cmds)  # … and is cancelled only then


def test_the_protocol_is_derived_from_what_a_restored_position_holds():
    assert ep.restored_mode(Phase.ENTERING, "wt-p-s1-1", "wt-p-e1-2", "after_fill") == "stop_first"
    assert ep.restored_mode(Phase.WITHDRAWING, "wt-p-s1-1", None, "attached") == "stop_first"
    assert ep.restored_mode(Phase.ENTERING, "wt-p-s1-1", "wt-p-e1-1", "stop_first") == "attached"
    assert ep.restored_mode(Phase.ENTERING, None, "wt-p-e1-1", "stop_first") == "stop_first"
    assert ep.restored_mode(Phase.TRAILING, "wt-p-s1-1", None, "after_fill") == "after_fill"


def test_shutdown_waits_for_withdrawing_positions():
    assert Phase.WITHDRAWING.in_flight and Phase.ENTERING.in_flight
    assert not any(p.in_flight for p in (Phase.TRAILING, Phase.CLOSED, Phase.FAILED, Phase.EMERGENCY_CLOSED))


def test_a_restored_row_runs_the_protocol_it_was_entering_under_whatever_the_config_says():
    from persistence.models import PositionRow
    from persistence.positions import state_from_row

    s, cmds = step(new(), Begin(P), SPEC)
    (stop,) = places(cmds)
    s, cmds = step(s, Placed(stop), SPEC)
    (entry,) = places(cmds)
    row = PositionRow(id="p", signal_id="s", wave_id="w", symbol=SPEC.symbol, side="long",
                      phase="entering", epoch=1, seq=s.seq, stop_cid=stop.cid, pending_cid=entry.cid,
                      stop_price=stop.stop_price, stop_loss_pct=Decimal(2), activation_pct=Decimal(1),
                      callback_pct=Decimal("0.5"), trailing_mode="native", notional=Decimal(100),
                      trailing_activated=False, reported=False)
    got = state_from_row(row, new("after_fill").params)
    assert got.params.entry_mode == "stop_first" and got.close_stops == (stop.cid,)
    flat = Reconciled(Decimal(0), None, (Resting(stop.cid, Leg.STOP, stop.stop_price),), P)
    got, cmds = step(replace(got, epoch=2), flat, SPEC)
    assert got.phase is Phase.WITHDRAWING and stop.cid in cancels(cmds)


def test_a_restored_emergency_close_withdrawing_ends_emergency_closed():
    s, stop, entry = trailing_with_stop()
    s = replace(s, phase=Phase.WITHDRAWING, close_reason="emergency: protection failed", exit_price=P,
                stop_cid=None, close_stops=(), settle_phase=None)
    s, cmds = step(s, Reconciled(Decimal(0), None, (), P), SPEC)
    assert s.phase is Phase.EMERGENCY_CLOSED


def test_a_stuck_withdrawal_is_visible_to_the_supervisor_and_health():
    from service.position_supervision import PositionHandle

    s, stop, entry = withdrawing_after_unknown_entry()
    h = PositionHandle(None, "p", 1, SPEC.symbol)
    for n in range(ep.WITHDRAW_ALARM_AFTER):
        h.note_protection(s)
        assert not h.withdraw_stuck
        s, cmds = step(s, CancelOutcome(stop.cid, False, "502"), SPEC)
    h.note_protection(s)
    assert h.withdraw_stuck and h.phase == "withdrawing"
    s, cmds = step(s, CancelOutcome(stop.cid, True), SPEC)
    h.note_protection(s)
    assert not h.withdraw_stuck


def test_a_late_fill_report_of_the_entry_while_withdrawing_asks_the_venue_and_adopts():
    s, stop, entry = withdrawing_after_unknown_entry()
    s, cmds = step(s, Filled(entry.cid, P), SPEC)
    assert Reconcile() in cmds and s.phase is Phase.WITHDRAWING
    s, cmds = step(s, Reconciled(entry.qty, P, (Resting(stop.cid, Leg.STOP, stop.stop_price),), P,
                                 entry_fill=P), SPEC)
    assert s.phase.holds_position and s.stop_cid == stop.cid and stop.cid not in cancels(cmds)
