"""The phase groups have one owner, and every reader agrees with it: a closing position the
venue still holds without a resting stop is exposed, for the supervisor and for health."""
from __future__ import annotations

import time
from decimal import Decimal
from types import SimpleNamespace

from core import phases as ph
from core.config import HealthCfg
from core.phases import Outcome, Phase
from core.position_types import Params, PositionState
from core.types import Side
from service.health import HealthMonitor
from service.metrics import Metrics
from service.position_supervision import PositionHandle
from supervisor import SupervisorStats

PARAMS = Params(stop_loss_pct=Decimal(2), activation_pct=Decimal(1), callback_pct=Decimal("0.5"))


def test_the_groups_partition_the_phases_as_their_properties_say():
    assert ph.FINAL | ph.LIVE == set(Phase) and not ph.FINAL & ph.LIVE
    assert ph.IN_FLIGHT | ph.AT_REST == set(Phase) and not ph.IN_FLIGHT & ph.AT_REST
    assert ph.CLOSED_TRADE < ph.FINAL and ph.HELD_OPEN < ph.HOLDS_POSITION <= ph.LIVE
    assert ph.STOP_RESTING < ph.HELD_OPEN
    for p in Phase:
        assert p.final == (p in ph.FINAL) and p.in_flight == (p in ph.IN_FLIGHT)
        assert p.holds_position == (p in ph.HOLDS_POSITION)
        assert p.value in ph.FINAL or p.value in ph.LIVE  # the stored strings are members too
    assert ph.values(ph.CLOSED_TRADE) == ("closed", "emergency_closed")


def test_a_closing_position_without_a_stop_is_exposed():
    assert ph.exposed(Phase.CLOSING, None) and ph.exposed("closing", None)
    assert not ph.exposed(Phase.CLOSING, "wt-p-s1-2")
    assert not any(ph.exposed(p, None) for p in (Phase.NEW, Phase.ENTERING, Phase.WITHDRAWING, *ph.FINAL))


def test_the_outcome_of_a_stored_phase():
    assert ph.outcome_of(Phase.FAILED, False) is Outcome.FAILED
    assert ph.outcome_of(Phase.EMERGENCY_CLOSED, True) is Outcome.EMERGENCY_CLOSED
    assert ph.outcome_of(Phase.CLOSED, True) is Outcome.PROTECTED
    assert ph.outcome_of(Phase.CLOSING, False) is Outcome.EMERGENCY_CLOSED
    assert ph.closed_phase(emergency=True, reported=False) is Phase.EMERGENCY_CLOSED
    assert ph.closed_phase(emergency=True, reported=True) is Phase.CLOSED
    assert ph.closed_phase(emergency=False, reported=False) is Phase.CLOSED


def _service(children: dict) -> SimpleNamespace:
    sup = SimpleNamespace(children=children, stats=SupervisorStats(), escalated=set(),
                          abandoned_alive=lambda: 0)
    return SimpleNamespace(supervisor=sup, recovery_progress=lambda: None)


def test_health_counts_a_closing_position_without_a_stop_as_unprotected():
    """The supervisor's handle marks it exposed; health, from the actors' view, must say so."""
    h = PositionHandle(None, "p1", 1, "SOL/USDT:USDT")
    s = PositionState("p1", "s1", "w1", "SOL/USDT:USDT", Side.LONG, PARAMS, phase=Phase.CLOSING,
                      qty=Decimal(1), entry_price=Decimal(100), close_reason="exit refused")
    h.note_protection(s)
    assert h.unprotected_since is not None
    mon = HealthMonitor(_service({"p1": h}), HealthCfg(), Metrics(), restart_window_s=60)
    rep = mon.report(time.monotonic() + 31)
    assert rep.open == 1 and rep.protected == 0
    assert [u.id for u in rep.unprotected] == ["p1"] and rep.status == "critical"
