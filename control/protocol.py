"""The control protocol: versioned, typed JSON messages in newline-delimited frames.

A request is one JSON object on one line::

    {"v": 1, "id": "7", "cmd": "set", "args": {"param": "callback", "value": "0.8", "symbol": "BTC"}}

and its reply is one line::

    {"v": 1, "id": "7", "ok": true, "cmd": "set", "data": {...}}
    {"v": 1, "id": "7", "ok": false, "error": {"code": "bad_arguments", "message": "...", "details": [...]}}

Every command has its own pydantic model for `args` (extra keys refused) and for `data`
(see `control.replies`). Decoding never evaluates anything: bytes → JSON → validated model,
and every failure becomes one of the error codes below, never an exception for the server.
Decimals travel as strings so prices stay exact.
"""
from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError

from control import replies as r
from core.config import BoundedDecimal

VERSION = 1
MAX_REPLY_BYTES = 32 << 20  # a positions table of thousands of rows still fits
MAX_ROW_ID = (1 << 63) - 1  # the largest id a database column holds

# error codes (the `error.code` of a failed reply)
MALFORMED = "malformed"  # not UTF-8 JSON, not an object, envelope fields of the wrong type
TOO_LARGE = "too_large"  # a frame longer than control.max_frame_bytes; the connection closes
UNSUPPORTED_VERSION = "unsupported_version"
UNKNOWN_COMMAND = "unknown_command"
BAD_ARGUMENTS = "bad_arguments"
NOT_FOUND = "not_found"
CONFLICT = "conflict"  # e.g. close-all without confirmation
UNAVAILABLE = "unavailable"  # an actor or the database did not answer in time
BUSY = "busy"  # too many connections
FORBIDDEN = "forbidden"  # peer is neither our user nor root
INTERNAL = "internal"


