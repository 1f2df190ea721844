"""The escalation policy on its own, against a fake venue and store: an escalated position is
fenced, closed at market under the state machine's exit client id, its orders of ours taken
off, recorded and reported once; if the close fails, it is flagged and left open, and its
signal still gets an outcome."""
from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from types import SimpleNamespace

from actors.escalation import EscalationPolicy
from actors.messages import PositionOutcome
from core.config import DeadlinesCfg
from core.position_types import Leg, Outcome, Phase, leg_of, position_id_of
from exchange.gateway import OrderState, VenuePosition
from tests.core.test_position_logic import opened


class Venue:
    def __init__(self, qty: Decimal | None, symbol: str, resting: list[str], fail: bool = False) -> None:
        self.held = [] if qty is None else [VenuePosition(symbol, qty, Decimal(10))]
        self.resting, self.fail = resting, fail
        self.placed: list = []
        self.cancelled: list[str] = []

    def positions(self, timeout):
        if self.fail:
            raise TimeoutError("venue down")
        return self.held

    def place_order(self, req, timeout):
        self.placed.append(req)

    def open_orders(self, symbol, timeout):
        return [OrderState(c, symbol, leg_of(c) or Leg.STOP, "open") for c in self.resting]

    def cancel_order(self, symbol, cid, timeout):
        self.cancelled.append(cid)


class Store:
    def __init__(self, s) -> None:
        self.s = s
        self.flags: list[tuple[str, str]] = []
        self.steps: list = []
        self.epochs: list[int] = []

    def flag(self, pid, msg):
        self.flags.append((pid, msg))

    def commit_step(self, s):
        self.steps.append(s)


class Coordinator:
    def __init__(self) -> None:
        self.told: list[PositionOutcome] = []

    def tell(self, msg):
        self.told.append(msg)


def _policy(s, venue):
    store, coord = Store(s), Coordinator()
    ctx = SimpleNamespace(gateway=venue, store=store, deadlines=DeadlinesCfg(), epochs={s.id: s.epoch},
                          coordinator=lambda: coord)

    def claim(pid, epoch):
        store.epochs.append(epoch)
        return epoch + 1
    return EscalationPolicy(ctx, lambda pid: store.s, claim), ctx, store, coord


def test_an_escalated_position_is_closed_under_the_state_machines_exit_id():
    s = replace(opened(), reported=False)
    foreign = "manual-1"
    venue = Venue(s.qty, s.symbol, [*s.protective_cids, foreign])
    policy, ctx, store, coord = _policy(s, venue)
    assert policy.settle(s.id, s.epoch, "too many restarts") == "too many restarts"
    (exit_,) = venue.placed
    assert exit_.cid == replace(s, epoch=s.epoch + 1, seq=s.seq + 1).cid(Leg.EXIT)
    assert position_id_of(exit_.cid) == s.id and leg_of(exit_.cid) is Leg.EXIT
    assert (exit_.leg, exit_.side, exit_.qty) == (Leg.EXIT, s.side.exit_order_side, s.qty)
    assert venue.cancelled == list(s.protective_cids), "ours off, the foreign order left"
    (final,) = store.steps
    assert final.phase is Phase.EMERGENCY_CLOSED and final.reported and final.stop_cid is None
    assert final.epoch == s.epoch + 1 and store.flags == [(s.id, "too many restarts")]
    assert [(m.position_id, m.outcome) for m in coord.told] == [(s.id, Outcome.EMERGENCY_CLOSED)]
    assert s.id not in ctx.epochs, "the fence is lifted: nobody owns the position any more"


def test_an_escalated_position_already_reported_closes_quietly():
    s = opened()
    policy, _ctx, store, coord = _policy(s, Venue(None, s.symbol, []))
    assert policy.settle(s.id, s.epoch, "m") == "m"
    assert store.steps[0].phase is Phase.CLOSED and not coord.told


def test_a_failed_close_flags_the_position_and_settles_its_signal_unprotected():
    s = replace(opened(), reported=False)
    venue = Venue(s.qty, s.symbol, [], fail=True)
    policy, ctx, store, coord = _policy(s, venue)
    note = policy.settle(s.id, s.epoch, "m")
    assert note == "m; close failed, position left open" and not venue.placed
    assert store.epochs == [s.epoch] and store.flags == [(s.id, "m")] and not store.steps
    assert ctx.epochs[s.id] == s.epoch + 1, "the old actor stays fenced in memory"
    ((outcome, reason),) = [(m.outcome, m.reason) for m in coord.told]
    assert outcome is Outcome.UNPROTECTED and "close failed" in reason and "flagged for the operator" in reason
