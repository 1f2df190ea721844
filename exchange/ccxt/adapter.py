"""A real venue behind the Gateway interface: one ccxt asyncio client on its own loop thread.

Position threads call the sync methods; each call becomes a coroutine on the venue loop, so
the requests of a whole wave are in flight together and only ccxt's throttler (the venue's
rate limit) spaces them. Every call is bounded by the caller's timeout and every failure is
classified (retry / unknown outcome / rejected) before it leaves this module.
"""
from __future__ import annotations

import json
import time
import urllib.request
from dataclasses import replace
from decimal import Decimal
from typing import Any, Awaitable, Callable

import ccxt.async_support as ccxt
from loguru import logger

from core.client_ids import is_ours
from core.position_types import Leg, attached_cid
from core.types import MarketSpec
from exchange.ccxt.account import AccountRefused, AccountSetup
from exchange.ccxt.feed import DEFAULT_TRIGGER_STUCK_S, Feed
from exchange.ccxt.loop import VenueLoop
from exchange.ccxt.session import VenueSession
from exchange.ccxt.venues import Venue
from exchange.gateway import (
    Acknowledged, Balance, OrderHandler, OrderNotFound, OrderRequest, OrderState, Rejected, Retryable,
    TickHandler, VenueError, VenuePosition,
)
from exchange.rehearsal import PROTECTION_GAPS_PATH

# First pause between read-backs of an acknowledged market order (doubling, within the call's timeout).
READ_BACK_FIRST_S = 0.05


