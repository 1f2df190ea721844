"""The backtest: recorded waves against recorded candles, on a simulated clock.

Exits come from the state machine that trades live (`core.position_logic.step`) and the paper
matching engine (`exchange.paper.engine`); this module is only the shell an actor is live,
with wall time replaced by the path's own time, so nothing waits:

- a wave opens at its own `ts`, with the coordinator's admission rules (ranked, one position
  per symbol, `risk.max_positions_per_wave`, `risk.max_open_positions`, a failed entry's slot
  refilled from the wave's reserves); waves do not queue behind each other;
- an entry is sized at the engine's price at that moment (a fresh feed price, as live);
- every venue call takes `paper.latency_ms` of path time and the engine acts when it arrives
  (as the paper gateway does: the request travels, the venue acts, the answer is immediate);
  one position's calls run one after the other, as on its actor's thread;
- a triggered stop reaches its position when its current call is done (its mailbox); prices
  that arrive meanwhile coalesce to the latest, as the live tick slot does;
- fees (`backtest.fee_bps` of each fill's notional) are charged in the report; slippage is
  the engine's own (`paper.slippage_bps`).
"""
from __future__ import annotations

import heapq
import itertools
import time
from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal

from core.config import Config
from core.types import Side
from core.position_logic import step
from core.position_types import (
    Begin, Cancel, Event, FailureKind, Filled, LookedUp, Lookup, Outcome, Phase, Place, Placed,
    PlaceFailed, PositionState, Report, RetryDue, RetryLater, Tick, position_id_of,
)
from exchange.gateway import OrderNotFound, OrderRequest, OrderState, Rejected
from exchange.paper.candles import Series
from exchange.paper.engine import PaperEngine
from exchange.paper.prices import first_prices, play, points, recorded_markets
from exchange.paper.universe import paper_markets
from backtest.trades import BPS, Result, Trade, settle
from backtest.waves import Line
from service.app import position_params
from signals.wave import SignalIn


def _side(sig: SignalIn) -> Side:
    """A signal the wave accepted has its side (only rejected ones lack it)."""
    assert sig.side is not None, f"signal {sig.id} has no side"
    return sig.side


@dataclass
class _Position:
    state: PositionState
    trade: Trade
    wave: "_Wave"
    events: deque = field(default_factory=deque)
    cmds: deque = field(default_factory=deque)
    mailbox: deque = field(default_factory=deque)
    busy: bool = False
    tick: Decimal | None = None


@dataclass
class _Wave:
    target: int
    reserves: deque
    line: int
    wave_id: str
    opened: int = 0
    opening: int = 0


