"""Wave messages: parsing and validation with a clear reason for everything refused.

A wave is `{"wave_id": str, "signals": [{"id", "symbol", "side", "score"}, …], "ts"?: unix s}`.
A wave-level problem rejects the whole wave; a signal-level problem rejects only that signal.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from core.types import Side

MAX_ID_LEN = 100


class WaveRejected(ValueError):
    """The whole message is unusable; `wave_id` is what could be read of it, if anything."""

    def __init__(self, reason: str, wave_id: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.wave_id = wave_id


@dataclass(frozen=True, slots=True)
class SignalIn:
    id: str
    symbol: str
    side: Side | None
    score: Decimal | None
    rank: int = 0
    reason: str | None = None  # set when the signal is rejected


@dataclass(frozen=True, slots=True)
class Wave:
    id: str
    signals: tuple[SignalIn, ...]  # ranked best first; rejected ones carry a reason
    ts: float
    source: str = "?"
    received_at: float = field(default_factory=time.time)

    @property
    def valid(self) -> list[SignalIn]:
        return [s for s in self.signals if s.reason is None]


def _ident(raw: Any, what: str) -> str:
    if not isinstance(raw, (str, int)) or isinstance(raw, bool):
        raise ValueError(f"{what} must be a string")
    text = str(raw).strip()
    if not text or len(text) > MAX_ID_LEN or not text.isprintable():
        raise ValueError(f"{what} must be 1–{MAX_ID_LEN} printable characters")
    return text


def parse_wave(raw: str | bytes | dict, *, markets: set[str] | dict, source: str = "?",
               max_wave_size: int = 50, max_age_s: float = 900.0,
               now: float | None = None) -> Wave:
    now = time.time() if now is None else now
    if isinstance(raw, (str, bytes)):
        try:
            obj = json.loads(raw, parse_float=Decimal, parse_constant=lambda c: float(c))
        except (ValueError, RecursionError) as e:
            raise WaveRejected(f"not valid JSON: {str(e)[:120]}") from None
    else:
        obj = raw
    if not isinstance(obj, dict):
        raise WaveRejected(f"a wave must be a JSON object, got {type(obj).__name__}")
    try:
        wave_id = _ident(obj.get("wave_id"), "wave_id")
    except ValueError as e:
        raise WaveRejected(str(e)) from None
    sigs = obj.get("signals")
    if not isinstance(sigs, list):
        raise WaveRejected("signals must be a list", wave_id)
    if not sigs:
        raise WaveRejected("wave has no signals", wave_id)
    if len(sigs) > max_wave_size:
        raise WaveRejected(f"wave has {len(sigs)} signals, more than signals.max_wave_size={max_wave_size}", wave_id)
    ts = obj.get("ts", now)
    if isinstance(ts, bool) or not isinstance(ts, (int, float, Decimal)) or not math.isfinite(float(ts)):
        raise WaveRejected("ts must be a finite unix timestamp", wave_id)
    if now - float(ts) > max_age_s:
        raise WaveRejected(f"wave is {now - float(ts):.0f}s old, older than signals.max_age_s={max_age_s:g}", wave_id)
    parsed = [_parse_signal(i, s, wave_id, markets) for i, s in enumerate(sigs)]
    seen: set[str] = set()
    deduped = []
    for s in parsed:
        if s.id in seen:
            s = SignalIn(f"{s.id}#{len(deduped)}", s.symbol, s.side, s.score, reason=f"duplicate signal id {s.id} in wave")
        seen.add(s.id)
        deduped.append(s)
    valid = sorted((s for s in deduped if s.reason is None), key=lambda s: s.score, reverse=True)
    ranked = [SignalIn(s.id, s.symbol, s.side, s.score, rank=r + 1) for r, s in enumerate(valid)]
    rejected = [s for s in deduped if s.reason is not None]
    return Wave(wave_id, tuple(ranked + rejected), float(ts), source, now)


def _parse_signal(index: int, raw: Any, wave_id: str, markets) -> SignalIn:
    fallback_id = f"{wave_id}#{index}"
    if not isinstance(raw, dict):
        return SignalIn(fallback_id, "?", None, None, reason=f"signal {index} is not an object")
    try:
        sid = _ident(raw.get("id"), "id")
    except ValueError as e:
        return SignalIn(fallback_id, str(raw.get("symbol", "?"))[:64], None, None, reason=f"signal {index}: {e}")
    symbol = raw.get("symbol")
    if not isinstance(symbol, str) or not symbol:
        return SignalIn(sid, "?", None, None, reason="symbol missing")
    symbol = symbol[:64]
    if symbol not in markets:
        return SignalIn(sid, symbol, None, None, reason=f"unknown symbol {symbol} for this venue")
    try:
        side = Side.parse(raw.get("side"))
    except ValueError as e:
        return SignalIn(sid, symbol, None, None, reason=str(e)[:200])
    score = raw.get("score")
    try:
        if isinstance(score, bool) or score is None:
            raise InvalidOperation
        dec = Decimal(str(score))
        if not dec.is_finite():
            raise InvalidOperation
    except (InvalidOperation, ValueError):
        return SignalIn(sid, symbol, side, None, reason=f"score must be a finite number, got {str(score)[:40]!r}")
    if dec < 0:
        return SignalIn(sid, symbol, side, None, reason=f"score must not be negative, got {dec}")
    return SignalIn(sid, symbol, side, dec)
