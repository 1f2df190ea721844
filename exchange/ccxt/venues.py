"""The venues the ccxt adapter can trade, by ccxt id.

What differs between them lives in one module each (`binance`, `bybit`) on the shared base
(`venue_base`); the names importers have always taken from here are re-exported.
"""
from __future__ import annotations

from exchange.ccxt.binance import BinanceUsdm
from exchange.ccxt.bybit import BybitLinear
from exchange.ccxt.venue_base import Order, Venue, dec, first_dec, order_fee, parse_balance

__all__ = ["VENUES", "BinanceUsdm", "BybitLinear", "Order", "Venue", "dec", "first_dec", "order_fee",
           "parse_balance"]

VENUES: dict[str, type[Venue]] = {"binanceusdm": BinanceUsdm, "bybit": BybitLinear}
