"""The protection window as the venue saw it: per position, seconds from its first entry fill to
the first stop-loss resting on its closing side (0 when the stop was there first).

Measured by the venue (the paper engine and the fakes built on it), never from our own books:
our books learn of a fill and of a resting stop one round trip late each, which would hide
exactly the window being measured. A venue that cannot tell (a real one) yields None.
"""
from __future__ import annotations

import math
from typing import Iterable

from prometheus_client.core import HistogramMetricFamily

BUCKETS = (0.0, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)


def venue_gaps(gateway) -> list[float] | None:
    """The venue's record, if it keeps one (`protection_gaps()`)."""
    read = getattr(gateway, "protection_gaps", None)
    gaps = read() if callable(read) else None
    return list(gaps) if gaps is not None else None


def _rank(xs: list[float], q: float) -> float:
    """Nearest-rank quantile of sorted `xs`."""
    return xs[max(0, math.ceil(q * len(xs)) - 1)]


def gap_stats(gaps: Iterable[float] | None) -> dict | None:
    """{n, p50, p99, max} in seconds (rounded to the millisecond); None when not measured."""
    if gaps is None:
        return None
    xs = sorted(gaps)
    if not xs:
        return {"n": 0, "p50": None, "p99": None, "max": None}
    return {"n": len(xs), "p50": round(_rank(xs, 0.5), 3), "p99": round(_rank(xs, 0.99), 3),
            "max": round(xs[-1], 3)}


def gap_histogram(gaps: list[float]) -> HistogramMetricFamily:
    """`wavetrader_protection_gap_seconds`, built from the venue's record at scrape time."""
    buckets = [(repr(b), sum(1 for g in gaps if g <= b)) for b in BUCKETS] + [("+Inf", len(gaps))]
    return HistogramMetricFamily(
        "wavetrader_protection_gap_seconds",
        "Per position: entry fill to first resting stop-loss, as recorded by the venue",
        buckets=buckets, sum_value=sum(gaps))
