"""Each control command as a service operation.

Operator requests to a position are delivered to that position's own actor as
`Control(event)` — the actor steps its pure state machine and persists the step, exactly as
for a price tick — so the control plane never writes a position itself and never races
its owner. Every wait on an actor has a deadline; a request that is not confirmed in time
is reported as requested, not as done.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from decimal import Decimal
from importlib import metadata
from typing import Any, Protocol, cast

import pykka
from pydantic import BaseModel
from sqlalchemy import text

from actors.messages import Control
from control import protocol as p
from control import replies as r
from control.ports import Operated
from control.protocol import PARAMS
from control.queries import Queries, live_states
from control.settings import InvalidSetting, SettingsStore, validate
from core import trailing as tr
from core.phases import CLOSED_TRADE
from core.position_types import CloseRequested, Params, SetParams
from persistence.db import masked_url

MOVED = "moved"

try:
    VERSION = metadata.version("wave-trader")
except metadata.PackageNotFoundError:  # running from a checkout that was never installed
    VERSION = "unknown"


masked_db_url = masked_url


def defaults_of(params: Params) -> dict[str, Decimal]:
    return {name: getattr(params, field) for name, (field, _) in PARAMS.items()}


class HealthReport(Protocol):
    def report(self) -> r.HealthReply: ...


class ControlHandler:
    def __init__(self, svc: Operated, settings: SettingsStore, health: HealthReport, *, timeout_s: float,
                 socket_path: str, metrics_url: Callable[[], str | None] = lambda: None) -> None:
        self.svc, self.settings, self.health = svc, settings, health
        self.timeout_s, self.socket_path, self.metrics_url = timeout_s, socket_path, metrics_url
        self.q = Queries(svc, timeout_s)
        self.started = time.time()
        self._commands = self._command_table()

    def __call__(self, cmd: str, args: Any) -> BaseModel:
        handler = self._commands.get(cmd)
        if handler is None:
            raise p.ProtocolError(p.UNKNOWN_COMMAND, f"no handler for {cmd}")
        return handler(args)

    def _command_table(self) -> dict[str, Callable[[Any], BaseModel]]:
        """Each protocol command and what answers it; a handler's attributes are looked up at
        call time, so a part swapped after construction is the one that answers."""
        return {
            "status": lambda _: self.status(),
            "positions": lambda _: self.q.positions(),
            "position": lambda args: self.q.position(args),
            "waves": lambda args: self.q.waves(args),
            "wave": lambda args: self.q.wave(args),
            "health": lambda _: self.health.report(),
            "pause": lambda _: self.pause(True),
            "resume": lambda _: self.pause(False),
            "close": lambda args: self.close(args),
            "close-all": lambda args: self.close_all(args),
            "set": lambda args: self.set(args),
            "restart": lambda args: self.restart(args),
            "supervisor": lambda _: self.supervisor(),
            "events": lambda args: self.q.events(args),
            "trades": lambda args: self.q.trades(args),
        }

    # ---- status ------------------------------------------------------------------------

    def status(self) -> r.StatusReply:
        svc = self.svc
        ping_ms, db_error = None, None
        t0 = time.perf_counter()
        try:
            with svc.db.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            ping_ms = round((time.perf_counter() - t0) * 1000, 3)
        except Exception as e:
            db_error = type(e).__name__
        md = svc.market_data
        tick_age = (time.perf_counter() - md.last_tick_at) if md.last_tick_at else None
        in_progress = len(svc.stats.wave_ids) - len(svc.stats.waves)
        return r.StatusReply(
            version=VERSION, pid=os.getpid(), uptime_s=round(time.time() - self.started, 1),
            paused=bool(getattr(svc, "paused", False)), venue=svc.cfg.exchange.name,
            venue_clock_offset_ms=getattr(svc.gateway, "clock_offset_ms", None),
            markets=len(svc.markets), last_tick_age_s=None if tick_age is None else round(tick_age, 3),
            database=masked_db_url(cast(str, svc.cfg.database.url)), db_ping_ms=ping_ms, db_error=db_error,
            children=len(self.q.position_handles()), waves_completed=len(svc.stats.waves),
            waves_rejected=svc.stats.waves_rejected, waves_in_progress=max(0, in_progress),
            defaults=defaults_of(svc.defaults), metrics_url=self.metrics_url(), socket=self.socket_path,
            health=self.health.report(), waves=svc.waves_state(), money=self.money(),
            limits=r.LimitsOut(**svc.guard.status()) if getattr(svc, "guard", None) else None)

    def money(self) -> r.MoneyOut | None:
        ledger = getattr(self.svc, "money", None)
        if ledger is None:
            return None
        try:
            # a venue that is slow to answer shows its last balance, not a slow status
            m = ledger.snapshot(timeout_s=min(2.0, self.timeout_s, self.svc.cfg.deadlines.venue_call_s))
        except Exception:  # the database is down: status still answers, without money
            return None
        b = m.balance
        return r.MoneyOut(realized=m.realized.net, realized_today=m.today.net, fees=m.realized.fees,
                          fees_today=m.today.fees, trades=m.realized.trades, trades_today=m.today.trades,
                          unrealized=m.unrealized.quantize(Decimal("0.0001")),
                          balance=b.wallet if b else None, equity=b.equity if b else None,
                          balance_age_s=m.balance_age_s, timezone=ledger.timezone, day_start=m.day_start)

    def supervisor(self) -> r.SupervisorReply:
        sup, now = self.svc.supervisor, time.monotonic()
        kids = [r.ChildOut(key=k, symbol=h.symbol, epoch=h.epoch,
                           phase=getattr(h, "phase", None) or ("running" if k == "coordinator" else ""),
                           op=h.op_name, op_left_s=None if h.op_deadline is None else round(h.op_deadline - now, 3),
                           unprotected_s=None if (u := getattr(h, "unprotected_since", None)) is None else round(now - u, 3))
                for k, h in sorted(list(sup.children.items()))]
        return r.SupervisorReply(
            children=kids, restarts=sup.stats.restarts, escalations=sup.stats.escalations,
            fenced_writes=sup.stats.fenced_writes,
            abandoned=[f"{k} epoch {e}" for k, e, t in list(sup.abandoned) if t.is_alive()],
            escalated=dict(sup.escalated),
            reprotect_max_s=round(max(sup.stats.reprotect_s), 3) if sup.stats.reprotect_s else None)

    # ---- actions -----------------------------------------------------------------------

    def pause(self, paused: bool) -> r.ActionReply:
        self.settings.record_paused(paused, "operator")
        self.svc.pause(paused)
        guard = getattr(self.svc, "guard", None)
        lifted = not paused and guard is not None and guard.lift("operator")
        msg = ("paused: no new waves are taken; open positions stay protected" if paused
               else "resumed: taking new waves" + ("; the daily loss limit is lifted for the rest of today"
                                                   if lifted else ""))
        return r.ActionReply(message=msg, paused=paused)

    def _live(self, target: str):
        """The live actor handle of an open position, by id or symbol."""
        handles = self.q.position_handles()
        by_id = {h.key: h for h in handles}
        if target in by_id:
            return by_id[target]
        sym = self.q.symbol(target)
        for h in handles:
            if sym is not None and h.symbol == sym:
                return h
        raise p.ProtocolError(p.NOT_FOUND, f"no open position for {target!r}"
                              + ("" if sym or target in by_id else " (not a known symbol or position id)"))

    def _tell(self, h, event) -> None:
        if h.retired:
            raise p.ProtocolError(p.UNAVAILABLE, f"{h.symbol} is being restarted by the supervisor; try again")
        try:
            h.ref.tell(Control(event))
        except pykka.ActorDeadError:
            raise p.ProtocolError(p.UNAVAILABLE, f"the actor of {h.symbol} has stopped; try again") from None

    def _confirm(self, handles: list, what) -> list[r.TargetResult]:
        """Ask each actor for its state (queued behind the request) and describe the result."""
        states = live_states(handles, self.timeout_s)
        out = []
        for h in handles:
            s = states.get(h.key)
            if s is None:
                row = self.q.find_row(h.key)
                phase = row.phase if row else None
                result = "requested; not confirmed yet" if not (row and row.phase in CLOSED_TRADE) \
                    else f"closed at {row.exit_price}"
                out.append(r.TargetResult(id=h.key, symbol=h.symbol, result=result, phase=phase))
            else:
                out.append(r.TargetResult(id=h.key, symbol=h.symbol, result=what(s), phase=s.phase.value))
        return out

    @staticmethod
    def _close_result(s) -> str:
        if s.phase.final:
            return f"closed at {s.exit_price}; resting stops cancelled"
        return f"closing ({s.phase.value})"

    def close(self, args: p.CloseArgs) -> r.ActionReply:
        h = self._live(args.target)
        self._tell(h, CloseRequested("operator close"))
        targets = self._confirm([h], self._close_result)
        return r.ActionReply(message=f"{h.symbol}: {targets[0].result}", targets=targets)

    def close_all(self, args: p.CloseAllArgs) -> r.ActionReply:
        handles = [h for h in self.q.position_handles() if not h.retired]
        if not args.confirm:
            raise p.ProtocolError(p.CONFLICT, f"close-all would close {len(handles)} positions; "
                                              "send confirm=true (bin/trader close-all --yes)")
        for h in handles:
            self._tell(h, CloseRequested("operator close-all"))
        targets = self._confirm(handles, self._close_result)
        closed = sum(1 for t in targets if t.result.startswith("closed"))
        hint = "" if getattr(self.svc, "paused", False) else "; still taking new waves (pause to stop)"
        return r.ActionReply(message=f"close-all: {closed} of {len(handles)} closed{hint}", targets=targets)

    def set(self, args: p.SetArgs) -> r.ActionReply:
        field = PARAMS[args.param][0]
        change: dict[str, Any] = {field: args.value}
        event = SetParams(**change)
        value = self._valid(args.param, args.value, self.svc.defaults)  # limits are per field
        if args.symbol is not None:
            h = self._live(args.symbol)
            before = live_states([h], self.timeout_s)
            self._tell(h, event)
            targets = self._confirm([h], lambda s: self._venue_effect(args.param, value, before.get(s.id), s))
            return r.ActionReply(message=f"{h.symbol}: {args.param} set to {value}%; {targets[0].result}",
                                 targets=targets)
        self.settings.record_defaults({args.param: value}, "operator")
        # the owner tells the supervisor and the coordinator (queued: a busy one gets it when free)
        new = self.svc.set_defaults({args.param: value})
        handles = [h for h in self.q.position_handles() if not h.retired]
        before = live_states(handles, self.timeout_s)
        for h in handles:
            self._tell(h, event)
        targets = self._confirm(handles, lambda s: self._venue_effect(args.param, value, before.get(s.id), s))
        moved = sum(1 for t in targets if t.result.startswith(MOVED))
        return r.ActionReply(message=f"default {args.param} set to {value}% for new positions; at the venue "
                                     f"{moved} of {len(handles)} open positions changed", targets=targets,
                             defaults=defaults_of(new))

    def _venue_effect(self, param: str, value: Decimal, old, s) -> str:
        """What the change did at the venue for one position, and why not when it did nothing
        (a stop only ever tightens; a trailing stop the service emulates has no venue order)."""
        if old is None or s.entry_price is None:
            return f"{param} {value}% recorded; nothing rests at the venue yet ({s.phase.value})"
        if param == "stop-loss":
            if s.stop_price != old.stop_price:
                return f"{MOVED}: stop-loss {old.stop_price} -> {s.stop_price} at the venue"
            level = tr.initial_stop(s.entry_price, s.side, value, self.svc.markets[s.symbol])
            why = ("a stop only tightens" if not tr.is_tighter(level, s.stop_price, s.side)
                   else "the position is busy; reconciliation applies it")
            return f"unchanged at the venue: stop-loss stays at {s.stop_price} ({value}% from entry is {level}; {why})"
        if s.params.trailing_mode != "native":
            return f"unchanged at the venue: the service trails this position; {param} {value}% applies from the next move"
        if s.trailing_cid != old.trailing_cid:
            return f"{MOVED}: trailing stop re-placed at the venue ({s.trailing_cid}, callback {s.params.callback_pct}%)"
        if old.trailing is not None and old.trailing.activated and param == "activation":
            return "unchanged at the venue: the trailing stop is already active, activation no longer applies"
        return f"unchanged at the venue: trailing stop {s.trailing_cid} still rests ({s.phase.value})"

    @staticmethod
    def _valid(param: str, value: Decimal, current) -> Decimal:
        try:
            return validate(param, value, current)
        except InvalidSetting as e:
            raise p.ProtocolError(p.BAD_ARGUMENTS, str(e)) from None

    def restart(self, args: p.RestartArgs) -> r.ActionReply:
        h = self._live(args.target)
        if h.retired:
            raise p.ProtocolError(p.CONFLICT, f"{h.symbol} is already being restarted")
        sup, old = self.svc.supervisor, h.epoch
        sup.child_failed(h, "operator restart")
        end = time.monotonic() + self.timeout_s
        new = None
        while time.monotonic() < end:
            cur = sup.children.get(h.key)
            if cur is not None and cur is not h and cur.ref is not None:
                new = cur
                break
            if h.key in sup.escalated:
                break
            time.sleep(0.02)
        if h.key in sup.escalated:
            result = f"escalated: {sup.escalated[h.key]}"
        elif new is None:
            result = "restart requested; the replacement is not up yet"
        else:
            result = f"restarted: epoch {old} -> {new.epoch}, reconciling with the venue"
        return r.ActionReply(message=f"{h.symbol}: {result}",
                             targets=[r.TargetResult(id=h.key, symbol=h.symbol, result=result,
                                                     phase=getattr(new, "phase", None) if new else None)])
