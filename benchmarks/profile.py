"""Where a scenario's CPU went: py-spy samples (`--gil`: only the thread holding the GIL, i.e.
what actually ran) summarised as the project's own functions, self and inclusive.

    bin/bench --profile --only waves          # writes <scenario>.pyspy and <scenario>.profile.txt
    .venv/bin/python -m benchmarks.profile benchmarks/results/<run>/<scenario>.pyspy

py-spy is the `bench` extra (`.venv/bin/pip install -e '.[bench]'`); it samples from outside
the process, so the figures of a profiled run are only a little slower than a plain run's.
"""
from __future__ import annotations

import shutil
import sys
from collections import Counter
from pathlib import Path

OURS = ("actors/", "core/", "exchange/", "persistence/", "service/", "signals/", "supervisor.py")


def py_spy() -> str | None:
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


def record_command(out: Path) -> list[str]:
    exe = py_spy()
    if exe is None:
        raise SystemExit("py-spy is not installed: .venv/bin/pip install -e '.[bench]'")
    return [exe, "record", "--gil", "--rate", "100", "--format", "raw", "--output", str(out), "--"]


def summarise(raw: Path, top: int = 25) -> str:
    """Self and inclusive shares of samples per frame; 'idle' is time no thread held the GIL."""
    own, incl, total, idle = Counter(), Counter(), 0, 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        count, frames = int(n), [f for f in stack.split(";") if f]
        total += count
        if not frames:
            idle += count
            continue
        own[frames[-1]] += count
        for f in set(frames):
            if any(p in f for p in OURS):
                incl[f] += count
    if not total:
        return "no samples"
    pct = lambda n: f"{100 * n / total:5.1f} %"  # noqa: E731
    lines = [f"{total} samples; GIL not held (waiting on I/O, locks, sleeps): {pct(idle)}", "", "self (any code):"]
    lines += [f"  {pct(n)}  {f}" for f, n in own.most_common(top)]
    lines += ["", "inclusive (project code):"]
    lines += [f"  {pct(n)}  {f}" for f, n in incl.most_common(top)]
    return "\n".join(lines)


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        print(f"== {arg}\n{summarise(Path(arg))}\n")
