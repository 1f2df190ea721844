"""Numbers that cross a boundary (control socket, config, signals, stored settings).

Python's Decimal accepts `1e-999999999` and 60,000-digit literals, and both are deadly later:
quantizing or printing them allocates gigabytes. Every number from outside goes through
`parse_decimal`, which refuses anything that is not finite, short, of moderate exponent and
within range, and says why in words an operator can act on.
"""
from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

MAX_CHARS = 40  # a literal longer than this is no price, percentage or score
MAX_DIGITS = 30  # significant digits
MAX_ADJUSTED_EXPONENT = 18  # magnitude within 1e-18 … 1e18


class NumberRefused(ValueError):
    """The input is not a number this service accepts; the message says why."""


def _shown(raw: Any) -> str:
    if isinstance(raw, str):
        text = raw[:24]
        text = text if text.isprintable() else repr(text)[1:-1][:24]
        return repr(text) + ("…" if len(raw) > 24 else "")
    if isinstance(raw, int) and not isinstance(raw, bool) and raw.bit_length() > 64:
        return f"an integer of {raw.bit_length()} bits"
    text = str(raw) if isinstance(raw, (int, float, Decimal)) else repr(raw)
    return text[:24] + ("…" if len(text) > 24 else "")


def _exponent(dec: Decimal) -> int:
    exponent = dec.as_tuple().exponent
    assert isinstance(exponent, int)  # finite
    return exponent


def parse_decimal(raw: Any, what: str = "value", *, lo: Decimal | None = None, hi: Decimal | None = None,
                  places: int = 12, round_excess: bool = False) -> Decimal:
    """`raw` (str, int, float or Decimal) as a bounded Decimal, or NumberRefused.

    More than `places` decimal places is refused, or rounded to `places` when `round_excess`
    (scores only rank, so their last digits do not matter)."""
    if isinstance(raw, bool) or not isinstance(raw, (str, int, float, Decimal)):
        kinds: dict[type, str] = {list: "a JSON list", dict: "a JSON object"}
        kind = kinds.get(type(raw), type(raw).__name__)
        raise NumberRefused(f"{what} must be a number, got {repr(raw) if isinstance(raw, bool) else kind}")
    if isinstance(raw, str):
        text = raw.strip()
        if len(text) > MAX_CHARS:
            raise NumberRefused(f"{what} must be at most {MAX_CHARS} characters, got {len(raw)}")
    elif isinstance(raw, int) and raw.bit_length() > 64:
        raise NumberRefused(f"{what} is out of range: {_shown(raw)}")
    try:
        dec = Decimal(repr(raw) if isinstance(raw, float) else raw.strip() if isinstance(raw, str) else raw)
    except (InvalidOperation, ValueError):
        raise NumberRefused(f"{what} must be a number, got {_shown(raw)}") from None
    if not dec.is_finite():
        raise NumberRefused(f"{what} must be a finite number, got {_shown(raw)}")
    if lo is not None and dec < lo:
        raise NumberRefused(f"{what} must not be negative, got {_shown(raw)}" if lo == 0 else
                            f"{what} must be at least {lo}, got {_shown(raw)}")
    if hi is not None and dec > hi:
        raise NumberRefused(f"{what} must be at most {hi}, got {_shown(raw)}")
    if round_excess and -_exponent(dec) > places:
        dec = dec.quantize(Decimal(1).scaleb(-places))
    if dec and not -MAX_ADJUSTED_EXPONENT <= dec.adjusted() <= MAX_ADJUSTED_EXPONENT:
        raise NumberRefused(f"{what} is out of range (magnitude 1e-{MAX_ADJUSTED_EXPONENT} … "
                            f"1e{MAX_ADJUSTED_EXPONENT}), got {_shown(raw)}")
    if len(dec.as_tuple().digits) > MAX_DIGITS:
        raise NumberRefused(f"{what} has more than {MAX_DIGITS} significant digits")
    exponent = _exponent(dec)
    if -exponent > places:
        raise NumberRefused(f"{what} has more than {places} decimal places, got {_shown(raw)}")
    return dec.quantize(Decimal(1)) if exponent > 0 else dec  # 1E+2 -> 100
