"""Replies as text for a person: short tables, the important thing first."""
from __future__ import annotations

import csv
import io
import json
import shutil
import time
from collections.abc import Callable
from datetime import datetime, timezone

from pydantic import BaseModel
from tabulate import tabulate

from control import replies as r
from core.phases import CLOSED_TRADE


def as_json(data: BaseModel) -> str:
    return json.dumps(json.loads(data.model_dump_json()), indent=2, sort_keys=True)


def _ago(ts: float | None) -> str:
    if ts is None:
        return "-"
    return f"{_dur(time.time() - ts)} ago"


def _dur(s: float | None) -> str:
    if s is None:
        return "-"
    if s < 120:
        return f"{s:.1f}s"
    if s < 7200:
        return f"{s / 60:.0f}m"
    return f"{s / 3600:.1f}h"


def _clock(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%H:%M:%S")


def _v(x) -> str:
    return "-" if x is None else str(x)


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}ms"


def _usdt(x) -> str:
    return "-" if x is None else f"{x:+.2f}"


def _pct(x) -> str:
    return "-" if x is None else f"{x:+.2f}%"


def width() -> int:
    return shutil.get_terminal_size((100, 24)).columns


def fit(rows: list[list], headers: list[str], optional: list[str], wide: bool) -> str:
    """A table that fits the terminal: optional columns go, in the order listed, until it
    does (all of them stay with `wide`)."""
    cols = list(headers)
    while True:
        keep = [headers.index(c) for c in cols]
        out = tabulate([[row[i] for i in keep] for row in rows], headers=cols, tablefmt="simple",
                       disable_numparse=True)
        drop = [c for c in optional if c in cols]
        if wide or not drop or max(map(len, out.splitlines()), default=0) <= width():
            return out
        cols.remove(drop[0])


def money(m: r.MoneyOut | None) -> str:
    if m is None:
        return "money: not available (database unreachable)"
    bal = ("balance -, equity - (the venue has not answered)" if m.balance is None else
           f"balance {m.balance:.2f}, equity {m.equity:.2f} USDT"
           + (f" (venue answer {_dur(m.balance_age_s)} old)" if m.balance_age_s and m.balance_age_s > 30 else ""))
    return (f"money: realized today {_usdt(m.realized_today)} USDT ({m.trades_today} trades, fees "
            f"{m.fees_today:.2f}; day from 00:00 {m.timezone}), all time {_usdt(m.realized)} "
            f"({m.trades} trades, fees {m.fees:.2f}) | unrealized {_usdt(m.unrealized)} | {bal}")


def limits(x: r.LimitsOut | None) -> list[str]:
    if x is None:
        return []
    lines = []
    if x.halted:
        lines.append(f"HALTED: {x.reason}")
    elif x.daily_loss_limit_usdt:
        lines.append(f"daily loss limit: {x.daily_loss_limit_usdt} USDT"
                     + (" (lifted by the operator for today)" if x.lifted_today else ""))
    if x.cooldowns:
        lines.append("cooling down after a stop-out: " + ", ".join(f"{s} {_dur(v)}" for s, v in x.cooldowns.items()))
    return lines


def health(h: r.HealthReply) -> str:
    lines = [f"health: {h.status.upper()}" + (" (PAUSED: not taking new waves)" if h.paused else "")
             + (" (HALTED by the daily loss limit: not taking new waves)" if h.loss_limit_hit else "")]
    lines += [f"  - {x}" for x in h.reasons]
    lines.append(f"coverage: {h.trailing}/{h.open} trailing ({h.coverage:.0%}), {h.protected}/{h.open} with a stop-loss")
    for u in h.unprotected:
        lines.append(f"  UNPROTECTED {u.symbol} ({u.id}) for {_dur(u.seconds)}")
    lines.append(f"supervisor: {h.restarts} restarts ({h.recent_restarts} recent), {h.escalations} escalations, "
                 f"{h.abandoned_alive} abandoned threads alive")
    lines.append(f"venue: {h.venue_calls} calls, {h.venue_errors} network errors, p50 {_ms(h.venue_p50_ms)}, "
                 f"p99 {_ms(h.venue_p99_ms)} | db: {'ok' if h.db_ok else 'FAILING'}, p50 {_ms(h.db_p50_ms)}, "
                 f"p99 {_ms(h.db_p99_ms)}")
    return "\n".join(lines)


