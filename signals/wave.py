"""Wave messages: parsing and validation with a clear reason for everything refused.

A wave is `{"wave_id": str, "signals": [{"id", "symbol", "side", "score"}, …], "ts"?: unix s}`.
A wave-level problem rejects the whole wave; a signal-level problem rejects only that signal.
Input is hostile until proven otherwise: nothing here may raise anything but WaveRejected, and
every text that is echoed into a reason or stored is bounded and escaped (a lone surrogate or
a NUL byte would make the database refuse the row, and a refused row would crash the caller).
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from core.numbers import NumberRefused, parse_decimal
from core.text import printable
from core.types import Side

MAX_ID_LEN = 100  # signal ids; the column holds 128, room for a duplicate's "#n" suffix
MAX_WAVE_ID_LEN = 48  # the column holds 64, room for "-rejected-xxxxxx"
MAX_SCORE = Decimal(10) ** 9
SCORE_PLACES = 12  # scores only rank; finer digits would only bloat the row
MAX_CLOCK_AHEAD_S = 300.0  # a wave stamped further ahead is a clock or unit (ms) mistake


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


def show(value: Any, limit: int = 40) -> str:
    """A bounded, escaped rendering of untrusted input for a reason: never recursive (a
    deeply nested value would raise RecursionError), never a lone surrogate or a NUL."""
    if isinstance(value, str):
        return repr(value[:limit]) + ("…" if len(value) > limit else "")
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, (int, float, Decimal)):
        try:
            text = str(value)
        except ValueError:  # an int beyond Python's digit limit for str()
            return "a huge number"
        return text[:limit] + ("…" if len(text) > limit else "")
    return f"a JSON {'list' if isinstance(value, list) else 'object' if isinstance(value, dict) else type(value).__name__}"


safe_text = printable


def _ident(raw: Any, what: str, max_len: int = MAX_ID_LEN) -> str:
    if raw is None:
        raise ValueError(f"{what} missing")
    if not isinstance(raw, (str, int)) or isinstance(raw, bool):
        raise ValueError(f"{what} must be a string, got {show(raw)}")
    text = raw.strip() if isinstance(raw, str) else show(raw, max_len + 1)
    if not text or len(text) > max_len or not text.isprintable():
        raise ValueError(f"{what} must be 1–{max_len} printable characters, got {show(raw)}")
    return text


def _timestamp(obj: dict, now: float) -> float:
    ts = obj.get("ts", now)
    if isinstance(ts, bool) or not isinstance(ts, (int, float, Decimal)):
        raise ValueError(f"ts must be a unix timestamp in seconds, got {show(ts)}")
    try:
        value = float(ts)
    except (OverflowError, ValueError):
        value = math.inf
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"ts must be a finite, non-negative unix timestamp, got {show(ts)}")
    return value


def parse_wave(raw: str | bytes | dict, *, markets: set[str] | dict, source: str = "?",
               max_wave_size: int = 50, max_age_s: float = 900.0,
               now: float | None = None) -> Wave:
    now = time.time() if now is None else now
    if isinstance(raw, (str, bytes)):
        try:
            obj = json.loads(raw, parse_float=Decimal, parse_constant=lambda c: float(c))
        except RecursionError:
            raise WaveRejected("not valid JSON: nested too deeply") from None
        except ValueError as e:  # includes UnicodeDecodeError for bytes that are not UTF-8
            raise WaveRejected(f"not valid JSON: {safe_text(str(e), 120)}") from None
    else:
        obj = raw
    if not isinstance(obj, dict):
        raise WaveRejected(f"a wave must be a JSON object, got {type(obj).__name__}")
    try:
        wave_id = _ident(obj.get("wave_id"), "wave_id", MAX_WAVE_ID_LEN)
    except ValueError as e:
        raise WaveRejected(str(e)) from None
    sigs = obj.get("signals")
    if sigs is None:
        raise WaveRejected("signals missing", wave_id)
    if not isinstance(sigs, list):
        raise WaveRejected(f"signals must be a list, got {show(sigs)}", wave_id)
    if not sigs:
        raise WaveRejected("wave has no signals", wave_id)
    if len(sigs) > max_wave_size:
        raise WaveRejected(f"wave has {len(sigs)} signals, more than signals.max_wave_size={max_wave_size}", wave_id)
    try:
        ts = _timestamp(obj, now)
    except ValueError as e:
        raise WaveRejected(str(e), wave_id) from None
    if now - ts > max_age_s:
        raise WaveRejected(f"wave is {now - ts:.0f}s old, older than signals.max_age_s={max_age_s:g}", wave_id)
    if ts - now > MAX_CLOCK_AHEAD_S:
        raise WaveRejected(f"ts is {ts - now:.0f}s in the future (milliseconds instead of seconds, "
                           "or the signal server's clock is wrong)", wave_id)
    parsed = [_parse_signal(i, s, wave_id, markets) for i, s in enumerate(sigs)]
    seen: set[str] = set()
    deduped: list[SignalIn] = []
    for s in parsed:
        if s.id in seen:
            s = SignalIn(f"{s.id}#{len(deduped)}", s.symbol, s.side, s.score, reason=f"duplicate signal id {s.id} in wave")
        seen.add(s.id)
        deduped.append(s)
    valid = sorted((s for s in deduped if s.reason is None), key=_score_of, reverse=True)
    ranked = [SignalIn(s.id, s.symbol, s.side, s.score, rank=r + 1) for r, s in enumerate(valid)]
    rejected = [s for s in deduped if s.reason is not None]
    return Wave(wave_id, tuple(ranked + rejected), ts, source, now)


def _parse_signal(index: int, raw: Any, wave_id: str, markets) -> SignalIn:
    fallback_id = f"{wave_id}#{index}"
    if not isinstance(raw, dict):
        return SignalIn(fallback_id, "?", None, None, reason=f"signal {index} is not an object, got {show(raw)}")
    symbol = raw.get("symbol")
    shown_symbol = safe_text(symbol, 64) if isinstance(symbol, str) and symbol else "?"
    try:
        sid = _ident(raw.get("id"), "id")
    except ValueError as e:
        return SignalIn(fallback_id, shown_symbol, None, None, reason=f"signal {index}: {e}")
    if symbol is None:
        return SignalIn(sid, "?", None, None, reason="symbol missing")
    if not isinstance(symbol, str) or not symbol:
        return SignalIn(sid, "?", None, None, reason=f"symbol must be a non-empty string, got {show(symbol)}")
    if symbol not in markets:
        return SignalIn(sid, shown_symbol, None, None, reason=f"unknown symbol {show(symbol, 64)} for this venue")
    side_raw = raw.get("side")
    if side_raw is None:
        return SignalIn(sid, symbol, None, None, reason="side missing")
    if not isinstance(side_raw, str):
        return SignalIn(sid, symbol, None, None, reason=f"side must be long/short (or buy/sell), got {show(side_raw)}")
    try:
        if len(side_raw) > 16:
            raise ValueError
        side = Side.parse(side_raw)
    except ValueError:
        return SignalIn(sid, symbol, None, None, reason=f"side must be long/short (or buy/sell), got {show(side_raw)}")
    score, reason = _score(raw.get("score"))
    if reason is not None:
        return SignalIn(sid, symbol, side, None, reason=reason)
    return SignalIn(sid, symbol, side, score)


def _score_of(s: SignalIn) -> Decimal:
    """The ranking key of a valid signal: every signal without a reason has a score."""
    assert s.score is not None, s
    return s.score


def _score(raw: Any) -> tuple[Decimal | None, str | None]:
    """A finite, non-negative, bounded Decimal; numeric strings are accepted too."""
    if raw is None:
        return None, "score missing"
    try:
        return parse_decimal(raw, "score", lo=Decimal(0), hi=MAX_SCORE, places=SCORE_PLACES, round_excess=True), None
    except NumberRefused as e:
        return None, str(e)
