"""The entry, generic to every protocol: a position is sized and refused if the venue or its
leverage forbids it; once its entry fills it is protected by its protocol, or closed at once
if a close was asked for while the entry was in flight."""
from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from core import entry_protocol as ep
from core import trailing as tr
from core.phases import Outcome, Phase
from core.position_steps import Step, close, report
from core.position_types import Begin, PositionState, Record
from core.types import MarketSpec


def begin(s: PositionState, ev: Begin, spec: MarketSpec) -> Step:
    """Size the position and send its first order, unless the venue or its leverage forbids it."""
    qty = spec.round_qty(s.params.notional / ev.price)
    if qty < spec.min_qty or qty * ev.price < spec.min_notional:
        return _refuse_entry(s, ev.price, f"size {qty} at {ev.price} is below the venue minimum "
                                          f"(min qty {spec.min_qty}, min notional {spec.min_notional})")
    if (reason := _liquidates_first(s, ev.price, spec)) is not None:
        return _refuse_entry(s, ev.price, reason)
    return ep.begin(s, qty, ev.price, spec)


def _refuse_entry(s: PositionState, price: Decimal, reason: str) -> Step:
    s = replace(s, phase=Phase.FAILED, last_price=price)
    s, cmds = report(s, Outcome.FAILED, reason)
    return s, [Record("entry_refused", {"reason": reason}), *cmds]


def _liquidates_first(s: PositionState, price: Decimal, spec: MarketSpec) -> str | None:
    """Why an entry at `price` must not be made: its stop would lie beyond liquidation."""
    p = s.params
    if p.leverage is None:
        return None
    stop = tr.initial_stop(price, s.side, p.stop_loss_pct, spec)
    liq = tr.liquidation_estimate(price, s.side, p.leverage, p.maint_margin_pct)
    if not tr.beyond_liquidation(stop, liq, s.side):
        return None
    return (f"stop {stop} lies beyond the estimated liquidation price {spec.nearest_price(liq)} "
            f"(leverage {p.leverage}x, maintenance margin {p.maint_margin_pct}%): lower exchange.leverage "
            f"or tighten protection.stop_loss_pct")


def entered(s: PositionState, price: Decimal, qty: Decimal, spec: MarketSpec) -> Step:
    """The entry filled: protect it (by its protocol), or close it if that was asked meanwhile."""
    p = s.params
    s = replace(
        s, phase=Phase.OPEN, entry_price=price, qty=qty, last_price=s.last_price or price,
        trailing=tr.Trailing(tr.activation_price(price, s.side, p.activation_pct, spec), p.callback_pct),
    )
    if s.close_reason:  # a close was asked for while the entry was in flight
        return close(s, s.close_reason)
    s2, cmds = ep.protect_after_fill(s, price, spec)
    return s2, [Record("entered", {"price": str(price), "qty": str(qty)}), *cmds]