def status(s: r.StatusReply) -> str:
    d = s.defaults
    return "\n".join([
        f"wave-trader {s.version} pid {s.pid}, up {_dur(s.uptime_s)}: "
        + (f"HALTED: {s.health.halted}" if s.health.halted
           else f"RECOVERING: {s.health.recovering}; not taking waves yet" if s.health.recovering
           else s.waves if s.waves != "taking waves"
           else "HALTED by the daily loss limit (not taking new waves)" if s.limits and s.limits.halted
           else s.waves),
        f"venue: {s.venue}, {s.markets} markets, last tick {_dur(s.last_tick_age_s) + ' ago' if s.last_tick_age_s is not None else 'none yet'}"
        + (f", clock offset {s.venue_clock_offset_ms} ms" if s.venue_clock_offset_ms is not None else ""),
        f"database: {s.database} " + (f"(ping {s.db_ping_ms:.1f}ms)" if s.db_error is None else f"(UNREACHABLE: {s.db_error})"),
        f"positions: {s.children} supervised | waves: {s.waves_completed} completed, {s.waves_in_progress} in progress, "
        f"{s.waves_rejected} rejected",
        f"defaults: stop-loss {d.get('stop-loss')}%, activation {d.get('activation')}%, callback {d.get('callback')}%",
        money(s.money),
        *limits(s.limits),
        f"metrics: {s.metrics_url + '/metrics' if s.metrics_url else 'off'} | socket: {s.socket}",
        health(s.health),
    ])


def positions(p: r.PositionsReply, wide: bool = False) -> str:
    if not p.positions:
        return "no open positions"
    rows = [[x.symbol + ("" if x.live else " *") + (" !" if x.needs_attention else ""), x.side, x.phase,
             _v(x.entry), _v(x.last), _v(x.stop), _usdt(x.pnl), _pct(x.pnl_pct), _v(x.qty_usdt), x.trailing,
             x.epoch, x.id] for x in p.positions]
    out = fit(rows, ["symbol", "side", "phase", "entry", "last", "stop", "P&L USDT", "P&L %", "size USDT",
                     "trailing", "epoch", "id"], ["size USDT", "epoch", "id", "trailing"], wide)
    out += f"\nunrealized total: {_usdt(p.unrealized)} USDT over {len(p.positions)} positions"
    notes = []
    if any(not x.live for x in p.positions):
        notes.append("* last persisted state: the actor did not answer in time")
    if any(x.needs_attention for x in p.positions):
        notes.append("! needs an operator (escalated)")
    return out + ("\n" + "\n".join(notes) if notes else "")


def position(d: r.PositionDetailReply) -> str:
    x = d.position
    lines = [f"{x.symbol} {x.side} {x.phase} (id {x.id}, epoch {x.epoch}{'' if x.live else ', from database'})",
             f"  qty {_v(x.qty)} ({_v(x.qty_usdt)} USDT)  entry {_v(x.entry)}  last {_v(x.last)}  "
             f"P&L {_usdt(x.pnl)} USDT ({_pct(x.pnl_pct)}){' net of fees' if x.phase in CLOSED_TRADE else ''}",
             f"  stop-loss {_v(x.stop)} ({x.stop_loss_pct}%)  cid {_v(d.stop_cid)}",
             f"  trailing {x.trailing}  activation {x.activation_pct}%  cid {_v(d.trailing_cid)}",
             f"  signal {d.signal_id} in wave {d.wave_id}, opened {_ago(d.opened_ts)}"
             + (f", closed {_ago(d.closed_ts)} at {_v(d.exit_price)}: {d.close_reason}" if d.closed_ts else "")]
    if d.attention_reason:
        lines.append(f"  NEEDS ATTENTION: {d.attention_reason}")
    if d.orders:
        lines.append("orders:")
        lines.append(tabulate([[o.cid, o.leg, o.side, o.qty, o.status, _v(o.stop_price or o.activation),
                                _v(o.avg_price), _fee(o.fee), o.reason or ""] for o in d.orders],
                              headers=["cid", "leg", "side", "qty", "status", "stop/act", "avg", "fee", "reason"],
                              tablefmt="simple", disable_numparse=True))
    if d.venue_error:
        lines.append(f"venue: could not list orders: {d.venue_error}")
    elif d.venue_orders is not None:
        lines.append("resting at the venue: " + (", ".join(f"{o.cid} ({o.leg}, {_v(o.stop_price)})"
                                                           for o in d.venue_orders) or "nothing"))
    if d.events:
        lines.append("recent events:")
        lines += [event_line(e) for e in d.events]
    return "\n".join(lines)


def event_line(e: r.EventOut) -> str:
    data = ", ".join(f"{k}={v}" for k, v in e.data.items())
    who = (f"{e.symbol} ({e.position_id})" if e.symbol else e.position_id) or e.wave_id or "service"
    return f"  #{e.id} {_clock(e.ts)} {e.kind:<22} {who} {data}"


def events(e: r.EventsReply) -> str:
    return "\n".join(event_line(x) for x in e.events) if e.events else "no events"


def waves(w: r.WavesReply, wide: bool = False) -> str:
    if not w.waves:
        return "no waves yet"
    return fit([[x.id, x.status, _ago(x.received_ts), x.n_signals,
                 f"{_usdt(x.pnl)} ({x.closed} closed)" if x.closed else "-",
                 ", ".join(f"{v} {k}" for k, v in sorted(x.outcomes.items())) or (x.reason or "")]
                for x in w.waves], ["wave", "status", "received", "signals", "realized USDT", "outcomes"],
               ["received", "status"], wide)


