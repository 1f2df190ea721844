"""Where positions send their outcomes: the live coordinator, or a buffer while it restarts.

The supervisor replaces a crashed or stuck coordinator, and a position may finish in between;
telling a dead actor raises, and an outcome lost there would leave its wave open forever.
The port holds such messages and delivers them to the replacement once it has resumed.
"""
from __future__ import annotations

from collections import deque
from typing import Any

from pykka import ActorDeadError


class CoordinatorPort:
    def __init__(self) -> None:
        self.ref = None
        self._held: deque[Any] = deque()

    def publish(self, ref) -> None:
        """The new coordinator is ready (resumed): deliver what waited for it."""
        self.ref = ref
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
