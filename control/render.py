"""Replies as text for a person: short tables, the important thing first."""
from __future__ import annotations

import json
import time
from datetime import datetime, timezone

from pydantic import BaseModel
from tabulate import tabulate

from control import replies as r


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


def health(h: r.HealthReply) -> str:
    lines = [f"health: {h.status.upper()}" + (" (PAUSED: not taking new waves)" if h.paused else "")]
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
        + s.waves,
        f"venue: {s.venue}, {s.markets} markets, last tick {_dur(s.last_tick_age_s) + ' ago' if s.last_tick_age_s is not None else 'none yet'}",
        f"database: {s.database} " + (f"(ping {s.db_ping_ms:.1f}ms)" if s.db_error is None else f"(UNREACHABLE: {s.db_error})"),
        f"positions: {s.children} supervised | waves: {s.waves_completed} completed, {s.waves_in_progress} in progress, "
        f"{s.waves_rejected} rejected",
        f"defaults: stop-loss {d.get('stop-loss')}%, activation {d.get('activation')}%, callback {d.get('callback')}%",
        f"metrics: {s.metrics_url + '/metrics' if s.metrics_url else 'off'} | socket: {s.socket}",
        health(s.health),
    ])


def positions(p: r.PositionsReply) -> str:
    if not p.positions:
        return "no open positions"
    rows = [[x.symbol + ("" if x.live else " *") + (" !" if x.needs_attention else ""), x.side, x.phase,
             _v(x.entry), _v(x.last), _v(x.stop), x.trailing, x.epoch, _v(x.pnl), x.id] for x in p.positions]
    out = tabulate(rows, headers=["symbol", "side", "phase", "entry", "last", "stop", "trailing", "epoch",
                                  "P&L", "id"], tablefmt="simple", disable_numparse=True)
    notes = []
    if any(not x.live for x in p.positions):
        notes.append("* last persisted state: the actor did not answer in time")
    if any(x.needs_attention for x in p.positions):
        notes.append("! needs an operator (escalated)")
    return out + ("\n" + "\n".join(notes) if notes else "")


def position(d: r.PositionDetailReply) -> str:
    x = d.position
    lines = [f"{x.symbol} {x.side} {x.phase} (id {x.id}, epoch {x.epoch}{'' if x.live else ', from database'})",
             f"  qty {_v(x.qty)}  entry {_v(x.entry)}  last {_v(x.last)}  P&L {_v(x.pnl)}",
             f"  stop-loss {_v(x.stop)} ({x.stop_loss_pct}%)  cid {_v(d.stop_cid)}",
             f"  trailing {x.trailing}  activation {x.activation_pct}%  cid {_v(d.trailing_cid)}",
             f"  signal {d.signal_id} in wave {d.wave_id}, opened {_ago(d.opened_ts)}"
             + (f", closed {_ago(d.closed_ts)} at {_v(d.exit_price)}: {d.close_reason}" if d.closed_ts else "")]
    if d.attention_reason:
        lines.append(f"  NEEDS ATTENTION: {d.attention_reason}")
    if d.orders:
        lines.append("orders:")
        lines.append(tabulate([[o.cid, o.leg, o.side, o.qty, o.status, _v(o.stop_price or o.activation),
                                _v(o.avg_price), o.reason or ""] for o in d.orders],
                              headers=["cid", "leg", "side", "qty", "status", "stop/act", "avg", "reason"],
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
    who = e.position_id or e.wave_id or "service"
    return f"  #{e.id} {_clock(e.ts)} {e.kind:<22} {who} {data}"


def events(e: r.EventsReply) -> str:
    return "\n".join(event_line(x) for x in e.events) if e.events else "no events"


def waves(w: r.WavesReply) -> str:
    if not w.waves:
        return "no waves yet"
    return tabulate([[x.id, x.status, _ago(x.received_ts), x.n_signals,
                      ", ".join(f"{v} {k}" for k, v in sorted(x.outcomes.items())) or (x.reason or "")]
                     for x in w.waves], headers=["wave", "status", "received", "signals", "outcomes"],
                    tablefmt="simple", disable_numparse=True)


def wave(w: r.WaveReply) -> str:
    x = w.wave
    head = (f"wave {x.id}: {x.status}, {x.n_signals} signals, received {_ago(x.received_ts)} from {x.source}"
            + (f" — {x.reason}" if x.reason else ""))
    rows = [[s.rank, s.symbol, s.side, _v(s.score), s.outcome or "pending", s.reason or "", s.position_id or ""]
            for s in w.signals]
    return head + "\n" + tabulate(rows, headers=["rank", "symbol", "side", "score", "outcome", "reason", "position"],
                                  tablefmt="simple", disable_numparse=True)


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


RENDER = {
    r.StatusReply: status, r.PositionsReply: positions, r.PositionDetailReply: position,
    r.WavesReply: waves, r.WaveReply: wave, r.HealthReply: health, r.ActionReply: action,
    r.SupervisorReply: supervisor, r.EventsReply: events,
}


def render(data: BaseModel) -> str:
    return RENDER[type(data)](data)