class Backtest:
    def __init__(self, cfg: Config, lines: list[Line], data: dict[str, Series], *,
                 record: bool = False) -> None:
        self.cfg = cfg
        self.lines = lines
        self.data = data
        self.record = record
        self.params = position_params(cfg)
        self.markets = recorded_markets(data, paper_markets(cfg.paper.extra_symbols),
                                        cfg.risk.position_notional_usdt)
        self.engine = PaperEngine(self.markets, first_prices(data), slippage_bps=cfg.paper.slippage_bps)
        self.engine.add_listener(self._on_order)
        self.latency = cfg.paper.latency_ms / 1000
        self.fee = cfg.backtest.fee_bps / BPS
        self.now = 0.0
        self._seq = itertools.count()
        self._timers: list = []  # (time, seq, fn)
        self._updates: list[OrderState] = []
        self._last: dict[str, Decimal] = {}
        self._stale: set[str] = set()  # symbols whose latest price the engine has not seen yet
        self.by_id: dict[str, _Position] = {}
        self.held: dict[str, _Position] = {}  # symbol → its position while not final
        self.waves: list[_Wave] = []
        self.trades: list[Trade] = []
        self.equity: list[tuple[float, Decimal]] = []
        self._realized = Decimal(0)
        self._seen: set[str] = set()
        self.levels: dict[str, list] = {}

    # ---- the clock ------------------------------------------------------------------------

    def at(self, t: float, fn) -> None:
        heapq.heappush(self._timers, (t, next(self._seq), fn))

    def _run_timers(self, until: float | None) -> None:
        while self._timers and (until is None or self._timers[0][0] < until):
            t, _n, fn = heapq.heappop(self._timers)
            self.now = max(self.now, t)
            fn()

    def run(self) -> Result:
        t0 = time.perf_counter()
        for line in self.lines:
            if line.wave is None:
                self.trades.append(Trade(line.number, "?", "-", "-", "-", 0, "rejected",
                                         "rejected", line.reason))
            else:
                self.at(line.wave.ts, lambda w=line.wave, n=line.number: self._open_wave(w, n))
        for point in heapq.merge(*(points(s) for s in self.data.values())):
            t, sym, price, _walk = point
            self._run_timers(t)
            self.now = t
            pos = self.held.get(sym)
            if pos is None:
                self._last[sym] = price
                self._stale.add(sym)
                continue
            play(self.engine, point, self._on_price)
            self._drain()
        self._run_timers(None)
        ends = [s.end for s in self.data.values()]
        starts = [line.ts for line in self.lines if line.ts is not None] or [s.start for s in self.data.values()]
        for pos in list(self.held.values()):
            self._mark_open(pos)
        records = sum(len(s.candles) for s in self.data.values())
        return Result(self.trades, self.equity, min(starts), max(ends), records,
                      time.perf_counter() - t0, self.levels)

    def _on_price(self, sym: str, price: Decimal) -> None:
        pos = self.held.get(sym)
        if pos is None:
            return
        self._drain()  # a fill this price caused reaches the mailbox before the tick
        if pos.busy:
            pos.tick = price
        else:
            pos.events.append(Tick(price, self.now))
            self._work(pos)
        if self.record:
            self._levels(pos, price)

    def _levels(self, pos: _Position, price: Decimal) -> None:
        """One sample of the chart: the price, the stop-loss and the armed trailing level."""
        s = pos.state
        trail = s.trailing.level if s.trailing is not None and s.trailing.activated else None
        self.levels.setdefault(s.id, []).append((self.now, price, s.stop_price, trail))

    def _on_order(self, o: OrderState) -> None:
        self._updates.append(o)

    def _drain(self) -> None:
        """Order updates the engine emitted go to their positions' mailboxes."""
        while self._updates:
            o = self._updates.pop(0)
            pos = self.by_id.get(position_id_of(o.cid) or "")
            if pos is not None and o.status == "filled" and o.avg_price is not None:
                pos.mailbox.append(Filled(o.cid, o.avg_price))
                self._work(pos)

    # ---- waves (the coordinator's rules) ----------------------------------------------------

    def _open_wave(self, wave, line: int) -> None:
        risk = self.cfg.risk
        for s in wave.signals:
            if s.reason is not None:
                self.trades.append(Trade(line, wave.id, s.id, s.symbol, "-", s.rank, "rejected",
                                         "rejected", s.reason))
        valid = []
        for s in wave.valid:
            if s.id in self._seen:
                self.trades.append(Trade(line, wave.id, s.id, s.symbol, s.side.value, s.rank,
                                         "duplicate", None, "signal id seen before; never opened twice"))
            else:
                self._seen.add(s.id)
                valid.append(s)
        target = min(risk.max_positions_per_wave, max(0, risk.max_open_positions - len(self.held)))
        w = _Wave(target, deque(valid), line, wave.id)
        self.waves.append(w)
        self._fill(w)

    def _fill(self, w: _Wave) -> None:
        risk = self.cfg.risk
        while w.reserves and w.opened + w.opening < w.target:
            if len(self.held) >= risk.max_open_positions:
                break
            sig = w.reserves.popleft()
            if sig.symbol in self.held:
                self._skip(w, sig, f"{sig.symbol} already has an open position")
                continue
            self._launch(w, sig)
        if w.opened >= w.target:
            reason = f"wave full ({w.target} positions)"
        elif w.opening == 0 and len(self.held) >= risk.max_open_positions:
            reason = f"max_open_positions={risk.max_open_positions} reached"
        else:
            return
        while w.reserves:
            sig = w.reserves.popleft()
            self._skip(w, sig, f"not opened: {reason}; rank {sig.rank}")

    def _skip(self, w: _Wave, sig: SignalIn, reason: str) -> None:
        self.trades.append(Trade(w.line, w.wave_id, sig.id, sig.symbol, _side(sig).value, sig.rank,
                                 "skipped", "skipped", reason))

    def _launch(self, w: _Wave, sig: SignalIn) -> None:
        pid = f"p{len(self.by_id) + 1:06d}"
        side = _side(sig)
        trade = Trade(w.line, w.wave_id, sig.id, sig.symbol, side.value, sig.rank, "open", position_id=pid)
        self.trades.append(trade)
        state = PositionState(id=pid, signal_id=sig.id, wave_id=w.wave_id, symbol=sig.symbol,
                              side=side, params=self.params)
        pos = _Position(state, trade, w)
        self.by_id[pid] = pos
        w.opening += 1
        series = self.data.get(sig.symbol)
        if series is None or not series.start <= self.now < series.end:
            trade.status = "failed"
            self._outcome(pos, Outcome.FAILED, f"no recorded price for {sig.symbol} at {self.now:.0f}")
            return
        self.held[sig.symbol] = pos
        if sig.symbol in self._stale:
            self.engine.set_price(sig.symbol, self._last[sig.symbol])
            self._stale.discard(sig.symbol)
        pos.events.append(Begin(self.engine.price(sig.symbol)))
        self._work(pos)

    def _outcome(self, pos: _Position, outcome: Outcome, reason: str) -> None:
        pos.trade.outcome, pos.trade.reason = outcome.value, reason
        w = pos.wave
        w.opening -= 1
        if outcome.opened:
            w.opened += 1
        for other in [w, *(x for x in self.waves if x is not w and (x.reserves or x.opening))]:
            self._fill(other)

    # ---- one position: step, execute (the actor's loop) -----------------------------------

    def _work(self, pos: _Position) -> None:
        while not pos.busy:
            if pos.cmds:
                self._execute(pos, pos.cmds.popleft())
            elif pos.events:
                ev = pos.events.popleft()
                old = pos.state
                pos.state, cmds = step(old, ev, self.markets[old.symbol])
                self._observe(pos, old)
                pos.cmds.extend(cmds)
            elif pos.mailbox:
                pos.events.append(pos.mailbox.popleft())
            elif pos.tick is not None:
                pos.events.append(Tick(pos.tick, self.now))
                pos.tick = None
            else:
                return

    def _execute(self, pos: _Position, cmd) -> None:
        match cmd:
            case Place() | Cancel() | Lookup():
                if self.latency <= 0:
                    self._call(pos, cmd)
                    return
                pos.busy = True

                def arrive(pos=pos, cmd=cmd) -> None:
                    pos.busy = False
                    self._call(pos, cmd)
                    self._work(pos)
                self.at(self.now + self.latency, arrive)
            case RetryLater(intent=i, delay_s=d):
                def retry_due() -> None:
                    pos.events.append(RetryDue(i))
                    self._work(pos)
                self.at(self.now + d, retry_due)
            case Report(outcome=o, reason=r):
                self._outcome(pos, o, r)

    def _call(self, pos: _Position, cmd) -> None:
        """One venue call, answered at once by the engine; its result is the next event."""
        s = pos.state
        ev: Event | None = None
        match cmd:
            case Place(intent=i):
                req = OrderRequest(i.cid, s.symbol, i.leg, i.side, i.qty, i.stop_price, i.activation,
                                   i.callback_pct)
                try:
                    o = self.engine.place(req)
                    ev = Placed(i, o.avg_price, o.filled_qty or None)
                except Rejected as e:
                    ev = PlaceFailed(i, FailureKind.REJECTED, str(e))
            case Cancel(cid=cid):
                cancelled: OrderState | None
                try:
                    cancelled = self.engine.cancel(cid)
                except (OrderNotFound, Rejected):
                    cancelled = None
                if cancelled is not None and cancelled.status == "filled" and cancelled.avg_price is not None:
                    ev = Filled(cid, cancelled.avg_price)
            case Lookup(intent=i):
                try:
                    o = self.engine.fetch(i.cid)
                    ev = LookedUp(i, o.status in ("open", "filled"), o.avg_price, o.filled_qty or None)
                except OrderNotFound:
                    ev = LookedUp(i, False)
        if ev is not None:
            pos.events.append(ev)
        self._drain()

    def _observe(self, pos: _Position, old: PositionState) -> None:
        """Note entries and exits in the position's trade as the state machine makes them."""
        s, t = pos.state, pos.trade
        if s.entry_price is not None and old.entry_price is None:
            t.entry_ts, t.entry_price, t.qty = self.now, s.entry_price, s.qty
        if self.record and s.entry_price is not None and s.last_price is not None and s.stop_price != old.stop_price:
            self._levels(pos, s.last_price)
        if not s.phase.final or old.phase.final:
            return
        self.held.pop(s.symbol, None)
        if s.phase is Phase.FAILED:
            t.status = "failed"
            return
        t.status, t.exit_ts, t.exit_reason = "closed", self.now, s.close_reason
        assert s.exit_price is not None, f"{s.id} final without an exit price"
        self._realized += settle(t, s.exit_price, self.fee, closed=True)
        self.equity.append((self.now, self._realized))

    def _mark_open(self, pos: _Position) -> None:
        """A position still open when the data ends: marked at the last price, not closed."""
        t, s = pos.trade, pos.state
        if s.entry_price is None:
            return
        t.exit_reason = "open at the end of the data (marked at the last price)"
        settle(t, self.engine.price(s.symbol) if s.symbol not in self._stale else self._last[s.symbol],
               self.fee, closed=False)
