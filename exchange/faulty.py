"""Injected venue faults around any gateway, so a rehearsal fails the same way on every venue.

`FaultyGateway(inner, plan)` asks the plan once per call (`plan.pick(op, symbol, leg)`) and
applies the rule it gets on the caller's side of the wire. Where a kind happens matters:

- before the request leaves: `crash` (raised in the caller), `hang` (stuck before sending;
  the inner gateway's fence check still refuses a replaced actor once it is released),
  `unavailable` (a 502: a write's outcome is unknown to the caller, a read may be retried),
  `invalid` (refused), `timeout_lost` (a write's fence is checked, then it is lost on the way);
- in transit: `latency` (the request arrives `latency_ms` late, with what is left of the
  caller's timeout; past it the caller gets a timeout, and the inner gateway is handed the
  write with no time left: paper acts on it, a real venue's client gives up before sending);
- after the venue acted: `timeout_accepted` (the order exists, the caller gets a timeout) and
  `slow_reply` (the venue acts at once, its answer takes `latency_ms`, maybe past the timeout).

A venue that simulates its network (paper) offers `round_trip(timeout)`, so a fault that never
reaches it still takes one round trip of its latency; a real venue's injected refusal is
immediate.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any, Protocol, TypeVar

from core.faults import FaultPlan, FaultRule, InjectedCrash
from core.position_types import Leg
from core.types import MarketSpec
from exchange.gateway import (
    Balance, Gateway, OrderHandler, OrderRequest, OrderState, Rejected, Retryable, TickHandler,
    UnknownOutcome, VenuePosition, check_fence, fence_passed,
)

T = TypeVar("T")

# How rules name legs ([[faults.venue]] leg = "stop").
LEG_NAMES = {Leg.ENTRY: "entry", Leg.STOP: "stop", Leg.TRAILING: "trailing", Leg.EXIT: "exit"}


class SimulatedNetwork(Protocol):
    def round_trip(self, timeout: float) -> None:
        """Wait as long as one request's round trip takes, at most `timeout`; nothing is sent."""


