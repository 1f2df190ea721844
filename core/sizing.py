"""How large a new position is: fixed USDT, a share of equity, or the size that loses a set
share of equity if its stop-loss is hit; then the caps: an equity-based size never past what
the equity can margin at the account's leverage (a tight stop would otherwise ask for many times
the equity), and the per-trade cap. Pure arithmetic."""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from core.types import HUNDRED

CENT = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class Sizing:
    mode: str  # "fixed" | "equity_pct" | "risk_pct"
    fixed_usdt: Decimal
    equity_pct: Decimal
    risk_pct: Decimal
    max_position_usdt: Decimal  # per-trade cap; 0 = none
    leverage: Decimal  # equity-based sizes are capped at equity × leverage


def notional(s: Sizing, equity: Decimal | None, stop_loss_pct: Decimal) -> Decimal | str:
    """The entry notional in USDT, or why there is none (the signal is then skipped)."""
    if s.mode == "fixed":
        size = s.fixed_usdt
    elif equity is None:
        return f"risk.sizing={s.mode} needs the account equity, and the venue has not reported it yet"
    elif equity <= 0:
        return f"account equity is {equity} USDT"
    elif s.mode == "equity_pct":
        size = equity * s.equity_pct / HUNDRED
    else:  # risk_pct: a stop-out at stop_loss_pct loses risk_pct of equity (fees aside)
        size = equity * s.risk_pct / stop_loss_pct
    if s.mode != "fixed" and equity is not None:  # (never None here: it returned above)
        size = min(size, equity * s.leverage)
    if s.max_position_usdt and size > s.max_position_usdt:
        size = s.max_position_usdt
    return size.quantize(CENT)
