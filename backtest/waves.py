"""Recorded waves for a backtest or a rehearsal on a recorded path: each at its own time.

Lines are parsed by the same parser as live intake, with the clock set to the wave's own
`ts` (a recorded wave is judged as it was when it arrived), so every rule and every reason is
the live one. A wave without `ts` cannot be placed on a recorded timeline and is rejected.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from signals.sources import recorded_time
from signals.wave import Wave, WaveRejected, parse_wave


@dataclass(frozen=True, slots=True)
class Line:
    """One message of the file: its wave, or why it is not one."""

    number: int
    raw: str
    wave: Wave | None = None
    reason: str | None = None
    ts: float | None = None


def read_waves(path: str | Path, markets, *, max_wave_size: int = 50) -> list[Line]:
    """Every message of a JSON-lines wave file, in time order (file order among equals)."""
    p = Path(path)
    out: list[Line] = []
    with p.open("r", encoding="utf-8", errors="replace") as fh:
        for n, raw in enumerate(fh, 1):
            raw = raw.strip()
            if not raw or raw.startswith("#"):
                continue
            ts = recorded_time(raw)
            try:
                wave = parse_wave(raw, markets=markets, source=f"{p.name}:{n}",
                                  max_wave_size=max_wave_size, now=ts)
            except WaveRejected as e:
                out.append(Line(n, raw, reason=e.reason, ts=ts))
                continue
            if ts is None:
                out.append(Line(n, raw, reason="a recorded wave needs its ts (unix seconds)"))
                continue
            out.append(Line(n, raw, wave=wave, ts=ts))
    return sorted(out, key=lambda line: (line.ts if line.ts is not None else float("-inf"), line.number))
