"""ccxt exceptions → what the caller must do: retry, reconcile (unknown outcome), or stop.

The order of the checks is the point: OrderNotFound is a subclass of InvalidOrder, and every
network-level failure of a *write* (timeouts included, and Binance −1007) may hide an order
the venue accepted, so it becomes UnknownOutcome and is resolved by a lookup by client id —
except InvalidNonce (ccxt files it under NetworkError), whose request the venue refused unread.
"""
from __future__ import annotations

import asyncio
import re

import ccxt.async_support as ccxt

from core.text import printable
from exchange.gateway import NotSent, OrderNotFound, Rejected, Retryable, UnknownOutcome, VenueError

_CODE = re.compile(r'"(?:code|retCode)"\s*:\s*"?(-?\d+)')

# Venue codes whose meaning ccxt's class does not carry well enough for us.
DUPLICATE_CID = {"-4116", "110072"}  # Binance DUPLICATED_CLIENT_ORDER_ID; Bybit "OrderLinkedID is duplicate"


def venue_code(exc: BaseException) -> str | None:
    """The venue's own error code inside a ccxt message (`binanceusdm {"code":-2021,…}`)."""
    m = _CODE.search(str(exc))
    return m.group(1) if m else None


def classify(exc: BaseException, *, write: bool) -> VenueError:
    """Map one exception from a ccxt call to the gateway's error classes."""
    code = venue_code(exc)
    msg = f"{type(exc).__name__}: {printable(exc, 500)}"  # the venue's words: logged, stored, shown
    if isinstance(exc, VenueError):
        return exc
    if write and code in DUPLICATE_CID:
        # The client id is already taken by an open order: an earlier attempt got through.
        # Look it up and adopt it rather than calling the order refused.
        return _coded(UnknownOutcome(f"duplicate client order id, the order exists: {msg}"), code)
    if isinstance(exc, ccxt.OrderNotFound):
        return _coded(OrderNotFound(msg), code)
    if isinstance(exc, ccxt.InvalidNonce):  # Binance -1021, Bybit 10002: refused before it was read
        return _coded(NotSent(f"timestamp outside the venue's window (clock drift), not executed: {msg}"), code)
    if isinstance(exc, (ccxt.NetworkError, asyncio.TimeoutError, TimeoutError, ConnectionError)):
        return _coded((UnknownOutcome if write else Retryable)(msg), code)
    if isinstance(exc, ccxt.ExchangeError):  # InvalidOrder, InsufficientFunds, BadRequest, auth…
        return _coded(Rejected(msg), code)
    if isinstance(exc, ccxt.BaseError):  # OperationFailed, BadResponse: the venue could not say
        return _coded((UnknownOutcome if write else Retryable)(msg), code)
    raise exc


def _coded(err: VenueError, code: str | None) -> VenueError:
    err.code = int(code) if code and code.lstrip("-").isdigit() else None  # type: ignore[attr-defined]
    return err
