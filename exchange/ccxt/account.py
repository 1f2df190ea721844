"""Account set-up on a real venue, through ccxt's unified calls.

At start: the account must be in one-way position mode. Hedge mode is refused, not supported:
every order we send is one-way (no positionSide / positionIdx), so in hedge mode the venue
would refuse each one (Binance -4061, Bybit "position idx not match") and the service would
look healthy while unable to protect anything. The message names the fix.

Before a symbol's first entry: its margin mode and leverage are set from configuration and
read back; an entry whose symbol cannot be set up is refused with the reason, before it is
sent. Endpoints (ccxt 4.5.90): Binance `GET /fapi/v1/positionSide/dual` (fetch_position_mode),
`POST /fapi/v1/marginType` (set_margin_mode), `POST /fapi/v1/leverage` (set_leverage);
Bybit `GET /v5/position/list?symbol=` (fetch_positions: positionIdx, leverage),
`GET /v5/account/info` (fetch_margin_mode), `POST /v5/account/set-margin-mode` (unified
account) or `POST /v5/position/switch-isolated` (classic), `POST /v5/position/set-leverage`.
"""
from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import ccxt.async_support as ccxt

from exchange.ccxt.errors import venue_code
from exchange.ccxt.venues import BybitLinear, dec
from exchange.gateway import Rejected

# Bybit: "Set leverage not modified" — the symbol already has it.
BYBIT_LEVERAGE_UNCHANGED = "110043"


class AccountRefused(Rejected):
    """The account is set up in a way the service cannot trade safely."""


def hedge_mode_refusal(venue: str, fix: str) -> AccountRefused:
    return AccountRefused(f"{venue}: the account is in hedge (dual-side) position mode; wave-trader "
                          f"trades one-way mode only. Switch it to one-way ({fix}) and start again.")


class AccountSetup:
    """Position mode checked once; margin mode and leverage per symbol, once, before its first
    entry (concurrent first entries of one symbol share the same set-up)."""

    def __init__(self, leverage: int, margin_mode: str) -> None:
        self.leverage, self.margin_mode = leverage, margin_mode
        self._symbols: dict[str, asyncio.Future] = {}

    async def at_start(self, ex: ccxt.Exchange) -> None:
        raise NotImplementedError

    async def ensure(self, ex: ccxt.Exchange, symbol: str) -> None:
        """Set up `symbol` unless done; a failure is forgotten so the next entry tries again."""
        job = self._symbols.get(symbol)
        if job is None:
            job = self._symbols[symbol] = asyncio.ensure_future(self._set_up(ex, symbol))
        try:
            await asyncio.shield(job)
        except BaseException:
            if job.done() and self._symbols.get(symbol) is job:
                del self._symbols[symbol]
            raise

    def ready(self) -> list[str]:
        return sorted(s for s, job in self._symbols.items() if job.done() and not job.exception())

    async def _set_up(self, ex: ccxt.Exchange, symbol: str) -> None:
        raise NotImplementedError

    def _wrong(self, venue: str, symbol: str, what: str, got: Any, wanted: Any) -> AccountRefused:
        return AccountRefused(f"{venue}: {symbol} {what} is {got} after setting it to {wanted}")


class BinanceAccount(AccountSetup):
    async def at_start(self, ex):
        mode = await ex.fetch_position_mode()
        if mode.get("hedged"):
            raise hedge_mode_refusal("binanceusdm", "Futures → Preferences → Position Mode → One-way, or "
                                                    "POST /fapi/v1/positionSide/dual dualSidePosition=false")

    async def _set_up(self, ex, symbol):
        try:
            await ex.set_margin_mode(self.margin_mode, symbol)
        except ccxt.MarginModeAlreadySet:  # -4046 "No need to change margin type."
            pass
        answer = await ex.set_leverage(self.leverage, symbol)
        got = dec((answer or {}).get("leverage"))
        if got != self.leverage:
            raise self._wrong("binanceusdm", symbol, "leverage", got, self.leverage)


class BybitAccount(AccountSetup):
    unified = True  # a unified trading account (read at start): one margin mode for the account

    async def at_start(self, ex):
        margin, unified = await ex.is_unified_enabled()  # also warms ccxt's cache for the first order
        self.unified = bool(margin or unified)
        probes = {}
        for sym, m in sorted(ex.markets.items()):
            if m.get("swap") and m.get("linear") and m.get("active") is not False:
                probes.setdefault(m.get("settle"), sym)
        modes = await asyncio.gather(*(self._position_rows(ex, s) for s in probes.values()))
        if any(self._hedged(rows) for rows in modes):
            raise hedge_mode_refusal("bybit", "Derivatives → Settings → Position Mode → One-Way, or "
                                              "POST /v5/position/switch-mode mode=0")
        if self.unified and probes:
            await self._account_margin_mode(ex, next(iter(probes.values())))

    async def _account_margin_mode(self, ex: ccxt.Exchange, probe: str) -> None:
        """A unified account has one margin mode for all its positions."""
        if (await ex.fetch_margin_mode(probe)).get("marginMode") == self.margin_mode:
            return
        await ex.set_margin_mode(self.margin_mode)
        got = (await ex.fetch_margin_mode(probe)).get("marginMode")
        if got != self.margin_mode:
            raise self._wrong("bybit", "account", "margin mode", got, self.margin_mode)

    async def _set_up(self, ex, symbol):
        rows = await self._position_rows(ex, symbol)
        if self._hedged(rows):
            raise hedge_mode_refusal("bybit", f"for {symbol}: POST /v5/position/switch-mode mode=0")
        if not self.unified:
            try:  # a classic account sets margin mode per symbol, together with leverage
                await ex.set_margin_mode(self.margin_mode, symbol, {"leverage": self.leverage})
            except ccxt.MarginModeAlreadySet:
                pass
        if self._leverage(rows) == self.leverage:
            return
        try:
            await ex.set_leverage(self.leverage, symbol)
        except ccxt.BadRequest as e:
            if venue_code(e) != BYBIT_LEVERAGE_UNCHANGED:
                raise
        got = self._leverage(await self._position_rows(ex, symbol))
        if got != self.leverage:
            raise self._wrong("bybit", symbol, "leverage", got, self.leverage)

    @staticmethod
    async def _position_rows(ex: ccxt.Exchange, symbol: str) -> list[dict]:
        """Bybit answers a symbol's position row even when flat (position/list: "If symbol
        passed, it returns data regardless of having position or not")."""
        return [p.get("info") or {} for p in await ex.fetch_positions([symbol], {"category": "linear"})]

    @staticmethod
    def _hedged(rows: list[dict]) -> bool:
        return any(str(r.get("positionIdx", "0")) in ("1", "2") for r in rows)

    @staticmethod
    def _leverage(rows: list[dict]) -> Decimal | None:
        return next((dec(r.get("leverage")) for r in rows if r.get("leverage")), None)


def account_setup(venue_id: str, leverage: int, margin_mode: str) -> AccountSetup:
    kind = BybitAccount if venue_id == BybitLinear.ccxt_id else BinanceAccount
    return kind(leverage, margin_mode)
