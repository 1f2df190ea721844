"""What the actors need from the parts above them, as protocols.

The supervisor and the service sit above the actors (an import contract keeps the actors from
importing them), so an actor knows its supervisor handle, the position launcher and the loss
limits only by what it calls on them. `service/` hands in the real ones: a `ChildHandle` (or
`PositionHandle`), the `PositionSupervisor`, the `RiskGuard` of `service/limits.py`.
"""
from __future__ import annotations

from contextlib import AbstractContextManager
from decimal import Decimal
from typing import Any, Protocol

from core.position_types import PositionState


class SupervisedHandle(Protocol):
    """An actor's report card at its supervisor: operation deadlines, crashes, fencing."""

    epoch: int

    def op(self, name: str, seconds: float) -> AbstractContextManager[None]:
        """Run the block as operation `name`, which must end within `seconds`."""
        ...

    def crashed(self, exc: BaseException) -> None: ...

    def fenced(self) -> None: ...


class PositionReports(SupervisedHandle, Protocol):
    """A position actor's handle: it also reports the position's protection at every step."""

    def note_protection(self, s: PositionState) -> None: ...


class PositionLauncher(Protocol):
    """What the coordinator asks of the supervisor. `by` is the coordinator's own handle:
    a request from a coordinator already replaced is refused (Fenced)."""

    def launch(self, states: list[PositionState], by: Any) -> None:
        """Start the actors of positions whose rows were just created."""
        ...

    def adopt_orphan(self, state: PositionState, by: Any) -> bool:
        """Take over a position row no actor owns; False if one already does."""
        ...


class LossLimits(Protocol):
    """The loss limits the coordinator consults before it opens or sizes a position."""

    def note_closed(self, symbol: str, reason: str | None) -> None: ...

    def halt_reason(self) -> str | None: ...

    def cooldown_left(self, symbol: str) -> float: ...

    def equity(self) -> Decimal | None: ...
