"""Hypothesis drives waves, price moves, faults, crashes and restarts against the real actors,
the real paper venue and a real SQLite file, and checks the README's invariants after every step
(1 ratchet, 2 activation, 3 protective side, 4 always protected, 6 exactly one outcome,
7 write-ahead / no orphans, 8 fencing, 9 DB and venue agree, 10 one position per symbol).
Invariant 5 (isolation) has its own deterministic tests: a barrier and a hung call."""
from __future__ import annotations

import shutil
import tempfile
from decimal import Decimal
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from sqlalchemy import select

from core import trailing as tr
from core.faults import FaultRule
from core.types import Side
from persistence.models import PositionRow
from service.app import Service
from service.invariants import check_invariants, settle
from tests.support.helpers import SYM, make_config, wait_for, wave

SYMBOLS = [SYM[n] for n in ("BTC", "ETH", "SOL", "XRP", "DOGE", "LINK")]
symbols = st.sampled_from(SYMBOLS)
sides = st.sampled_from(["long", "short"])


class TraderMachine(RuleBasedStateMachine):
    mode = "emulated"
    entry_mode = "after_fill"

    @initialize()
    def start(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="wt-stateful-"))
        cfg = make_config(self.tmp, "deadlines.venue_call_s=1", "deadlines.db_call_s=1",
                          "deadlines.operation_s=2", "supervisor.max_restarts=50",
                          f"protection.trailing_mode={self.mode}", f"protection.entry_mode='{self.entry_mode}'",
                          "protection.trailing_activation_pct=0.2", "protection.trailing_callback_pct=0.4")
        self.svc = Service(cfg)
        self.svc.start(with_source=False)
        self.waves = 0
        self.levels: dict[str, Decimal] = {}  # the model: each position's tightest level seen

    def teardown(self) -> None:
        if hasattr(self, "svc"):
            for plan in (self.svc.venue_faults, self.svc.db_faults, self.svc.actor_faults):
                plan.release()
            self.svc.shutdown()
            shutil.rmtree(self.tmp, ignore_errors=True)

    @rule(picks=st.lists(st.tuples(symbols, sides, st.integers(1, 99)), min_size=1, max_size=4))
    def submit_wave(self, picks) -> None:
        self.waves += 1
        wid = f"w{self.waves}"
        self.svc.submit(wave(wid, *[(s, side, score / 100) for s, side, score in picks]), "stateful")
        wait_for(lambda: len(self.svc.stats.waves) == self.waves, timeout=20, what=f"wave {wid}")

    @rule(symbol=symbols, bps=st.integers(-400, 400))
    def move_price(self, symbol: str, bps: int) -> None:
        engine = self.svc.gateway.engine
        spec = engine.markets[symbol]
        price = max(spec.tick_size, spec.nearest_price(engine.price(symbol) * (1 + Decimal(bps) / 10000)))
        engine.set_price(symbol, price)  # the venue triggers whatever the move crosses
        self.svc.market_data.on_tick(symbol, price)  # and the positions hear of it

    @rule(symbol=symbols, kind=st.sampled_from(["unavailable", "timeout_accepted", "timeout_lost", "invalid"]),
          leg=st.sampled_from(["entry", "stop", "trailing", "exit"]))
    def venue_fault_once(self, symbol: str, kind: str, leg: str) -> None:
        self.svc.venue_faults.add(FaultRule(kind, op="place_order", leg=leg, symbols=[symbol], times=1))

    @rule(symbol=symbols, op=st.sampled_from(["tick", "recover"]))
    def crash_once(self, symbol: str, op: str) -> None:
        self.svc.actor_faults.add(FaultRule("crash", op=op, symbols=[symbol], times=1))

    def _held(self) -> list[str]:
        return sorted(h.symbol for k, h in self.svc.supervisor.children.items()
                      if k != "coordinator" and not h.retired)

    @rule(data=st.data(), path=st.lists(st.integers(-150, 150), min_size=1, max_size=8))
    def walk_a_held_symbol(self, data, path: list[int]) -> None:
        """A short price path where a position is, so trailing stops activate, follow and
        get crossed; the model is checked after every move, not only after the rule."""
        held = self._held()
        if not held:
            return
        symbol = data.draw(st.sampled_from(held))
        for bps in path:
            self.move_price(symbol, bps)
            assert settle(self.svc, timeout_s=20), "service did not become quiescent"
            self._check_model()

    @rule(data=st.data())
    def restart_a_position(self, data) -> None:
        keys = sorted(k for k, h in self.svc.supervisor.children.items() if k != "coordinator" and not h.retired)
        if keys:
            h = self.svc.supervisor.children[data.draw(st.sampled_from(keys))]
            self.svc.supervisor.child_failed(h, "stateful test: forced restart")

    @invariant()
    def invariants_hold(self) -> None:
        if not hasattr(self, "svc"):
            return
        assert settle(self.svc, timeout_s=20), "service did not become quiescent"
        violations = check_invariants(self.svc)
        assert not violations, "\n".join(map(str, violations))
        self._check_model()
        if self.entry_mode != "after_fill":  # the venue saw every position protected from its fill
            gaps = self.svc.gateway.engine.protection_gaps()
            assert max(gaps, default=0.0) == 0.0, f"naked at the venue: {gaps}"

    def _check_model(self) -> None:
        with self.svc.db.tx("db_read") as tx:
            rows = list(tx.scalars(select(PositionRow)))
        for p in rows:  # invariant 1 on the trailing level itself, across steps
            seen = self.levels.get(p.id)
            if p.trail_level is not None:
                assert seen is None or tr.tighter(seen, p.trail_level, Side(p.side)) == p.trail_level, \
                    f"{p.symbol} trailing level loosened {seen} -> {p.trail_level}"
                self.levels[p.id] = p.trail_level
            if p.stop_price is not None and p.phase not in ("closed", "emergency_closed"):
                key = p.id + ":stop"
                seen = self.levels.get(key)
                assert seen is None or tr.tighter(seen, p.stop_price, Side(p.side)) == p.stop_price, \
                    f"{p.symbol} stop loosened {seen} -> {p.stop_price}"
                self.levels[key] = p.stop_price


TraderMachine.TestCase.settings = settings(
    max_examples=20, stateful_step_count=12, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
test_trader_invariants_emulated = TraderMachine.TestCase


class NativeTrailingMachine(TraderMachine):
    mode = "native"


NativeTrailingMachine.TestCase.settings = settings(
    max_examples=6, stateful_step_count=8, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
test_trader_invariants_native = NativeTrailingMachine.TestCase


class StopFirstMachine(TraderMachine):
    """The stop-first protocol through the same faults, crashes and restarts."""

    mode = "native"
    entry_mode = "stop_first"


StopFirstMachine.TestCase.settings = settings(
    max_examples=8, stateful_step_count=10, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
test_trader_invariants_stop_first = StopFirstMachine.TestCase