class ProtocolError(Exception):
    def __init__(self, code: str, message: str, details: list[str] | None = None,
                 request_id: str | None = None, cmd: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.details = code, message, details or []
        self.request_id, self.cmd = request_id, cmd


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Target = Field(min_length=1, max_length=100, description="symbol (BTC/USDT:USDT or BTC) or position id")


class StatusArgs(_Args):
    pass


class PositionsArgs(_Args):
    pass


class PositionArgs(_Args):
    target: str = Target
    events: int = Field(default=20, ge=0, le=500)


class WavesArgs(_Args):
    limit: int = Field(default=20, ge=1, le=500)


class WaveArgs(_Args):
    wave_id: str = Field(min_length=1, max_length=100)


class HealthArgs(_Args):
    pass


class PauseArgs(_Args):
    pass


class ResumeArgs(_Args):
    pass


class CloseArgs(_Args):
    target: str = Target


class CloseAllArgs(_Args):
    confirm: StrictBool = False  # JSON true, not "yes" or 1: a script has to say it means it


Param = Literal["activation", "callback", "stop-loss"]
# operator name -> (Params field, ProtectionCfg field that holds its limits)
PARAMS: dict[str, tuple[str, str]] = {
    "activation": ("activation_pct", "trailing_activation_pct"),
    "callback": ("callback_pct", "trailing_callback_pct"),
    "stop-loss": ("stop_loss_pct", "stop_loss_pct"),
}


class SetArgs(_Args):
    param: Param
    value: BoundedDecimal
    symbol: str | None = Field(default=None, min_length=1, max_length=100)


class RestartArgs(_Args):
    target: str = Target


class SupervisorArgs(_Args):
    pass


class EventsArgs(_Args):
    after_id: int | None = Field(default=None, ge=0, le=MAX_ROW_ID, strict=True)  # only events newer than this (--follow)
    limit: int = Field(default=30, ge=1, le=1000)
    target: str | None = Field(default=None, min_length=1, max_length=100)


class TradesArgs(_Args):
    since_ts: float | None = Field(default=None, ge=0, allow_inf_nan=False)  # closed at or after
    symbol: str | None = Field(default=None, min_length=1, max_length=100)
    limit: int = Field(default=10_000, ge=1, le=100_000)


# command -> (args model, reply data model)
COMMANDS: dict[str, tuple[type[_Args], type[BaseModel]]] = {
    "status": (StatusArgs, r.StatusReply),
    "positions": (PositionsArgs, r.PositionsReply),
    "position": (PositionArgs, r.PositionDetailReply),
    "waves": (WavesArgs, r.WavesReply),
    "wave": (WaveArgs, r.WaveReply),
    "health": (HealthArgs, r.HealthReply),
    "pause": (PauseArgs, r.ActionReply),
    "resume": (ResumeArgs, r.ActionReply),
    "close": (CloseArgs, r.ActionReply),
    "close-all": (CloseAllArgs, r.ActionReply),
    "set": (SetArgs, r.ActionReply),
    "restart": (RestartArgs, r.ActionReply),
    "supervisor": (SupervisorArgs, r.SupervisorReply),
    "events": (EventsArgs, r.EventsReply),
    "trades": (TradesArgs, r.TradesReply),
}


def _errors(e: ValidationError) -> list[str]:
    return [f"{'.'.join(str(p) for p in err['loc']) or 'args'}: {err['msg']}" for err in e.errors()]


def decode_request(line: bytes) -> tuple[str | None, str, _Args]:
    """One frame → (request id, command, validated args); ProtocolError otherwise."""
    try:
        obj = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise ProtocolError(MALFORMED, f"frame is not valid UTF-8 JSON: {e}") from None
    except RecursionError:  # a frame of nothing but brackets
        raise ProtocolError(MALFORMED, "frame is nested too deeply") from None
    if not isinstance(obj, dict):
        raise ProtocolError(MALFORMED, "a request must be a JSON object with v, cmd and args")
    rid = obj.get("id")
    if rid is not None and (not isinstance(rid, (str, int)) or isinstance(rid, bool) or len(str(rid)) > 64):
        raise ProtocolError(MALFORMED, "id must be a string or integer of at most 64 characters")
    rid = None if rid is None else str(rid)
    unknown = set(obj) - {"v", "id", "cmd", "args"}
    if unknown:
        raise ProtocolError(MALFORMED, f"unknown envelope fields: {', '.join(sorted(unknown))}",
                            request_id=rid)
    v = obj.get("v")
    if v != VERSION or isinstance(v, bool):
        raise ProtocolError(UNSUPPORTED_VERSION, f"protocol version {v!r} is not supported; this service speaks v{VERSION}",
                            request_id=rid)
    cmd = obj.get("cmd")
    if not isinstance(cmd, str):
        raise ProtocolError(MALFORMED, "cmd must be a string", request_id=rid)
    if cmd not in COMMANDS:
        raise ProtocolError(UNKNOWN_COMMAND, f"unknown command {cmd[:40]!r}; known: {', '.join(COMMANDS)}",
                            request_id=rid)
    args = obj.get("args", {})
    if not isinstance(args, dict):
        raise ProtocolError(BAD_ARGUMENTS, "args must be a JSON object", request_id=rid, cmd=cmd)
    try:
        return rid, cmd, COMMANDS[cmd][0].model_validate(args)
    except ValidationError as e:
        raise ProtocolError(BAD_ARGUMENTS, f"bad arguments for {cmd}", _errors(e), rid, cmd) from None


def encode_request(cmd: str, args: dict[str, Any] | None = None, request_id: str | None = None) -> bytes:
    env: dict[str, Any] = {"v": VERSION, "cmd": cmd, "args": args or {}}
    if request_id is not None:
        env["id"] = request_id
    return (json.dumps(env, default=str, separators=(",", ":")) + "\n").encode()


def encode_reply(cmd: str, data: BaseModel, request_id: str | None = None) -> bytes:
    head = {"v": VERSION, "id": request_id, "ok": True, "cmd": cmd}
    return (json.dumps(head)[:-1] + ',"data":' + data.model_dump_json() + "}\n").encode()


def encode_error(err: ProtocolError) -> bytes:
    body = {"v": VERSION, "id": err.request_id, "ok": False, "cmd": err.cmd,
            "error": {"code": err.code, "message": err.message, "details": err.details}}
    return (json.dumps(body) + "\n").encode()


def decode_reply(line: bytes) -> tuple[str | None, BaseModel]:
    """A reply frame → (command, typed data); ProtocolError carrying the server's error."""
    try:
        obj = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise ProtocolError(MALFORMED, f"reply is not valid JSON: {e}") from None
    if not isinstance(obj, dict) or obj.get("v") != VERSION:
        raise ProtocolError(UNSUPPORTED_VERSION, f"reply is not protocol v{VERSION}")
    if not obj.get("ok"):
        err = obj.get("error") or {}
        raise ProtocolError(str(err.get("code", INTERNAL)), str(err.get("message", "error")),
                            [str(d) for d in err.get("details") or []], obj.get("id"), obj.get("cmd"))
    cmd = obj.get("cmd")
    if cmd not in COMMANDS:
        raise ProtocolError(UNKNOWN_COMMAND, f"reply for unknown command {cmd!r}")
    try:
        return cmd, COMMANDS[cmd][1].model_validate(obj.get("data"))
    except ValidationError as e:
        raise ProtocolError(MALFORMED, f"reply to {cmd} does not match its schema", _errors(e)) from None