TRADE_COLUMNS = ["closed", "symbol", "side", "qty", "entry", "exit", "fees", "net USDT", "net %", "gross",
                 "duration", "reason", "wave", "id"]


def trades(t: r.TradesReply, wide: bool = False) -> str:
    if not t.trades:
        return "no closed trades"
    rows = [[_stamp(x.closed_ts), x.symbol, x.side, x.qty, x.entry, _v(x.exit), _trade_fees(x.fees), _usdt(x.net),
             _pct(x.pct), _usdt(x.gross), _dur(x.duration_s), x.reason or "", x.wave_id, x.id] for x in t.trades]
    out = fit(rows, TRADE_COLUMNS, ["qty", "gross", "wave", "id", "reason"], wide)
    unknown = sum(1 for x in t.trades if x.fees is None)
    return out + (f"\ntotal: {t.count} trades, {t.wins} won, net {_usdt(t.net)} USDT "
                  f"(gross {_usdt(t.gross)}, fees {t.fees:.4f}"
                  f"{f'; {unknown} trades with fees unknown, net before them' if unknown else ''})")


def trades_csv(t: r.TradesReply) -> str:
    """One row per closed position, exact decimals, UTC ISO times: for a spreadsheet."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["id", "symbol", "side", "qty", "entry", "exit", "gross", "fees", "net", "pct", "reason",
                "wave_id", "opened", "closed", "duration_s"])
    for x in t.trades:
        w.writerow([x.id, x.symbol, x.side, x.qty, x.entry, _blank(x.exit), _blank(x.gross), _blank(x.fees),
                    _blank(x.net), _blank(x.pct), x.reason or "", x.wave_id, _iso(x.opened_ts), _iso(x.closed_ts),
                    _blank(x.duration_s)])
    return buf.getvalue().rstrip("\n")


def _fee(x) -> str:
    return "-" if x is None else f"{x:.4f}"


def _trade_fees(x) -> str:
    return "unknown" if x is None else f"{x:.4f}"  # a closed trade whose venue replies carried no fee


def _blank(x) -> str:
    return "" if x is None else str(x)


def _iso(ts: float | None) -> str:
    return "" if ts is None else datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="seconds")


def _stamp(ts: float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%m-%d %H:%M")


def wave(w: r.WaveReply, wide: bool = False) -> str:
    x = w.wave
    head = (f"wave {x.id}: {x.status}, {x.n_signals} signals, received {_ago(x.received_ts)} from {x.source}"
            + (f" — {x.reason}" if x.reason else "")
            + (f"; realized {_usdt(x.pnl)} USDT over {x.closed} closed" if x.closed else ""))
    rows = [[s.rank, s.symbol, s.side, _v(s.score), s.outcome or "pending", _usdt(s.pnl), s.reason or "",
             s.position_id or ""] for s in w.signals]
    return head + "\n" + fit(rows, ["rank", "symbol", "side", "score", "outcome", "net USDT", "reason", "position"],
                             ["position", "score", "rank"], wide)


def supervisor(s: r.SupervisorReply) -> str:
    rows = [[c.key, c.symbol, c.epoch, c.phase, c.op or "", _dur(c.op_left_s) if c.op_left_s is not None else "",
             _dur(c.unprotected_s) if c.unprotected_s is not None else ""] for c in s.children]
    lines = [tabulate(rows, headers=["child", "symbol", "epoch", "phase", "op", "op_left", "unprotected"],
                      tablefmt="simple", disable_numparse=True),
             f"restarts {s.restarts}, escalations {s.escalations}, fenced writes {s.fenced_writes}, "
             f"slowest re-protection {_dur(s.reprotect_max_s)}",
             "abandoned threads alive: " + (", ".join(s.abandoned) or "none")]
    lines += [f"ESCALATED {k}: {v}" for k, v in s.escalated.items()]
    return "\n".join(lines)


def action(a: r.ActionReply) -> str:
    lines = [a.message]
    if len(a.targets) > 1 or (a.targets and a.targets[0].result not in a.message):
        lines += [f"  {t.symbol} ({t.id}): {t.result}" for t in a.targets]
    return "\n".join(lines)


RENDER: dict[type[BaseModel], Callable[..., str]] = {  # those in WIDE also take `wide`
    r.StatusReply: status, r.PositionsReply: positions, r.PositionDetailReply: position,
    r.WavesReply: waves, r.WaveReply: wave, r.HealthReply: health, r.ActionReply: action,
    r.SupervisorReply: supervisor, r.EventsReply: events, r.TradesReply: trades,
}
WIDE = {positions, trades, waves, wave}  # tables with columns to spare on a narrow terminal


def render(data: BaseModel, *, wide: bool = False) -> str:
    fn = RENDER[type(data)]
    return fn(data, wide) if fn in WIDE else fn(data)
