"""The backtest's picture: one self-contained HTML file (inline SVG, no external assets) with
the equity curve and one position's price, stop-loss and trailing-stop levels over time."""
from __future__ import annotations

from decimal import Decimal
from html import escape
from typing import Sequence

from backtest.report import render_totals, totals, when
from backtest.trades import Result, Trade

W, H, PAD, TOP = 900, 300, 48, 44


def _scale(lo: float, hi: float, a: float, b: float):
    span = (hi - lo) or 1.0
    return lambda v: a + (float(v) - lo) / span * (b - a)


def _svg(series: list[tuple[str, str, list[tuple[float, float]], bool]], title: str,
         marks: Sequence[tuple[str, float, float]] = ()) -> str:
    """Lines on shared axes, each (label, colour, points, stepped), and labelled dots."""
    pts = [p for _l, _c, ps, _s in series for p in ps]
    if not pts:
        return f"<p>{escape(title)}: nothing to draw</p>"
    t0, t1 = min(p[0] for p in pts), max(p[0] for p in pts)
    v0, v1 = min(p[1] for p in pts), max(p[1] for p in pts)
    pad = (v1 - v0) * 0.05 or abs(v1) * 0.01 or 1.0
    v0, v1 = v0 - pad, v1 + pad
    x, y = _scale(t0, t1, PAD, W - 10), _scale(v0, v1, H - 30, TOP)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}">',
           f'<text x="{PAD}" y="14" font-size="13">{escape(title)}</text>',
           f'<line x1="{PAD}" y1="{H - 30}" x2="{W - 10}" y2="{H - 30}" stroke="#999"/>',
           f'<line x1="{PAD}" y1="{TOP}" x2="{PAD}" y2="{H - 30}" stroke="#999"/>']
    for k in range(5):
        v = v0 + (v1 - v0) * k / 4
        out.append(f'<text x="2" y="{y(v) + 4:.1f}" font-size="10">{v:.6g}</text>')
    for k, t in enumerate((t0, (t0 + t1) / 2, t1)):
        anchor = ("start", "middle", "end")[k]
        out.append(f'<text x="{x(t):.1f}" y="{H - 14}" font-size="10" text-anchor="{anchor}">{when(t)}</text>')
    labels: list[str] = []
    for label, colour, ps, stepped in series:
        path: list[str] = []
        for i, (t, v) in enumerate(ps):
            if stepped and i:
                path.append(f"{x(t):.1f},{y(ps[i - 1][1]):.1f}")
            path.append(f"{x(t):.1f},{y(v):.1f}")
        if len(path) == 1:
            path.append(path[0])
        out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{" ".join(path)}"/>')
        if label not in labels:
            labels.append(label)
            out.append(f'<text x="{PAD + 110 * (len(labels) - 1)}" y="32" font-size="11" '
                       f'fill="{colour}">— {escape(label)}</text>')
    for label, t, v in marks:
        right = x(t) > W - 160  # keep a label near the right edge inside the picture
        out.append(f'<circle cx="{x(t):.1f}" cy="{y(v):.1f}" r="4" fill="none" stroke="#000"/>'
                   f'<text x="{x(t) + (-6 if right else 6):.1f}" y="{y(v) - 6:.1f}" font-size="10" '
                   f'text-anchor="{"end" if right else "start"}">{escape(label)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def pick(r: Result, signal: str | None = None) -> Trade | None:
    """The position to draw: the one asked for, else the first a trailing stop closed, else
    the first closed, else the first opened."""
    opened = [t for t in r.trades if t.position_id in r.levels]
    if signal is not None:
        return next((t for t in opened if t.signal_id == signal), None)
    for ok in (lambda t: t.status == "closed" and "trailing" in (t.exit_reason or ""),
               lambda t: t.status == "closed", lambda t: True):
        found = next((t for t in opened if ok(t)), None)
        if found is not None:
            return found
    return None


def _segments(points: list[tuple[float, Decimal | None]]) -> list[list[tuple[float, float]]]:
    """A level's line, broken where it does not exist (a trailing stop not yet armed)."""
    segs: list[list[tuple[float, float]]] = [[]]
    for t, v in points:
        if v is None:
            if segs[-1]:
                segs.append([])
        else:
            segs[-1].append((t, float(v)))
    return [s for s in segs if s]


def html(r: Result, settings: dict[str, str], signal: str | None = None) -> str:
    eq = [(r.start, 0.0), *((t, float(v)) for t, v in r.equity), (r.end, float(r.equity[-1][1]) if r.equity else 0.0)]
    parts = [_svg([("realized net PnL", "#1f6feb", eq, True)], "Equity (realized, after fees)")]
    chosen = pick(r, signal)
    if chosen is not None:
        pid, entry_ts, entry_price = chosen.position_id, chosen.entry_ts, chosen.entry_price
        assert pid is not None and entry_ts is not None and entry_price is not None, "pick() picks opened ones"
        lv = r.levels[pid]
        series = [("price", "#444", [(t, float(p)) for t, p, _s, _l in lv], False)]
        series += [("stop-loss", "#d73a49", seg, True) for seg in _segments([(t, s) for t, _p, s, _l in lv])]
        series += [("trailing stop", "#2da44e", seg, True) for seg in _segments([(t, tl) for t, _p, _s, tl in lv])]
        title = (f"{chosen.symbol} {chosen.side} (signal {chosen.signal_id}): entry {chosen.entry_price}, "
                 f"exit {chosen.exit_price or '-'} — {chosen.exit_reason or chosen.status}")
        marks = [(f"entry {entry_price}", entry_ts, float(entry_price))]
        if chosen.exit_ts is not None and chosen.exit_price is not None:
            marks.append((f"exit {chosen.exit_price}", chosen.exit_ts, float(chosen.exit_price)))
        parts.append(_svg(series, title, marks))
    summary = escape(render_totals(totals(r), settings))
    return ("<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>wave-trader backtest</title></head>"
            "<body style=\"font-family: sans-serif\">\n<h2>wave-trader backtest</h2>\n"
            f"<pre>{summary}</pre>\n" + "\n".join(parts) + "\n</body></html>\n")