class CcxtGateway:
    def __init__(self, venue: Venue, make_exchange: Callable[[], ccxt.Exchange], *,
                 call_timeout_s: float, poll_interval_s: float = 1.0, websocket: bool = False,
                 trigger_stuck_s: float = DEFAULT_TRIGGER_STUCK_S, account: AccountSetup | None = None,
                 rehearsal_url: str | None = None) -> None:
        self.venue = venue
        self.rehearsal_url = rehearsal_url  # a local fake venue's base URL: it records the window
        self.account = account
        self.name = venue.ccxt_id
        self.supports_native_trailing = venue.supports_native_trailing
        self.entry_modes = venue.entry_modes
        self.call_timeout_s = call_timeout_s
        self.session = VenueSession(venue, make_exchange, call_timeout_s=call_timeout_s)
        if account is not None:  # refuses to start on an account we cannot trade safely
            try:
                self._call(lambda: account.at_start(self.ex), call_timeout_s, write=False)
            except BaseException:
                self.session.close()
                raise
        logger.info("{}: {} markets; clock offset to the venue {} ms (measured at load, signed requests "
                    "carry it)", self.name, len(self.specs), self.clock_offset_ms)
        self.feed = Feed(self.session, poll_interval_s=poll_interval_s, websocket=websocket,
                         trigger_stuck_s=trigger_stuck_s)

    # ---- the venue session -------------------------------------------------------------

    @property
    def ex(self) -> ccxt.Exchange:
        return self.session.ex

    @property
    def loop(self) -> VenueLoop:
        return self.session.loop

    @property
    def specs(self) -> dict[str, MarketSpec]:
        return self.session.specs

    @property
    def calls(self) -> int:
        return self.session.calls

    @property
    def clock_offset_ms(self) -> int | None:
        """Local clock minus the venue's, as ccxt measured it; None until measured."""
        return self.session.clock_offset_ms

    def _call(self, fn: Callable[[], Awaitable[Any]], timeout: float, *, write: bool,
              pace: str | None = None) -> Any:
        return self.session.call(fn, timeout, write=write, pace=pace)

    # ---- gateway interface -------------------------------------------------------------

    def markets(self) -> dict[str, MarketSpec]:
        return dict(self.specs)

    def price(self, symbol: str, timeout: float) -> Decimal:
        self._known(symbol)
        prices = self._call(lambda: self.venue.last_prices(self.ex, [symbol]), timeout, write=False)
        if prices.get(symbol) is None:
            raise Retryable(f"{self.name}: no price for {symbol}")
        return prices[symbol]

    def place_order(self, req: OrderRequest, timeout: float) -> OrderState:
        self._known(req.symbol)
        order_type, params = self.venue.order_args(req)  # raises Rejected: nothing is sent
        deadline = time.monotonic() + timeout
        if req.leg is Leg.ENTRY and self.account is not None:
            self._set_up(req.symbol, timeout)
            timeout = max(deadline - time.monotonic(), 0.1)
        o = self._call(lambda: self.ex.create_order(req.symbol, order_type, req.side, str(req.qty),
                                                    None, params), timeout, write=True, pace="create")
        state = self.venue.state(o, req.cid, req.leg)
        if state.stop_price is None and req.stop_price is not None and state.status == "open":
            # An answer of ids alone (Bybit's order/create): the stop rests where it was sent.
            state = replace(state, stop_price=req.stop_price)
        if req.leg in (Leg.ENTRY, Leg.EXIT) and state.status != "filled":
            state = self._read_back(req, deadline)
        if state.leg in (Leg.STOP, Leg.TRAILING) and state.status == "open":
            self.feed.watch(req.symbol, req.cid)
        if req.attached_stop is not None and state.status == "filled":  # the venue made it at the fill
            self.feed.watch(req.symbol, attached_cid(req.cid))
        return state

    def _set_up(self, symbol: str, timeout: float) -> None:
        """Margin mode and leverage of `symbol` set and read back before its first entry.

        Only the venue's refusal refuses the entry; a set-up call that could not be made (clock
        outside the venue's window even after a resync, network, rate budget) leaves the entry
        unsent and keeps its class, so the caller tries again instead of failing the position."""
        account = self.account
        if account is None:  # only called with one
            return
        try:
            self._call(lambda: account.ensure(self.ex, symbol), timeout, write=False)
        except AccountRefused:
            raise
        except Retryable as e:
            again = type(e)(f"{self.name}: account set-up of {symbol} not done, entry not sent: {e}")
            again.code = getattr(e, "code", None)  # type: ignore[attr-defined]
            raise again from e
        except VenueError as e:
            raise Rejected(f"{self.name}: account set-up of {symbol} failed, entry not sent: {e}") from e

    def _read_back(self, req: OrderRequest, deadline: float) -> OrderState:
        """Some venues only acknowledge a market order (Bybit: creation is asynchronous, its
        history may lag): read it back by client id, with backoff, until it is final or the
        call's time is up; then it is `Acknowledged` — placed, fill not yet known."""
        pause, why = READ_BACK_FIRST_S, "still working"
        while True:
            left = deadline - time.monotonic()
            if left <= 0.05:
                raise Acknowledged(f"{self.name}: order {req.cid} acknowledged, fill not read back: {why}")
            try:
                state = self.fetch_order(req.symbol, req.cid, left)
                if state.status != "open":
                    return state
                why = "still working"
            except (Retryable, OrderNotFound) as e:
                why = str(e)
            except VenueError as e:  # the order was accepted: a failed read never refuses it
                raise Acknowledged(f"{self.name}: order {req.cid} acknowledged, read-back failed: {e}") from e
            time.sleep(max(min(pause, deadline - time.monotonic() - 0.05), 0))
            pause *= 2

    def cancel_order(self, symbol: str, cid: str, timeout: float) -> OrderState:
        self._known(symbol)
        o = self._call(lambda: self.venue.cancel(self.ex, symbol, cid), timeout, write=True, pace="cancel")
        self.feed.unwatch(cid)
        state = self.venue.state(o, cid)
        return state if state.status != "open" else _with_status(state, "cancelled")

    def fetch_order(self, symbol: str, cid: str, timeout: float) -> OrderState:
        self._known(symbol)
        o = self._call(lambda: self.venue.fetch(self.ex, symbol, cid), timeout, write=False)
        state = self.venue.state(o, cid)
        if state.status == "open" and state.leg in (Leg.STOP, Leg.TRAILING):
            self.feed.watch(symbol, cid)
        elif state.status != "open":
            self.feed.unwatch(cid)
        return state

    def open_orders(self, symbol: str | None, timeout: float) -> list[OrderState]:
        if symbol is not None:
            self._known(symbol)
        rows = self._call(lambda: self.venue.open_orders(self.ex, symbol), timeout, write=False)
        states = [self.venue.state(o) for o in rows]
        for s in states:  # after a restart these are the stops the feed must keep an eye on
            if s.leg in (Leg.STOP, Leg.TRAILING) and is_ours(s.cid):
                self.feed.watch(s.symbol, s.cid)
        # A stop stuck between trigger and fill is listed open but protects nothing.
        return [s for s in states if not self.feed.is_stuck(s.cid)]

    def positions(self, timeout: float) -> list[VenuePosition]:
        return self._call(lambda: self.venue.positions(self.ex), timeout, write=False)

    def balance(self, timeout: float) -> Balance:
        return self._call(lambda: self.venue.balance(self.ex), timeout, write=False)

    def protection_gaps(self) -> list[float] | None:
        """The protection window as the venue recorded it — only a local fake venue keeps such a
        record; a real one cannot say (None), and neither can a fake that does not answer."""
        if self.rehearsal_url is None:
            return None
        try:
            with urllib.request.urlopen(self.rehearsal_url.rstrip("/") + PROTECTION_GAPS_PATH,
                                        timeout=self.call_timeout_s) as r:
                return [float(g) for g in json.load(r)["gaps"]]
        except (OSError, ValueError, KeyError, TypeError) as e:
            logger.warning("{}: the local venue's protection window is unreadable: {}", self.name, e)
            return None

    def subscribe(self, on_tick: TickHandler, on_order: OrderHandler) -> None:
        self.feed.start(on_tick, on_order)

    def close(self) -> None:
        self.feed.stop()
        self.session.close()

    # ---- helpers -----------------------------------------------------------------------

    def _known(self, symbol: str) -> None:
        if symbol not in self.specs:
            raise Rejected(f"{self.name}: unknown or untradable symbol {symbol}")


def _with_status(s: OrderState, status: str) -> OrderState:
    return replace(s, status=status)

