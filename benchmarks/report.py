"""The suite's one table (every figure beside its target and the ratio) and its JSON record."""
from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import psutil

from benchmarks.common import Figure


def machine() -> dict:
    """What the figures were measured on; the load shows how much the shared cores were busy."""
    model = ""
    try:
        model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), "")
    except OSError:
        pass
    return {"cpu": model or platform.processor(), "cores": os.cpu_count(),
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(), "system": platform.platform()}


def _num(v: float | None, unit: str = "") -> str:
    if v is None:
        return "n/a"
    if v != v:  # NaN
        return "nan"
    text = f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}"
    return f"{text} {unit}".strip()


def _target(f: Figure) -> str:
    if f.target is None:
        return "—"
    return f"{'≤' if f.better == 'lower' else '≥'} {_num(f.target, f.unit)}"


def table(figures: list[Figure]) -> str:
    rows = [("scenario", "figure", "value", "target", "ratio", "met", "note")]
    for f in figures:
        met = "" if f.met is None else "yes" if f.met else "MISSED"
        ratio = "—" if f.ratio is None else f"{f.ratio:.2f}"
        rows.append((f.scenario, f.name, _num(f.value, f.unit), _target(f), ratio, met, f.note))
    widths = [max(len(r[i]) for r in rows) for i in range(6)]
    lines = []
    for k, r in enumerate(rows):
        cells = [r[0].ljust(widths[0]), r[1].ljust(widths[1]), r[2].rjust(widths[2]), r[3].rjust(widths[3]),
                 r[4].rjust(widths[4]), r[5].ljust(widths[5]), r[6]]
        lines.append("  ".join(cells).rstrip())
        if k == 0:
            lines.append("-" * min(200, len(lines[0]) + 20))
    return "\n".join(lines)


def misses(figures: list[Figure]) -> list[Figure]:
    return [f for f in figures if f.met is False]


def write_json(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1, default=str))
