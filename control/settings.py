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
from core.numbers import NumberRefused, parse_decimal
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


def stored_value(param: str, raw: object) -> Decimal:
    """A value read back from the event log, held to the limits a `set` must meet today."""
    try:
        value = parse_decimal(raw if isinstance(raw, str) else str(raw)[:64], param)
        ProtectionCfg.model_validate({PARAMS[param][1]: value})
    except NumberRefused as e:
        raise InvalidSetting(str(e)) from None
    except ValidationError as e:
        raise InvalidSetting("; ".join(err["msg"] for err in e.errors())) from None
    return value


def params_with(current: Params, changes: dict[str, Decimal]) -> Params:
    """`changes` keyed by operator name (activation, callback, stop-loss)."""
    fields = {PARAMS[k][0]: v for k, v in changes.items()}
    return replace(current, activation_pct=fields.get("activation_pct", current.activation_pct),
                   callback_pct=fields.get("callback_pct", current.callback_pct),
                   stop_loss_pct=fields.get("stop_loss_pct", current.stop_loss_pct))


class SettingsStore:
    def __init__(self, engine) -> None:
        self.engine = engine
        self.problems: list[str] = []  # stored settings that no longer validate (replay)

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
                if k not in PARAMS:
                    continue
                try:
                    changes[k] = stored_value(k, v)
                except InvalidSetting as e:
                    changes.pop(k, None)  # neither this value nor an older one: the configured default
                    self.problems.append(f"setting {k} stored in event {row.id} ignored ({e}); "
                                         "the configured default is used")
        return changes, paused

    def record_defaults(self, changes: dict[str, Decimal], who: str) -> None:
        self._append(SETTINGS_CHANGED, {"set": {k: str(v) for k, v in changes.items()}, "by": who})

    def record_paused(self, paused: bool, who: str) -> None:
        self._append(PAUSED, {"paused": paused, "by": who})

    def _append(self, kind: str, data: dict) -> None:
        with Session(self.engine) as s, s.begin():
            s.add(EventRow(ts=time.time(), kind=kind, data=data))
