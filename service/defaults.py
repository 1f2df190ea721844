"""The one owner of the default Params new positions start with (the operator's `set`).

Everyone who launches or loads positions with the defaults reads them from here or is told by
it: the supervisor (loading a restarted position), the coordinator (a `SetDefaults` message,
queued behind whatever it is doing and held for a successor if it is being replaced), and
recovery (adopted positions). The control plane records the change and sends it here; it never
assigns into the service.
"""
from __future__ import annotations

import threading
from decimal import Decimal

from actors.coordinator_port import CoordinatorPort
from actors.messages import SetDefaults
from control.settings import params_with
from core.position_types import Params
from service.position_supervision import PositionSupervisor


class OperatorDefaults:
    def __init__(self, params: Params, supervisor: PositionSupervisor, coordinator: CoordinatorPort) -> None:
        self._params = params
        self._supervisor, self._coordinator = supervisor, coordinator
        self._lock = threading.Lock()  # two operators setting at once: each change builds on the other

    @property
    def current(self) -> Params:
        return self._params

    def change(self, changes: dict[str, Decimal]) -> Params:
        """Apply operator changes (keyed by operator name: activation, callback, stop-loss)."""
        with self._lock:
            new = params_with(self._params, changes)
            self._params = new
            self._supervisor.defaults = new
            self._coordinator.tell(SetDefaults(new))
        return new
