"""Text from remote parties (signal servers, venues, signal fields) fit for a log line, a
terminal or a database row: bounded, and every control or invisible character escaped.

A newline in a server's error reason would start a forged log line (`… CRITICAL …`); an ANSI
escape would repaint the operator's terminal; a lone surrogate or a NUL makes a database
refuse the row. `printable` leaves ordinary text untouched and escapes the rest as Python
does (`\\n`, `\\x1b`, `\\u202e`).
"""
from __future__ import annotations


def printable(text: object, limit: int = 200) -> str:
    """`text` (made a str) with non-printable characters escaped, at most `limit` characters."""
    s = text if isinstance(text, str) else str(text)
    shown = s[: limit + 1] if s[: limit + 1].isprintable() else repr(s[: limit + 1])[1:-1]
    return shown if len(shown) <= limit and len(s) <= limit else shown[: limit - 1] + "…"
