"""Injected database faults, applied around each transaction `Database.tx` opens.

One rule per transaction, picked by operation and symbol before it begins: `hang` blocks
until the plan is released, `crash` raises in the caller, `unavailable` / `timeout_lost` /
`timeout_accepted` fail it as a timeout before anything is written. `latency` is a slow
database: on SQLite a wait before the transaction, on PostgreSQL a slow statement inside it,
so the session's statement timeout applies to it as it would to a genuinely slow query.
"""
from __future__ import annotations

import time

from sqlalchemy import text
from sqlalchemy.orm import Session

from core.faults import FaultPlan, FaultRule, InjectedCrash
from persistence.errors import DbTimeout

_TIMEOUTS = ("unavailable", "timeout_lost", "timeout_accepted")


class DbFaults:
    def __init__(self, plan: FaultPlan, *, server_side_latency: bool) -> None:
        self.plan = plan
        self.server_side_latency = server_side_latency

    def before(self, op: str, symbol: str | None) -> FaultRule | None:
        """Pick this transaction's rule and apply what happens before it begins; the rule is
        handed to `inside` once the transaction has begun."""
        rule = self.plan.pick(op, symbol)
        if rule is None:
            return None
        if rule.kind == "hang":
            self.plan.hang()
        elif rule.kind == "latency" and not self.server_side_latency:
            time.sleep(rule.latency_ms / 1000)
        elif rule.kind == "crash":
            raise InjectedCrash(f"injected crash in {op} {symbol or ''}")
        elif rule.kind in _TIMEOUTS:
            raise DbTimeout(f"injected database timeout in {op} {symbol or ''}")
        return rule

    def inside(self, rule: FaultRule | None, session: Session) -> None:
        if rule is not None and rule.kind == "latency" and self.server_side_latency:
            session.execute(text("SELECT pg_sleep(:s)"), {"s": rule.latency_ms / 1000})
