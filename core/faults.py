"""Seeded fault injection, so operators and tests can rehearse failures on purpose.

A plan is a list of rules; each call site asks `plan.pick(op, symbol, leg)` and gets the rule
to apply (or None). Hangs wait on one release event, so a test can wake the abandoned threads
afterwards and watch them being fenced. Venue rules are applied around whichever gateway is
configured (`exchange/faulty.py`), database rules around each transaction
(`persistence/db_faults.py`), actor rules by the actors themselves.
"""
from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field

KINDS = ("latency", "unavailable", "timeout_accepted", "timeout_lost", "invalid", "hang", "crash",
         "slow_reply")  # slow_reply: the venue acts at once, its answer takes latency_ms


class InjectedCrash(RuntimeError):
    """An exception thrown on purpose to exercise the supervisor."""


@dataclass
class FaultRule:
    kind: str
    op: str = "*"  # place_order, cancel_order, fetch_order, db_write, tick, … or "*"
    leg: str = "*"  # entry, stop, trailing, exit or "*"
    symbols: list[str] = field(default_factory=list)  # empty: every symbol
    probability: float = 1.0
    times: int = 0  # how many times it may fire; 0 = unlimited
    latency_ms: int = 0
    fired: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {', '.join(KINDS)}")
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError(f"fault probability must be within [0, 1], got {self.probability}")

    def matches(self, op: str, symbol: str | None, leg: str | None) -> bool:
        return ((self.op == "*" or self.op == op)
                and (self.leg == "*" or leg is None or self.leg == leg)
                and (not self.symbols or symbol in self.symbols)
                and (self.times == 0 or self.fired < self.times))


class FaultPlan:
    def __init__(self, rules: list[FaultRule] | None = None, seed: int = 7):
        self.rules = list(rules or [])
        self._rng = random.Random(seed)
        self._lock = threading.Lock()  # guards the RNG and counters only, never I/O
        self.released = threading.Event()

    def __bool__(self) -> bool:
        return bool(self.rules)

    def add(self, rule: FaultRule) -> FaultRule:
        self.rules.append(rule)
        return rule

    def pick(self, op: str, symbol: str | None = None, leg: str | None = None) -> FaultRule | None:
        if not self.rules:
            return None
        with self._lock:
            for rule in self.rules:
                if rule.matches(op, symbol, leg) and self._rng.random() < rule.probability:
                    rule.fired += 1
                    return rule
        return None

    def hang(self, limit_s: float | None = None) -> None:
        """Block the calling thread as a call that never returns would, until released."""
        self.released.wait(limit_s)

    def release(self) -> None:
        self.released.set()
