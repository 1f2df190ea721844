"""The stop-first and attached entry protocols of the pure state machine (core/entry_protocol.py):
example histories, and a property over random venues — retries, 502s, unknown outcomes,
restarts and operator closes — that no entry is ever sent before its stop is acknowledged and
that a stop placed for an entry that never filled never stays behind on the flat symbol."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core import entry_protocol as ep
from core.position_logic import step
from core.position_types import (
    Begin, Cancel, CancelOutcome, CloseRequested, FailureKind, Leg, LookedUp, Lookup,
    Outcome, Params, Phase, Place, Placed, PlaceFailed, PositionState, Reconcile, Reconciled, Report,
    Resting, RetryDue, RetryLater, attached_cid,
)
from core.types import MarketSpec, Side

SPEC = MarketSpec("X/USDT:USDT", Decimal("0.01"), Decimal("0.1"), Decimal("0.1"), Decimal(5))


def params(mode: str, trailing: str = "native") -> Params:
    return Params(Decimal(2), Decimal(1), Decimal("0.5"), trailing_mode=trailing,
                  notional=Decimal(100), entry_mode=mode)


def new(mode: str = "stop_first", side: Side = Side.LONG, trailing: str = "native") -> PositionState:
    return PositionState("p", "s", "w", SPEC.symbol, side, params(mode, trailing))


def places(cmds):
    return [c.intent for c in cmds if isinstance(c, Place)]


def reports(cmds):
    return [c.outcome for c in cmds if isinstance(c, Report)]


# ---- examples ---------------------------------------------------------------------------


def test_stop_first_rests_a_close_position_stop_before_the_entry_then_ratchets_to_the_fill():
    s, cmds = step(new(), Begin(Decimal(10)), SPEC)
    (stop,) = places(cmds)
    assert stop.leg is Leg.STOP and stop.close_position and stop.stop_price == Decimal("9.80")
    assert s.phase is Phase.ENTERING
    s, cmds = step(s, Placed(stop), SPEC)
    (entry,) = places(cmds)
    assert entry.leg is Leg.ENTRY and s.stop_cid == stop.cid
    s, cmds = step(s, Placed(entry, Decimal("10.1"), entry.qty), SPEC)  # filled higher: a tighter level
    (trail,) = places(cmds)
    assert trail.leg is Leg.TRAILING and s.phase is Phase.PROTECTED and s.stop_cid == stop.cid
    s, cmds = step(s, Placed(trail), SPEC)
    assert reports(cmds) == [Outcome.PROTECTED]
    (moved,) = places(cmds)
    assert moved.leg is Leg.STOP and not moved.close_position and moved.stop_price == Decimal("9.89")
    s, cmds = step(s, Placed(moved), SPEC)
    assert s.stop_cid == moved.cid and [c.cid for c in cmds if isinstance(c, Cancel)] == [stop.cid]


def test_stop_first_never_loosens_when_the_fill_slips_against_us():
    s, cmds = step(new(), Begin(Decimal(10)), SPEC)
    (stop,) = places(cmds)
    s, cmds = step(s, Placed(stop), SPEC)
    (entry,) = places(cmds)
    s, cmds = step(s, Placed(entry, Decimal("9.9"), entry.qty), SPEC)  # a worse fill: looser level
    (trail,) = places(cmds)
    s, cmds = step(s, Placed(trail), SPEC)
    assert not places(cmds) and s.stop_price == Decimal("9.80")


def test_price_already_through_the_stop_means_the_entry_is_not_sent():
    s, cmds = step(new(side=Side.SHORT), Begin(Decimal(10)), SPEC)
    (stop,) = places(cmds)
    s, cmds = step(s, PlaceFailed(stop, FailureKind.REJECTED, "-2021 Order would immediately trigger."), SPEC)
    assert s.phase is Phase.FAILED and not places(cmds) and reports(cmds) == [Outcome.FAILED]
    assert "entry not sent" in next(c.reason for c in cmds if isinstance(c, Report))


def test_a_refused_entry_withdraws_its_stop_and_holds_the_symbol_until_it_is_gone():
    s, cmds = step(new(), Begin(Decimal(10)), SPEC)
    (stop,) = places(cmds)
    s, cmds = step(s, Placed(stop), SPEC)
    (entry,) = places(cmds)
    s, cmds = step(s, PlaceFailed(entry, FailureKind.REJECTED, "-2019 Margin is insufficient"), SPEC)
    assert s.phase is Phase.WITHDRAWING and not s.phase.final and not reports(cmds)  # FAILED once it is gone
    assert [c.cid for c in cmds if isinstance(c, Cancel)] == [stop.cid]
    s, cmds = step(s, CancelOutcome(stop.cid, False, "502"), SPEC)  # the cancel failed: again later
    (later,) = [c for c in cmds if isinstance(c, RetryLater)]
    s, cmds = step(s, CloseRequested("operator"), SPEC)
    assert not cmds and s.phase is Phase.WITHDRAWING  # nothing is held: nothing to close
    s, cmds = step(s, RetryDue(later.intent), SPEC)
    assert cmds == [Cancel(stop.cid)]
    s, cmds = step(s, CancelOutcome(stop.cid, True), SPEC)
    assert s.phase is Phase.WITHDRAWING and Reconcile() in cmds and not reports(cmds)  # did the entry land?
    s, cmds = step(s, Reconciled(Decimal(0), None, (), Decimal(10)), SPEC)
    assert s.phase is Phase.FAILED and s.stop_cid is None and reports(cmds) == [Outcome.FAILED]


def test_operator_close_while_the_stop_is_on_its_way_withdraws_it_and_sends_no_entry():
    s, cmds = step(new(), Begin(Decimal(10)), SPEC)
    (stop,) = places(cmds)
    s, cmds = step(s, CloseRequested("operator"), SPEC)
    assert not places(cmds)
    s, cmds = step(s, Placed(stop), SPEC)
    assert not places(cmds) and s.phase is Phase.WITHDRAWING and not reports(cmds)
    assert Cancel(stop.cid) in cmds


def test_operator_close_while_the_entry_is_in_flight_closes_under_the_resting_stop():
    s, cmds = step(new(), Begin(Decimal(10)), SPEC)
    (stop,) = places(cmds)
    s, cmds = step(s, Placed(stop), SPEC)
    (entry,) = places(cmds)
    s, cmds = step(s, CloseRequested("operator"), SPEC)
    s, cmds = step(s, Placed(entry, Decimal(10), entry.qty), SPEC)
    (exit_,) = places(cmds)
    assert exit_.leg is Leg.EXIT and s.stop_cid == stop.cid  # the stop rests until the exit fills
    s, cmds = step(s, Placed(exit_, Decimal(10), entry.qty), SPEC)
    assert s.phase is Phase.WITHDRAWING and Cancel(stop.cid) in cmds  # final once the stop is gone
    s, cmds = step(s, CancelOutcome(stop.cid, True), SPEC)
    assert s.phase is Phase.CLOSED and not [c for c in cmds if isinstance(c, Reconcile)]


def test_restart_with_the_entry_filled_adopts_the_resting_stop_without_a_window():
    s, cmds = step(new(), Begin(Decimal(10)), SPEC)
    (stop,) = places(cmds)
    s, cmds = step(s, Placed(stop), SPEC)
    (entry,) = places(cmds)
    s = replace(s, pending=None, epoch=2)  # the answer to the entry was lost in a crash
    ev = Reconciled(entry.qty, Decimal(10), (Resting(stop.cid, Leg.STOP, stop.stop_price),), Decimal(10),
                    entry_fill=Decimal(10))
    s, cmds = step(s, ev, SPEC)
    assert not [c for c in cmds if isinstance(c, Cancel)] and s.stop_cid == stop.cid
    assert [i.leg for i in places(cmds)] == [Leg.TRAILING]


def test_restart_with_the_symbol_flat_withdraws_the_stop():
    s, cmds = step(new(), Begin(Decimal(10)), SPEC)
    (stop,) = places(cmds)
    s = replace(s, pending=None, epoch=2)  # crashed with the stop's answer unknown
    s, cmds = step(s, Reconciled(Decimal(0), None, (Resting(stop.cid, Leg.STOP, stop.stop_price),),
                                 Decimal(10)), SPEC)
    assert s.phase is Phase.WITHDRAWING and Cancel(stop.cid) in cmds and not places(cmds)
    assert not reports(cmds)  # FAILED is reported when the withdrawal ends


def test_attached_entry_carries_its_stop_and_is_protected_at_the_fill():
    s, cmds = step(new("attached"), Begin(Decimal(10)), SPEC)
    (entry,) = places(cmds)
    assert entry.leg is Leg.ENTRY and entry.attached_stop == Decimal("9.80")
    s, cmds = step(s, Placed(entry, Decimal(10), entry.qty), SPEC)
    assert s.stop_cid == attached_cid(entry.cid) and [i.leg for i in places(cmds)] == [Leg.TRAILING]


def test_attached_refused_entry_leaves_nothing_to_withdraw():
    s, cmds = step(new("attached"), Begin(Decimal(10)), SPEC)
    (entry,) = places(cmds)
    s, cmds = step(s, PlaceFailed(entry, FailureKind.REJECTED, "no"), SPEC)
    assert s.phase is Phase.FAILED and s.stop_cid is None and not [c for c in cmds if isinstance(c, Cancel)]


@pytest.mark.parametrize("setting,venue,supported,want", [
    ("auto", "paper", ("stop_first", "attached"), "stop_first"),
    ("auto", "binanceusdm", ("stop_first",), "stop_first"),
    ("auto", "bybit", ("attached",), "attached"),
    ("auto", "bybit", (), "after_fill"),  # a gateway that cannot carry it yet
    ("attached", "paper", ("stop_first", "attached"), "attached"),
])
def test_the_default_protocol_is_chosen_per_venue(setting, venue, supported, want):
    assert ep.resolve(setting, venue, supported) == want


def test_an_explicit_protocol_the_venue_cannot_carry_stops_the_start():
    with pytest.raises(ValueError, match="not supported on bybit"):
        ep.resolve("stop_first", "bybit", ("attached",))


# ---- the property -------------------------------------------------------------------------


@dataclass
class Venue:
    """Just enough venue: which of our orders it knows, which stops rest, what it holds."""

    qty: Decimal = Decimal(0)
    known: dict[str, tuple[Decimal | None, Decimal | None]] = field(default_factory=dict)
    resting: dict[str, Decimal] = field(default_factory=dict)
    close_position: set[str] = field(default_factory=set)  # resting stops that close whatever is held
    entry_fill: Decimal | None = None
    landing: dict[str, object] = field(default_factory=dict)  # sent, "not found", lands later

    def reconciled(self) -> Reconciled:
        return Reconciled(self.qty, self.entry_fill if self.qty else None,
                          tuple(Resting(c, Leg.STOP, p) for c, p in self.resting.items()), PRICE,
                          entry_fill=self.entry_fill)


PRICE = Decimal(10)


def restarted(s: PositionState) -> PositionState:
    """What a restart restores: the persisted columns only (as persistence/positions.py does)."""
    held = s.stop_cid is not None and s.phase in (Phase.ENTERING, Phase.WITHDRAWING)
    return replace(s, pending=None, epoch=s.epoch + 1, close_stops=(s.stop_cid,) if held else (),
                   withdraw_failures=0, withdraw_reason=None, settle_phase=None, ratchet_level=None)


@given(st.data(), st.sampled_from([Side.LONG, Side.SHORT]), st.sampled_from(["native", "emulated"]))
@settings(max_examples=300, deadline=None)
def test_no_entry_is_sent_before_its_stop_is_acknowledged(data, side, trailing):
    """…and once final, no close-position stop of the position rests, and a FAILED position
    left nothing held at the venue (an entry of unknown outcome may land after its lookup)."""
    s = new("stop_first", side, trailing)
    venue, acked = Venue(), set()
    queue: list = [Begin(PRICE)]
    later: list = []
    for n in range(80):
        if not queue:
            if later:
                queue.append(later.pop(0))
            else:
                break
        calm = n > 50  # the venue behaves in the end, so every history can finish
        ev = queue.pop(0)
        if not calm and data.draw(st.integers(0, 9)) == 0:  # a crash and restart before this event
            later = []
            s = restarted(s)
            ev = venue.reconciled()
        elif not calm and data.draw(st.integers(0, 14)) == 0:
            queue.insert(0, ev)
            ev = CloseRequested("operator")
        if isinstance(ev, (Placed, LookedUp)) and ev.intent.leg is Leg.STOP and (
                not isinstance(ev, LookedUp) or ev.found):
            acked.add(ev.intent.cid)
        s, cmds = step(s, ev, SPEC)
        for c in cmds:
            match c:
                case Place(intent=i):
                    if i.leg is Leg.ENTRY:
                        assert acked & set(venue.resting), "entry sent with no acknowledged stop resting"
                    fate = "ok" if calm else data.draw(st.sampled_from(
                        ["ok", "ok", "502", "lost", "accepted", "refused", "late"]))
                    if fate in ("ok", "accepted"):
                        _apply(venue, i)
                    elif fate == "late":
                        venue.landing[i.cid] = i
                    if fate == "ok":
                        queue.append(Placed(i, *venue.known[i.cid]))
                    elif fate == "refused":
                        queue.append(PlaceFailed(i, FailureKind.REJECTED, "-2021 Order would immediately trigger."))
                    else:
                        queue.append(PlaceFailed(i, FailureKind.UNKNOWN, "502 Bad Gateway"))
                case Lookup(intent=i):
                    got = venue.known.get(i.cid)
                    queue.append(LookedUp(i, got is not None, *(got or (None, None))))
                    if i.cid in venue.landing:  # not found, then it lands
                        _apply(venue, venue.landing.pop(i.cid))
                case Reconcile():
                    queue.append(venue.reconciled())
                case RetryLater(intent=i):
                    later.append(RetryDue(i))
                case Cancel(cid=cid):
                    if cid in venue.landing:
                        _apply(venue, venue.landing.pop(cid))
                    if calm or data.draw(st.booleans()):
                        venue.resting.pop(cid, None)
                        queue.append(CancelOutcome(cid, True))
                    else:
                        queue.append(CancelOutcome(cid, False, "502"))
    if not s.phase.final:
        return  # still working (e.g. protecting, withdrawing): the window property is what matters here
    left = venue.close_position & set(venue.resting)
    assert not left, f"a close-position stop rests after {s.phase}: {left}"
    if s.phase is Phase.FAILED:
        assert venue.qty == 0, "FAILED while the venue holds the entry"


def _apply(venue: Venue, i) -> None:
    """The venue accepts the order."""
    if i.leg is Leg.ENTRY:
        venue.qty += i.qty
        venue.entry_fill = PRICE
        venue.known[i.cid] = (PRICE, i.qty)
    elif i.leg is Leg.EXIT:
        venue.known[i.cid] = (PRICE, venue.qty)
        venue.qty = Decimal(0)
    else:
        venue.known[i.cid] = (None, None)
        if i.leg is Leg.STOP:
            venue.resting[i.cid] = i.stop_price
            if i.close_position:
                venue.close_position.add(i.cid)


def test_gap_figures_are_nearest_rank_and_absent_where_the_venue_cannot_tell():
    from service.protection_gap import gap_stats

    assert gap_stats(None) is None
    assert gap_stats([]) == {"n": 0, "p50": None, "p99": None, "max": None}
    assert gap_stats([0.0] * 99 + [2.0]) == {"n": 100, "p50": 0.0, "p99": 0.0, "max": 2.0}
    assert gap_stats([0.3, 0.1, 0.2]) == {"n": 3, "p50": 0.2, "p99": 0.3, "max": 0.3}


def test_the_ccxt_venues_spell_the_two_forms_as_their_documents_do():
    from exchange.ccxt.venues import BinanceUsdm, BybitLinear
    from exchange.gateway import OrderRequest, Rejected

    stop = OrderRequest("wt-p-s1-1", "BTC/USDT:USDT", Leg.STOP, "sell", Decimal("0.003"),
                        stop_price=Decimal("63700.0"), close_position=True)
    entry = OrderRequest("wt-p-e1-2", "BTC/USDT:USDT", Leg.ENTRY, "buy", Decimal("0.003"),
                         attached_stop=Decimal("63700.0"))
    assert BinanceUsdm().order_args(stop) == ("market", {"clientOrderId": "wt-p-s1-1",
                                                         "stopLossPrice": "63700.0", "closePosition": True})
    assert BybitLinear().order_args(entry)[1] == {"clientOrderId": "wt-p-e1-2", "tpslMode": "Partial",
                                                   "stopLoss": {"triggerPrice": "63700.0"}}
    with pytest.raises(Rejected, match="closePosition"):
        BybitLinear().order_args(stop)
    with pytest.raises(Rejected, match="stopLoss"):
        BinanceUsdm().order_args(entry)
