"""The benchmark suite itself: it runs end to end (toy sizes, real services, real PostgreSQL)
and its correctness figures hold; its report marks a missed target. The figures' *values*
are never asserted here: they are timings, and timings are the benchmark's to print."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from hypothesis import given, strategies as st

from benchmarks.common import Figure, percentile
from benchmarks.report import misses, table

ROOT = Path(__file__).resolve().parents[2]


def test_quick_suite_runs_every_scenario_and_reports_json(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--results", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (path,) = tmp_path.glob("bench-*.json")
    record = json.loads(path.read_text())
    assert [r["ok"] for r in record["runs"]] == [True] * 6
    figs = {(f["scenario"], f["name"]): f for f in record["figures"]}
    by_name = lambda part: [f for (s, n), f in figs.items() if part in n]  # noqa: E731

    # every scenario produced its headline figure, each a number with its target beside it
    (wave5,) = by_name("wave of 5 ÷ critical path")
    assert wave5["value"] > 0 and wave5["target"] == 1.2 and wave5["ratio"] == wave5["value"] / 1.2
    assert by_name("serialized (max_concurrent_opens=1) wave of 3")
    (p99,) = by_name("tick-to-decision p99")
    assert p99["value"] > 0 and p99["target"] == 10
    (hung,) = by_name("hung call → re-protected")
    assert hung["target"] == 2 and hung["value"] > 1, "nothing is re-protected before the deadline passes"
    (rate,) = by_name("candles per second")
    assert rate["value"] > 0
    gaps = {f["scenario"].rsplit(", ", 1)[1] for f in by_name("entry fill → stop resting")}
    assert gaps == {"stop_first", "attached", "after_fill"}
    assert len(by_name("signal → fully protected (round trips)")) == 3
    restored = by_name("every position reconciled and protected")
    assert {f["scenario"] for f in restored} == {"fleet 40 (sqlite)", "fleet 20 (postgres)"}

    # what must hold whatever the timings: recovery re-sends nothing and breaks no invariant,
    # and every ticked position ends on its symbol's latest price
    for part in ("orders sent during recovery", "invariant violations after recovery",
                 "not on their symbol's latest price"):
        found = by_name(part)
        assert found and all(f["value"] == 0 and f["met"] for f in found), (part, found)
    assert "target" in proc.stdout and "ratio" in proc.stdout and str(path) in proc.stdout


def test_a_missed_target_is_marked_with_its_ratio():
    figs = [Figure("waves", "wave of 50 ÷ critical path", 1.5, "×", 1.2, "lower"),
            Figure("scale", "RSS", 500, "MB", 600, "lower"),
            Figure("ticks", "taken in", 9000, "ticks/s", 9900, "higher"),
            Figure("scale", "threads", 5004)]
    assert [f.met for f in figs] == [False, True, False, None]
    assert misses(figs) == [figs[0], figs[2]]
    out = table(figs).splitlines()
    assert "MISSED" in out[2] and "1.25" in out[2] and "≤ 1.2 ×" in out[2]
    assert "yes" in out[3] and "MISSED" in out[4] and "≥ 9,900 ticks/s" in out[4]
    assert out[5].split()[-1] == "—", "a figure without a target has no ratio"


@given(st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), min_size=1, max_size=200),
       st.floats(min_value=0, max_value=100))
def test_percentile_is_a_sample_with_at_least_p_percent_at_or_below(xs, p):
    v = percentile(xs, p)
    assert v in xs
    assert sum(x <= v for x in xs) >= p / 100 * len(xs) - 1e-9
    assert sum(x < v for x in xs) < max(1, p / 100 * len(xs)) + 1e-9
