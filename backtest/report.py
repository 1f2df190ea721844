"""What a backtest made: one row per signal, the totals, as a table or as JSON.

Totals: net PnL (realized, after fees), unrealized PnL of positions still open when the data
ends, win rate (closed trades with positive net PnL), max drawdown (largest fall of realized
equity from a previous peak), exposure (share of the time from the first wave to the end of
the data during which at least one position was open) and the average time in a trade.
PnL is in each symbol's quote currency, added as numbers: use data of one quote currency.
"""
from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

from backtest.trades import Result, Trade

ZERO = Decimal(0)
CENT = Decimal("0.0001")


def _settled(amount: Decimal | None) -> Decimal:
    """A settled trade's PnL or fees (settle() sets them all)."""
    assert amount is not None, "a closed or marked trade without its PnL"
    return amount


def totals(r: Result) -> dict:
    closed = [t for t in r.trades if t.status == "closed"]
    still = [t for t in r.trades if t.status == "open" and t.net is not None]
    wins = [t for t in closed if _settled(t.net) > 0]
    peak = dd = ZERO
    for _t, eq in r.equity:
        peak = max(peak, eq)
        dd = max(dd, peak - eq)
    spans = sorted((t.entry_ts, t.exit_ts if t.exit_ts is not None else r.end)
                   for t in r.trades if t.entry_ts is not None)
    held, cur_a = 0.0, 0.0
    cur_b: float | None = None
    for a, b in spans:
        if cur_b is None or a > cur_b:
            if cur_b is not None:
                held += cur_b - cur_a
            cur_a, cur_b = a, b
        else:
            cur_b = max(cur_b, b)
    if cur_b is not None:
        held += cur_b - cur_a
    span = max(r.end - r.start, 1e-9)
    durations = [t.duration_s for t in closed if t.duration_s is not None]
    by_status: dict[str, int] = {}
    for t in r.trades:
        by_status[t.status] = by_status.get(t.status, 0) + 1
    return {
        "signals": len(r.trades),
        "by_status": by_status,
        "trades": len(closed),
        "open_at_end": len(still),
        "net_pnl": sum((_settled(t.net) for t in closed), ZERO),
        "gross_pnl": sum((_settled(t.pnl) for t in closed), ZERO),
        "fees": sum((_settled(t.fees) for t in closed), ZERO) + sum((_settled(t.fees) for t in still), ZERO),
        "unrealized_pnl": sum((_settled(t.net) for t in still), ZERO),
        "win_rate": round(len(wins) / len(closed), 4) if closed else None,
        "max_drawdown": dd,
        "exposure": round(min(held / span, 1.0), 4),
        "avg_time_in_trade_s": round(sum(durations) / len(durations), 1) if durations else None,
        "candles": r.candles,
        "seconds": round(r.seconds, 3),
        "candles_per_s": round(r.candles / r.seconds) if r.seconds > 0 else None,
    }


def trade_dict(t: Trade) -> dict:
    return {"line": t.line, "wave": t.wave_id, "signal": t.signal_id, "symbol": t.symbol, "side": t.side,
            "rank": t.rank, "status": t.status, "outcome": t.outcome, "reason": t.reason,
            "entry_ts": t.entry_ts, "entry": t.entry_price, "qty": t.qty, "exit_ts": t.exit_ts,
            "exit": t.exit_price, "exit_reason": t.exit_reason, "pnl": t.pnl, "fees": t.fees,
            "net": t.net, "duration_s": t.duration_s}


def as_dict(r: Result, settings: dict[str, str]) -> dict:
    return {"settings": settings, "totals": totals(r), "signals": [trade_dict(t) for t in r.trades],
            "start": r.start, "end": r.end}


def when(ts: float | None) -> str:
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M")


def _d(v: Decimal | None, q: Decimal = CENT) -> str:
    return "" if v is None else str(v.quantize(q) if abs(v) >= q or v == 0 else v.normalize())


def _p(v: Decimal | None) -> str:
    return "" if v is None else str(v)


def _dur(s: float | None) -> str:
    if s is None:
        return ""
    h, rem = divmod(int(s), 3600)
    return f"{h}h{rem // 60:02d}m" if h < 48 else f"{h / 24:.1f}d"


def render(r: Result, settings: dict[str, str]) -> str:
    from tabulate import tabulate

    rows = [[t.line, t.signal_id, t.symbol, t.side, t.status, when(t.entry_ts), _p(t.entry_price),
             when(t.exit_ts), _p(t.exit_price), t.exit_reason or t.reason or "",
             _d(t.pnl), _d(t.fees), _d(t.net), _dur(t.duration_s)] for t in r.trades]
    table = tabulate(rows, headers=["line", "signal", "symbol", "side", "status", "entry at", "entry",
                                    "exit at", "exit", "reason", "pnl", "fees", "net", "held"],
                     disable_numparse=True)
    return table + "\n\n" + render_totals(totals(r), settings)


def render_totals(tot: dict, settings: dict[str, str]) -> str:
    wr = "" if tot["win_rate"] is None else f"{tot['win_rate']:.0%}"
    lines = [f"net PnL {_d(tot['net_pnl'])} (gross {_d(tot['gross_pnl'])}, fees {_d(tot['fees'])}); "
             f"unrealized {_d(tot['unrealized_pnl'])} on {tot['open_at_end']} still open",
             f"{tot['trades']} trades, win rate {wr}, max drawdown {_d(tot['max_drawdown'])}, "
             f"exposure {tot['exposure']:.0%}, average time in trade {_dur(tot['avg_time_in_trade_s'])}",
             f"{tot['candles']} candles in {tot['seconds']:.2f}s"]
    if settings:
        lines.append("settings: " + ", ".join(f"{k}={v}" for k, v in settings.items()))
    return "\n".join(lines)


def render_sweep(results: list[tuple[dict[str, str], Result]]) -> str:
    from tabulate import tabulate

    keys = list(results[0][0]) if results else []
    rows = []
    for settings, r in results:
        t = totals(r)
        rows.append([*settings.values(), t["trades"], _d(t["net_pnl"]), "" if t["win_rate"] is None
                     else f"{t['win_rate']:.0%}", _d(t["max_drawdown"]), f"{t['exposure']:.0%}",
                     _dur(t["avg_time_in_trade_s"]), _d(t["unrealized_pnl"])])
    return tabulate(rows, headers=[*keys, "trades", "net PnL", "win rate", "max drawdown", "exposure",
                                   "avg held", "unrealized"], disable_numparse=True)
