"""What becomes of a position its supervisor gave up on (past the restart intensity).

Its actor kept failing, so nothing is left to protect it: the position is fenced, closed at
market if the venue holds it, its resting orders of ours are taken off, it is flagged for the
operator, and its signal gets its one outcome. The venue comes first: a failing (full,
read-only) database must not keep the position open, so the old actor is fenced in memory at
once and the database records it all afterwards, each write on its own so that one failing
keeps none of the others from being tried. If even the close fails, the position is left open,
flagged, and its signal settled as unprotected (or failed, if it never held anything).

The close is the state machine's exit order, under the fenced epoch and the position's next
sequence number; the final row is the state machine's terminal phase for it.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TypeVar

from loguru import logger

from actors.messages import PositionOutcome
from actors.position_context import PositionContext
from core.position_types import (
    Leg,
    OrderIntent,
    Outcome,
    PositionState,
    Report,
    position_id_of,
)
from core.phases import closed_phase
from exchange.gateway import OrderRequest

__all__ = ["EscalationPolicy"]

CLOSE_REASON = "escalated by supervisor"
T = TypeVar("T")


def _record(position_id: str, what: str, write: Callable[[], T]) -> T | None:
    """One database write after a venue action: a failure is logged, never raised."""
    try:
        return write()
    except Exception as e:
        logger.critical("supervisor: {}: recording its {} failed: {!r}; recovery reconciles it with "
                        "the venue on the next start", position_id, what, e)
        return None


def _request(symbol: str, i: OrderIntent) -> OrderRequest:
    return OrderRequest(i.cid, symbol, i.leg, i.side, i.qty, i.stop_price, i.activation, i.callback_pct,
                        close_position=i.close_position, attached_stop=i.attached_stop)


class EscalationPolicy:
    """Settles escalated positions. `load` reads a position (with the current defaults);
    `claim_epoch(position_id, epoch)` raises its epoch in the database and returns the new one."""

    def __init__(self, ctx: PositionContext, load: Callable[[str], PositionState],
                 claim_epoch: Callable[[str, int], int]) -> None:
        self.ctx, self.load, self.claim_epoch = ctx, load, claim_epoch

    def settle(self, position_id: str, epoch: int, msg: str) -> str:
        """Close the position last run under `epoch`; returns what its owner is told."""
        epochs = self.ctx.epochs
        try:
            epochs[position_id] = max(epochs.get(position_id, epoch), epoch) + 1
            self._close(position_id, msg)
        except Exception as e:
            logger.critical("supervisor: could not close escalated {}: {!r}; operator needed", position_id, e)
            _record(position_id, "new epoch", lambda: self.claim_epoch(position_id, epoch))
            _record(position_id, "flag", lambda: self.ctx.store.flag(position_id, msg))
            self._settle_signal(position_id, f"{msg}; close failed ({e}); flagged for the operator")
            return msg + "; close failed, position left open"
        return msg

    def _close(self, position_id: str, msg: str) -> None:
        """Close at market and take our resting orders off, straight through the gateway; then
        record it (epoch, flag, final step)."""
        s = self.load(position_id)  # a read: still works on a full disk
        gw, t = self.ctx.gateway, self.ctx.deadlines.venue_call_s
        fenced = replace(s, epoch=self.ctx.epochs.get(position_id, s.epoch + 1), seq=s.seq + 1)
        qty = next((abs(p.qty) for p in gw.positions(timeout=t) if p.symbol == s.symbol), None)
        if qty:
            exit_ = OrderIntent(fenced.cid(Leg.EXIT), Leg.EXIT, s.side.exit_order_side, qty)
            gw.place_order(_request(s.symbol, exit_), timeout=t)
        for o in gw.open_orders(s.symbol, timeout=t):
            if position_id_of(o.cid) == s.id or o.cid in s.protective_cids:
                gw.cancel_order(s.symbol, o.cid, timeout=t)
        final = replace(s, phase=closed_phase(emergency=True, reported=s.reported),
                        close_reason=CLOSE_REASON, stop_cid=None, trailing_cid=None,
                        reported=True, seq=s.seq + 1)
        new_epoch = _record(position_id, "new epoch", lambda: self.claim_epoch(position_id, s.epoch))
        _record(position_id, "flag", lambda: self.ctx.store.flag(position_id, msg))
        _record(position_id, "close", lambda: self.ctx.store.commit_step(
            final if new_epoch is None else replace(final, epoch=new_epoch)))
        if not s.reported:
            outcome = Outcome.EMERGENCY_CLOSED if qty or s.entry_price else Outcome.FAILED
            self._report(s, Report(outcome, f"{CLOSE_REASON} after repeated failures"))
        self.ctx.epochs.pop(position_id, None)

    def _settle_signal(self, position_id: str, reason: str) -> None:
        """Whatever became of the position, its signal gets its one outcome: a wave must not
        wait forever on a position that neither protection nor closing could resolve."""
        try:
            s = self.load(position_id)
        except Exception as e:
            logger.critical("supervisor: cannot read {} to settle its signal: {!r}", position_id, e)
            return
        if not s.reported:
            held = s.entry_price is not None or s.phase.holds_position
            self._report(s, Report(Outcome.UNPROTECTED if held else Outcome.FAILED, reason))

    def _report(self, s: PositionState, r: Report) -> None:
        self.ctx.coordinator().tell(PositionOutcome(s.id, s.signal_id, s.wave_id, s.symbol, r.outcome, r.reason))
