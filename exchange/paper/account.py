"""The paper venue's records: orders, positions and the account that holds them, as plain data.

Plain dataclasses so the whole account can be journaled, saved and restored (`exchange.paper.store`),
and the venue's rules that are constants of the venue rather than of one engine: the trailing
callback range, the fee schedule, and refusals carrying the venue's own error codes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Callable

from core.position_types import Leg
from exchange.gateway import OrderState, Rejected

# Binance's documented callbackRate range (min 0.1, max 20 since its 2026-10-23 change).
CALLBACK_RANGE = (Decimal("0.1"), Decimal("20"))

# What a triggered stop does next: its market order fills (the default), the market order
# expires unfilled (the stop is gone, the position stays), or it hangs between trigger and
# matching engine and never fills ("hold": still listed as open, no longer resting).
TriggerOutcome = Callable[["PaperOrder"], str]
# Binance USD-M futures, regular user (VIP 0): maker 0.0200 %, taker 0.0500 % of the notional;
# market orders always take. https://www.binance.com/en/support/faq/360033544231
TAKER_FEE_PCT = Decimal("0.05")
MAKER_FEE_PCT = Decimal("0.02")
FEE_QUANTUM = Decimal("0.00000001")  # commissions are reported to 8 decimals


@dataclass(slots=True)
class PaperOrder:
    cid: str
    symbol: str
    leg: Leg
    side: str
    qty: Decimal
    stop_price: Decimal | None = None
    activation: Decimal | None = None
    callback_pct: Decimal | None = None
    status: str = "open"
    filled_qty: Decimal = Decimal(0)
    avg_price: Decimal | None = None
    activated: bool = False
    best: Decimal | None = None
    fee: Decimal = Decimal(0)
    close_position: bool = False  # closes whatever the symbol holds on its side, no quantity
    parent: str | None = None  # the entry an attached stop-loss came with

    def view(self) -> OrderState:
        return OrderState(self.cid, self.symbol, self.leg, self.status, self.filled_qty,
                          self.avg_price, self.stop_price, side=self.side, qty=self.qty,
                          reduce_only=self.leg is not Leg.ENTRY, activation=self.activation,
                          callback_pct=self.callback_pct,
                          activated=self.activated if self.leg is Leg.TRAILING else None, best=self.best,
                          close_position=self.close_position, fee=self.fee)


@dataclass(slots=True)
class PaperPosition:
    qty: Decimal = Decimal(0)  # signed
    entry: Decimal | None = None


@dataclass
class PaperAccount:
    """Everything the venue remembers; plain data so it can be saved and restored."""

    prices: dict[str, Decimal]
    positions: dict[str, PaperPosition] = field(default_factory=dict)
    orders: dict[str, PaperOrder] = field(default_factory=dict)
    balance: Decimal = Decimal(10000)  # wallet: deposits + realized P&L - fees
    realized_pnl: Decimal = Decimal(0)  # gross, before fees
    fees_paid: Decimal = Decimal(0)


def venue_error(code: int, msg: str) -> Rejected:
    """A refusal carrying the Binance-style code, so adapters and tests can map it."""
    err = Rejected(f"{code} {msg}")
    err.code = code  # type: ignore[attr-defined]
    return err
