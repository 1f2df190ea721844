"""The coordinator's state and the values it keeps per wave, shared by its parts.

`WaveCoordinator` (`actors/coordinator.py`: its mailbox, epoch claim and resume) is built from
`WaveIntake` (`coordinator_intake.py`: waves in, the inbox, launching positions) and
`WaveOutcomes` (`coordinator_outcomes.py`: outcomes, closes, deadlines, a wave's end). This
base declares what they all hold, so each part reads as its own story.
"""
from __future__ import annotations

import re
from collections import Counter, deque
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Callable

import pykka

from actors.inbox import WaveInbox
from actors.ports import LossLimits, PositionLauncher, SupervisedHandle
from actors.scheduler import Scheduler
from core.config import Config
from core.faults import FaultPlan
from core.phases import outcome_of
from core.position_types import Outcome, Params, PositionState
from persistence.positions import PositionStore
from persistence.waves import WaveStore
from signals.wave import SignalIn

OPENED = {o.value for o in Outcome if o.opened}
_SYMBOL_OR_RANK = re.compile(r"\S+/\S+:\S+ |; rank \d+|\d+s left of ")


def skip_kind(reason: str) -> str:
    """A skip reason without its symbol and rank, so a wave's skips can be counted by kind."""
    return _SYMBOL_OR_RANK.sub("", reason).strip()


def settled_outcome(s: PositionState) -> Outcome:
    """The outcome of a position that reported (or ended) before its outcome was stored, read
    from its stored phase: an actor in a final phase never reports again."""
    return outcome_of(s.phase, s.reported)


@dataclass
class WaveProgress:
    id: str
    started: float
    deadline: float
    target: int  # how many positions this wave may open
    reserves: deque[SignalIn] = field(default_factory=deque)
    launched: dict[str, str] = field(default_factory=dict)  # position id -> signal id
    opened: int = 0
    pending: set[str] = field(default_factory=set)  # signal ids without an outcome
    overdue: bool = False
    note: str | None = None  # why the whole wave was skipped, if it was
    skips: Counter[str] = field(default_factory=Counter)  # skip reasons by kind, for the summary line


@dataclass(frozen=True)
class WaveSummary:
    wave_id: str
    outcomes: dict[str, int]
    seconds: float
    late: bool


class CoordinatorBase(pykka.ThreadingActor):
    """What the coordinator holds (set in `WaveCoordinator.__init__`)."""

    use_daemon_thread = True

    cfg: Config
    waves: WaveStore
    positions: PositionStore
    supervisor: PositionLauncher
    scheduler: Scheduler
    defaults: Params
    handle: SupervisedHandle
    on_wave_done: Callable[[WaveSummary], None]
    guard: LossLimits | None  # loss limits (service/limits.py); None: none
    faults: FaultPlan
    epoch: int | None  # the coordinator epoch, once claimed
    paused: bool
    shutting_down: bool  # set once by the shutdown pause: no position starts after it
    open_symbols: dict[str, str]  # symbol -> position id (open or opening)
    exposure: dict[str, Decimal]  # position id -> its entry notional, while it is held
    active: dict[str, WaveProgress]
    by_signal: dict[str, str]  # signal id -> wave id
    inbox: WaveInbox

    if TYPE_CHECKING:  # the parts call each other through these
        def _fill(self, wp: WaveProgress) -> None: ...

        def _admit_next(self) -> None: ...

        def _decide(self, wp: WaveProgress, signal_id: str, outcome: Outcome, reason: str) -> None: ...

        def _check_done(self, wp: WaveProgress) -> None: ...