class FaultyGateway:
    """The inner gateway with the plan's faults injected; anything else is the inner's own
    (attributes such as a paper venue's `engine` read through)."""

    def __init__(self, inner: Gateway, plan: FaultPlan) -> None:
        self.inner = inner
        self.plan = plan
        self.name = inner.name
        self.supports_native_trailing = inner.supports_native_trailing
        if hasattr(inner, "entry_modes"):  # absent stays absent: "after_fill" only
            self.entry_modes = inner.entry_modes

    def __getattr__(self, attr: str) -> Any:
        if attr == "inner":  # not set yet (a copy being built): no recursion
            raise AttributeError(attr)
        return getattr(self.inner, attr)

    # ---- gateway interface -------------------------------------------------------------

    def markets(self) -> dict[str, MarketSpec]:
        return self.inner.markets()

    def price(self, symbol: str, timeout: float) -> Decimal:
        return self._call("price", symbol, None, timeout, False, lambda t: self.inner.price(symbol, t))

    def place_order(self, req: OrderRequest, timeout: float) -> OrderState:
        return self._call("place_order", req.symbol, req.leg, timeout, True,
                          lambda t: self.inner.place_order(req, t))

    def cancel_order(self, symbol: str, cid: str, timeout: float) -> OrderState:
        return self._call("cancel_order", symbol, None, timeout, True,
                          lambda t: self.inner.cancel_order(symbol, cid, t))

    def fetch_order(self, symbol: str, cid: str, timeout: float) -> OrderState:
        return self._call("fetch_order", symbol, None, timeout, False,
                          lambda t: self.inner.fetch_order(symbol, cid, t))

    def open_orders(self, symbol: str | None, timeout: float) -> list[OrderState]:
        return self._call("open_orders", symbol, None, timeout, False,
                          lambda t: self.inner.open_orders(symbol, t))

    def positions(self, timeout: float) -> list[VenuePosition]:
        return self._call("positions", None, None, timeout, False, lambda t: self.inner.positions(t))

    def balance(self, timeout: float) -> Balance:
        return self._call("balance", None, None, timeout, False, lambda t: self.inner.balance(t))

    def subscribe(self, on_tick: TickHandler, on_order: OrderHandler) -> None:
        self.inner.subscribe(on_tick, on_order)

    def close(self) -> None:
        self.inner.close()

    # ---- injection ---------------------------------------------------------------------

    def _call(self, op: str, symbol: str | None, leg: Leg | None, timeout: float, write: bool,
              send: Callable[[float], T]) -> T:
        rule = self.plan.pick(op, symbol, LEG_NAMES.get(leg) if leg else None)
        if rule is None:
            return send(timeout)
        kind = rule.kind
        if kind == "crash":
            raise InjectedCrash(f"injected crash in {op} {symbol or ''}")
        if kind == "hang":
            self.plan.hang()  # a request stuck before it left (pool, DNS, a dead socket)
            return send(timeout)
        if kind == "latency":
            return self._late(rule, op, symbol, timeout, write, send)
        if kind == "slow_reply":
            return self._slow_reply(rule, op, symbol, timeout, write, send)
        if kind == "unavailable":
            self._round_trip(timeout)
            raise (UnknownOutcome if write else Retryable)(f"502 Bad Gateway (injected) on {op}")
        if kind == "invalid":
            self._round_trip(timeout)
            raise Rejected(f"-1111 invalid order (injected) on {op}")
        if write:
            check_fence()  # the request leaves now: a replaced actor's write stops here
        if kind == "timeout_accepted" and write:
            send(timeout)  # the venue got it; only the answer was lost
        else:  # timeout_lost, or a read whose answer was lost
            self._round_trip(timeout)
        raise _timed_out(op, symbol, timeout, write)

    def _late(self, rule: FaultRule, op: str, symbol: str | None, timeout: float, write: bool,
              send: Callable[[float], T]) -> T:
        """The request spends `latency_ms` on the way, after it left (its fence is checked
        first); past the caller's timeout the write is handed over with no time left (the
        paper venue acts on it: only the answer is lost) and the caller gets a timeout."""
        delay = rule.latency_ms / 1000
        if write:
            check_fence()
        _wait(min(delay, timeout))
        with fence_passed():
            if delay <= timeout:
                return send(timeout - delay)
            if write:
                try:
                    send(0.0)
                except UnknownOutcome:  # the inner's own timeout: the caller's is reported
                    pass
        raise _timed_out(op, symbol, timeout, write)

    def _slow_reply(self, rule: FaultRule, op: str, symbol: str | None, timeout: float, write: bool,
                    send: Callable[[float], T]) -> T:
        """The request arrives and the venue acts; the answer is slow, maybe past the timeout
        (the case a crash or a timeout must resolve by looking the order up by client id)."""
        started = time.monotonic()
        result = send(timeout)
        spent = time.monotonic() - started
        reply_s = rule.latency_ms / 1000
        if spent + reply_s > timeout:
            _wait(timeout - spent)
            raise _timed_out(op, symbol, timeout, write, " (reply lost)")
        _wait(reply_s)
        return result

    def _round_trip(self, timeout: float) -> None:
        round_trip = getattr(self.inner, "round_trip", None)  # a SimulatedNetwork
        if round_trip is not None:
            round_trip(timeout)


def unwrap(gateway: Gateway) -> Gateway:
    """The venue's own gateway under any fault injection."""
    while isinstance(gateway, FaultyGateway):
        gateway = gateway.inner
    return gateway


def _timed_out(op: str, symbol: str | None, timeout: float, write: bool, note: str = "") -> Exception:
    return (UnknownOutcome if write else Retryable)(
        f"RequestTimeout after {timeout:.1f}s on {op} {symbol or ''}{note}".strip())


def _wait(seconds: float) -> None:
    if seconds > 0:
        time.sleep(seconds)
