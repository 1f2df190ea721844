"""The live path on a recorded path: the real service (coordinator, position actors,
supervisor, database, paper venue) trading recorded waves while the recorded candles play.

`paper.prices = "file:DATA"` builds the paper venue on the recorded symbols and their first
prices, without a random-walk feed; this module plays the path through the same `play` the
backtest uses, sending every price to the service's market data as the feed would. Each wave
is submitted at its own time and the path holds still until it is final; after each price
until the positions on its symbol have acted on it (an emulated trailing stop moved); after a
price that triggers a stop, until the owning actor has closed its position and cancelled the
rest of its orders. So the actors meet the prices the backtest met, in the same order, and at
`paper.latency_ms = 0` make the same exits at the same prices (native or emulated trailing;
with `protection.replace_min_interval_s = 0`, since the actors' clock is the wall's).
"""
from __future__ import annotations

import heapq
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pykka
from sqlalchemy import select

from actors.messages import GetState

from backtest.trades import BPS, Result, Trade, settle
from backtest.waves import read_waves
from core.client_ids import position_id_of
from core.config import Config
from core.phases import CLOSED_TRADE, FINAL, Phase
from exchange.gateway import OrderState
from exchange.paper.prices import play, points
from persistence.models import PositionRow, SignalRow



class Stalled(RuntimeError):
    """The service did not settle in time: the rehearsal cannot go on in step with the path."""


def _wait(pred, timeout_s: float, what: str) -> None:
    end = time.monotonic() + timeout_s
    while not pred():
        if time.monotonic() > end:
            raise Stalled(f"rehearsal: {what} did not happen within {timeout_s:g}s")
        time.sleep(0.002)


def rehearse(cfg: Config, waves: Path) -> Result:
    from service.app import Service

    svc = Service(cfg)
    gw: Any = svc.gateway  # the paper gateway: its engine and recorded prices are read directly
    if getattr(gw, "recorded", None) is None:
        raise ValueError('a rehearsal on a recorded path needs paper.prices = "file:DATA"')
    engine, data = gw.engine, gw.recorded
    wait_s = cfg.deadlines.wave_s
    fired: list[OrderState] = []
    exits: dict[str, float] = {}
    engine.add_listener(lambda o: fired.append(o) if o.status == "filled" else None)
    t0 = time.perf_counter()
    svc.start(with_source=False)
    try:
        lines = read_waves(waves, svc.markets, max_wave_size=cfg.signals.max_wave_size)
        path = heapq.merge(*(points(s) for s in data.values()))
        nxt = next(path, None)

        def send(sym: str, price: Decimal) -> None:  # as the feed would, then wait for the actors
            svc.market_data.on_tick(sym, price)
            _heard(svc, sym, wait_s)

        def play_until(t: float | None) -> None:
            nonlocal nxt
            while nxt is not None and (t is None or nxt[0] <= t):
                play(engine, nxt, send)
                while fired:
                    o = fired.pop(0)
                    exits.setdefault(position_id_of(o.cid) or o.cid, nxt[0])
                    _settled(svc, o, wait_s)
                nxt = next(path, None)

        for line in lines:
            if line.ts is not None:
                play_until(line.ts)
            done = {w.wave_id for w in svc.stats.waves}
            taken = svc.submit(line.raw, f"{waves.name}:{line.number}", now=line.ts)
            if taken:
                _wait(lambda: taken.wave_id in {w.wave_id for w in svc.stats.waves} - done, wait_s,
                      f"wave {taken.wave_id} final")
        play_until(None)
        trades = _trades(svc, cfg, exits, lines)
    finally:
        svc.shutdown()
    starts = [line.ts for line in lines if line.ts is not None] or [s.start for s in data.values()]
    closed = sorted((t for t in trades if t.status == "closed"), key=lambda t: t.exit_ts or 0)
    equity: list[tuple[float, Decimal]] = []
    total = Decimal(0)
    for t in closed:
        assert t.exit_ts is not None and t.net is not None, f"{t.signal_id} closed but not settled"
        total += t.net
        equity.append((t.exit_ts, total))
    return Result(trades, equity, min(starts), max(s.end for s in data.values()),
                  sum(len(s.candles) for s in data.values()),
                  time.perf_counter() - t0, {})


def _heard(svc, symbol: str, timeout_s: float) -> None:
    """Hold the path until every position on `symbol` has acted on the price just sent (an
    ask queues behind the tick, and a stop the tick moves is placed before it is answered)."""
    for key, h in list(svc.supervisor.children.items()):
        if key != "coordinator" and h.symbol == symbol and h.ref is not None and not h.retired:
            try:
                h.ref.ask(GetState(), timeout=timeout_s)
            except pykka.ActorDeadError:
                pass  # it closed meanwhile


def _settled(svc, o: OrderState, timeout_s: float) -> None:
    """Hold the path until the position a triggered order closed is recorded closed and
    none of its orders rests any more (its actor cancelled the other one)."""
    pid = position_id_of(o.cid)

    def done() -> bool:
        with svc.db.tx("db_read") as tx:
            phase = tx.scalar(select(PositionRow.phase).where(PositionRow.id == pid))
        return phase in FINAL and not any(position_id_of(x.cid) == pid for x in svc.gateway.engine.open_orders(o.symbol))

    _wait(done, timeout_s, f"position {pid} closed after {o.cid} filled")


def _trades(svc, cfg: Config, exits: dict[str, float], lines) -> list[Trade]:
    """The report's rows from what the service recorded (signals, positions)."""
    line_of = {line.wave.id: line.number for line in lines if line.wave is not None}
    ts_of = {line.wave.id: line.ts for line in lines if line.wave is not None}
    with svc.db.tx("db_read") as tx:
        signals = list(tx.scalars(select(SignalRow)))
        positions = {p.id: p for p in tx.scalars(select(PositionRow))}
    fee = cfg.backtest.fee_bps / BPS
    out = []
    for s in signals:
        p = positions.get(s.position_id or "")
        status = s.outcome or "pending"
        t = Trade(line_of.get(s.wave_id, 0), s.wave_id, s.id, s.symbol, s.side, s.rank, status, s.outcome,
                  s.reason, s.position_id)
        if p is not None:
            t.status = "closed" if p.phase in CLOSED_TRADE else "failed" if p.phase == Phase.FAILED else "open"
            t.entry_price, t.qty = p.entry_price, p.qty
            t.entry_ts = ts_of.get(s.wave_id) if p.entry_price is not None else None  # the path held still
            if t.status == "closed":
                t.exit_reason, t.exit_ts = p.close_reason, exits.get(p.id)
                settle(t, p.exit_price, fee, closed=True)
        out.append(t)
    return out
