"""Faults injected into a position actor itself (the `[[faults.actor]]` rules of the fault
plan): a crash or a hang at a named step, to rehearse the supervisor's restarts.

Venue and database faults are applied around the gateway and the store (`core/faults.py`);
these are the ones only the actor's own thread can suffer.
"""
from __future__ import annotations

from actors.ports import PositionReports
from actors.position_context import PositionContext
from core.faults import InjectedCrash


def inject(ctx: PositionContext, handle: PositionReports, op: str, symbol: str) -> None:
    """Crash, or hang under an operation deadline, if the plan picks a rule for `op` here."""
    rule = ctx.faults.pick(op, symbol)
    if rule is None:
        return
    if rule.kind == "crash":
        raise InjectedCrash(f"injected crash of {symbol} on {op}")
    if rule.kind == "hang":
        with handle.op(f"{op} (injected hang)", ctx.deadlines.operation_s):
            ctx.faults.hang()
