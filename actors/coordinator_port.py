"""Where messages for the coordinator go: the live coordinator, or a buffer while it restarts.

The supervisor replaces a crashed or stuck coordinator, and a position may finish in between;
telling a dead actor raises, and an outcome lost there would leave its wave open forever.
The port holds such messages and delivers them to the replacement once it is published.

A request that needs an answer (a wave handed in by a source) is sent again to the successor
when the coordinator it went to is replaced before answering: the coordinator's records make
that safe (a wave id is stored once; a replaced coordinator's writes are fenced). When the
supervisor gives up on the coordinator the port is marked down with the reason, and every
request is refused with it at once.
"""
from __future__ import annotations

import threading
from collections import deque
from concurrent.futures import Future
from typing import Any, Callable

from typing import Protocol

from pykka import ActorDeadError


class CoordinatorDown(RuntimeError):
    """The supervisor escalated the coordinator: nothing takes waves until a restart."""


class _Teller(Protocol):
    """A coordinator's actor ref, or the sink the port forwards to once it is down."""

    def tell(self, msg: Any) -> None: ...


class CoordinatorPort:
    def __init__(self) -> None:
        self.ref: _Teller | None = None
        self.generation = 0  # raised by every publish: how a waiting request sees a replacement
        self.down_reason: str | None = None
        self._held: deque[Any] = deque()
        self._changed = threading.Condition()

    def publish(self, ref: _Teller) -> None:
        """A new coordinator is started: deliver what waited for it (its mailbox keeps the
        order, so its own start-up messages, sent before this, run first)."""
        with self._changed:
            self.ref, self.down_reason = ref, None
            self.generation += 1
            self._changed.notify_all()
        self.flush()

    def retire(self) -> None:
        """The coordinator was given up on: hold messages from now on, for its successor.
        (Told to the old one, an outcome would wait behind its stuck call and be lost.)"""
        with self._changed:
            self.ref = None

    def down(self, reason: str, sink: _Teller | None = None) -> None:
        """No coordinator any more: requests are refused with `reason`; messages go to `sink`
        (anything with `tell`), the held ones first, or keep being held without one."""
        with self._changed:
            self.ref, self.down_reason = None, reason
            self._changed.notify_all()
        if sink is not None:
            self.ref = sink
            self.flush()

    def tell(self, msg: Any) -> None:
        ref = self.ref
        try:
            if ref is None:
                raise ActorDeadError("no coordinator yet")
            ref.tell(msg)
            return
        except ActorDeadError:
            self._held.append(msg)
        if self.ref is not ref:  # a replacement was published while we held the message
            self.flush()

    def request(self, make: Callable[[Future, int], Any], wait_s: float, attempts: int) -> Any:
        """Send `make(reply, attempt)` and return what the coordinator sets on `reply`. Sent again (at
        most `attempts` times in all) to a successor when the coordinator is replaced before it
        answers, or answers with an error and is then replaced within `wait_s`. Raises
        CoordinatorDown, TimeoutError (no answer, no successor within `wait_s`), or the
        coordinator's own error."""
        for attempt in range(max(1, attempts)):
            with self._changed:
                if not self._changed.wait_for(lambda: self.ref is not None or self.down_reason, wait_s):
                    raise TimeoutError(f"no coordinator for {wait_s:g}s")
                if self.down_reason is not None:
                    raise CoordinatorDown(self.down_reason)
                ref, gen = self.ref, self.generation
                assert ref is not None  # woken by a publish, not by a down
            reply: Future = Future()
            reply.add_done_callback(lambda _f: self._wake())
            try:
                ref.tell(make(reply, attempt))
            except ActorDeadError:
                self._await_successor(gen, wait_s)
                continue
            with self._changed:
                self._changed.wait_for(lambda: reply.done() or self.generation != gen
                                       or self.down_reason is not None, wait_s)
            if reply.done() and reply.exception() is None:
                return reply.result()
            if self.down_reason is not None:
                raise CoordinatorDown(self.down_reason)
            if self.generation != gen:
                continue
            if not reply.done():
                raise TimeoutError(f"the coordinator did not answer within {wait_s:g}s")
            # it failed on this request: a crash is restarted, and the successor gets it again
            if not self._await_successor(gen, wait_s):
                error = reply.exception()
                assert error is not None  # done, and not with a result (returned above)
                raise error
        raise TimeoutError(f"the coordinator was replaced {attempts} times without answering")

    def _await_successor(self, gen: int, wait_s: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self.generation != gen or self.down_reason is not None,
                                          wait_s)

    def _wake(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def flush(self) -> None:
        ref = self.ref
        while ref is not None and self._held:
            try:
                msg = self._held.popleft()
            except IndexError:
                return
            try:
                ref.tell(msg)
            except ActorDeadError:
                self._held.appendleft(msg)
                return

    @property
    def held(self) -> int:
        return len(self._held)
