"""Operator settings that outlive a restart: protection defaults changed by `set`, and pause.

They are stored as append-only rows in the existing `events` table (`settings_changed`,
`paused`), replayed in order at start, so no migration is needed and the event log keeps
who-changed-what-when. A per-position `set --symbol` needs none of this: the position's own
actor persists its params in its row with every step.
"""
from __future__ import annotations

import time
from dataclasses import replace
from decimal import Decimal

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from control.protocol import PARAMS
from core.config import ProtectionCfg
from core.position_types import Params
from persistence.models import EventRow

SETTINGS_CHANGED = "settings_changed"
PAUSED = "paused"


class InvalidSetting(ValueError):
    pass


def validate(param: str, value: Decimal, current: Params) -> Decimal:
    """The same limits as the configuration file, so `set` can never reach a value the
    config would refuse (e.g. a callback outside Binance's 0.1–20 %)."""
    if param not in PARAMS:
        raise InvalidSetting(f"unknown parameter {param!r}; one of {', '.join(PARAMS)}")
    field, cfg_field = PARAMS[param]
    base = {"stop_loss_pct": current.stop_loss_pct, "trailing_activation_pct": current.activation_pct,
            "trailing_callback_pct": current.callback_pct}
    try:
        ProtectionCfg.model_validate(base | {cfg_field: value})
    except ValidationError as e:
        msg = "; ".join(err["msg"] for err in e.errors())
        raise InvalidSetting(f"{param} {value}: {msg}") from None
    return value


def params_with(current: Params, changes: dict[str, Decimal]) -> Params:
    """`changes` keyed by operator name (activation, callback, stop-loss)."""
    return replace(current, **{PARAMS[k][0]: v for k, v in changes.items()})


class SettingsStore:
    def __init__(self, engine) -> None:
        self.engine = engine

    def replay(self) -> tuple[dict[str, Decimal], bool | None]:
        """Latest value of every changed default, and the last pause state (None: never set)."""
        changes: dict[str, Decimal] = {}
        paused: bool | None = None
        with Session(self.engine) as s:
            rows = s.scalars(select(EventRow).where(EventRow.kind.in_([SETTINGS_CHANGED, PAUSED]),
                                                    EventRow.position_id.is_(None))
                             .order_by(EventRow.id)).all()
        for row in rows:
            if row.kind == PAUSED:
                paused = bool(row.data.get("paused"))
                continue
            for k, v in (row.data.get("set") or {}).items():
                if k in PARAMS:
                    changes[k] = Decimal(str(v))
        return changes, paused

    def record_defaults(self, changes: dict[str, Decimal], who: str) -> None:
        self._append(SETTINGS_CHANGED, {"set": {k: str(v) for k, v in changes.items()}, "by": who})

    def record_paused(self, paused: bool, who: str) -> None:
        self._append(PAUSED, {"paused": paused, "by": who})

    def _append(self, kind: str, data: dict) -> None:
        with Session(self.engine) as s, s.begin():
            s.add(EventRow(ts=time.time(), kind=kind, data=data))
