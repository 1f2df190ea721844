"""Adopting what the venue holds that no open position of ours accounts for (recovery's sweep).

A position found at the venue is adopted with the stop of ours already resting on it when
there is one on its loss side: the position is then never without a stop, not even for the
round trip a new one would take, and no order is cancelled or re-placed.
"""
from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal
from functools import partial
from itertools import islice
from typing import Any

from loguru import logger

from actors.together import together
from core import trailing as tr
from core.position_types import Leg, Phase, PositionState, position_id_of
from core.types import Side
from exchange.gateway import OrderState, VenuePosition
from service.recovery_report import RecoveryDeps, RecoveryReport

Resting = tuple[OrderState, OrderState | None]  # the stop of ours on a position, and its trailing stop


def resting_protection(d: RecoveryDeps, unknown: list[VenuePosition], strays: list[OrderState]
                       ) -> dict[str, Resting]:
    """For each venue position nobody of ours holds, the tightest stop of ours resting on
    its loss side (judged against the price: a buy stop rests above it, a sell stop below)
    and the trailing stop placed with that stop: the position is adopted with them, so it
    is never without its stop — not even for the round trip a new one would take."""
    by_symbol: dict[str, list[OrderState]] = {}
    for o in strays:
        by_symbol.setdefault(o.symbol, []).append(o)
    need = [vp for vp in unknown if any(o.leg is Leg.STOP and o.stop_price is not None
                                        for o in by_symbol.get(vp.symbol, ()))]
    prices = latest_prices(d, [vp.symbol for vp in need])
    out: dict[str, Resting] = {}
    for vp in need:
        side, price = (Side.LONG if vp.qty > 0 else Side.SHORT), prices.get(vp.symbol)
        stops = [o for o in by_symbol[vp.symbol] if o.leg is Leg.STOP and o.stop_price is not None
                 and price is not None and tr.is_protective(o.stop_price, price, side)]
        if not stops:
            continue
        best = stops[0]
        for o in stops[1:]:
            if o.stop_price is not None and best.stop_price is not None \
                    and tr.is_tighter(o.stop_price, best.stop_price, side):
                best = o
        trail = next((o for o in by_symbol[vp.symbol] if o.leg is Leg.TRAILING
                      and position_id_of(o.cid) == position_id_of(best.cid)), None)
        out[vp.symbol] = (best, trail)
    return out

def latest_prices(d: RecoveryDeps, symbols: list[str]) -> dict[str, Decimal]:
    """The latest price of each symbol: streamed if we have one, else read (together)."""
    last, gw, t = d.market_data.last_price, d.gateway, d.venue_call_s

    def read(sym: str) -> Decimal | None:
        try:
            return gw.price(sym, timeout=t)
        except Exception as e:
            logger.warning("recovery: price of {} unavailable ({}); its resting stop is not adopted", sym, e)
            return None
    got = batched({sym: partial(read, sym) for sym in symbols if last.get(sym) is None})
    return {sym: p for sym in symbols if (p := last.get(sym) or got.get(sym)) is not None}

def batched(calls: dict[str, Callable[[], Any]]) -> dict[str, Any]:
    """`together`, a few at a time: within the venue's rate budget."""
    out: dict[str, Any] = {}
    it = iter(calls.items())
    while batch := dict(islice(it, 16)):
        out |= together(batch)
    return out


def adopt(d: RecoveryDeps, vp: VenuePosition, rep: RecoveryReport, resting: Resting | None) -> PositionState | None:
    """Record a venue position no open position accounts for; the state to start, if any."""
    try:
        return _unknown_position(d, vp, rep, resting)
    except Exception as e:  # its stops are kept (nobody protects it); the operator is told
        logger.error("recovery: could not adopt the venue's {} {}: {!r}", vp.symbol, vp.qty, e)
        d.notes.append(f"unknown venue position {vp.symbol} {vp.qty}: adoption failed ({e!r})")
        return None

def _unknown_position(d: RecoveryDeps, vp: VenuePosition, rep: RecoveryReport,
                      resting: Resting | None) -> PositionState | None:
    """Record a venue position no open position accounts for; the state to adopt, if any."""
    policy = d.cfg.unknown_venue_position
    spec = d.markets.get(vp.symbol)
    if spec is None:
        policy = "report"
    side = Side.LONG if vp.qty > 0 else Side.SHORT
    data: dict[str, str | None] = {"symbol": vp.symbol, "qty": str(vp.qty), "entry": str(vp.entry_price), "action": policy}
    logger.error("recovery: the venue holds {} {} {} (entry {}) that no open position of ours "
                 "accounts for; policy: {}", vp.symbol, side.value, abs(vp.qty), vp.entry_price, policy)
    rep.unknown_venue_positions.append(f"{vp.symbol} {vp.qty}: {policy}")
    if policy == "report":
        d.store.record("venue_position_unknown", data)
        d.notes.append(f"unknown venue position {vp.symbol} {vp.qty} (reported only)")
        return None
    assert spec is not None  # an unknown market is only reported (above)
    entry = vp.entry_price or d.gateway.price(vp.symbol, timeout=d.venue_call_s)
    p = d.defaults()
    pid = uuid.uuid4().hex[:12]
    state = PositionState(
        id=pid, signal_id=f"adopted-{pid}", wave_id="recovery", symbol=vp.symbol, side=side,
        params=p, phase=Phase.CLOSING if policy == "close" else Phase.OPEN, qty=abs(vp.qty),
        entry_price=entry,
        trailing=tr.Trailing(tr.activation_price(entry, side, p.activation_pct, spec), p.callback_pct),
        close_reason="unknown venue position: closed by recovery policy" if policy == "close" else None)
    reason = f"adopted on recovery: the venue held {vp.qty} {vp.symbol} the database did not know"
    if resting is not None:
        stop, trail = resting
        state = replace(state, stop_cid=stop.cid, stop_price=stop.stop_price,
                        trailing_cid=trail.cid if trail else None)
        reason += f", with our stop {stop.cid} resting on it at {stop.stop_price}"
        data |= {"stop_cid": stop.cid, "trailing_cid": trail.cid if trail else None}
    d.store.create(state, origin="adopted")
    d.store.flag(pid, reason)
    d.store.record("venue_position_unknown", data | {"position_id": pid}, position_id=pid)
    d.notes.append(f"{pid}: {reason}")
    return state
