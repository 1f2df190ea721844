"""Binance USD-M stream events for the fake venue: user-data stream and all-market mini tickers.

Shapes are Binance's documented ones; the page (and where there is one, the model of Binance's
connector SDK, binance-connector-python `derivatives_trading_usds_futures/websocket_streams`)
is named next to each.
"""
from __future__ import annotations

from decimal import Decimal

from core.position_types import Leg
from exchange.fakes.binance_wire import Child, market_id, s
from exchange.paper.engine import PaperOrder
from exchange.gateway import VenuePosition

# Algo order statuses of the ALGO_UPDATE event ("X"): NEW, CANCELED, TRIGGERING ("met the
# triggering condition and forwarded"), TRIGGERED ("placed into the matching engine"),
# FINISHED ("filled or canceled in the matching engine"), REJECTED, EXPIRED.


def algo_update(o: PaperOrder, algo_id: int, status: str, child: Child | None, now_ms: int,
                trigger_ms: int = 0) -> dict:
    """Event: Algo Order Update.
    https://developers.binance.com/docs/derivatives/usds-margined-futures/user-data-streams/Event-Algo-Order-Update
    SDK models `AlgoUpdate` / `AlgoUpdateO`: `ai` order id in the matching engine, `ap`/`aq`
    average price / executed quantity there, "only display when order is triggered and placed
    in matching engine"."""
    body = {
        "caid": o.cid, "aid": algo_id, "at": "CONDITIONAL",
        "o": "TRAILING_STOP_MARKET" if o.leg is Leg.TRAILING else "STOP_MARKET",
        "s": market_id(o.symbol), "S": o.side.upper(), "ps": "BOTH", "f": "GTC", "q": s(o.qty), "X": status,
        "ai": str(child.order_id) if child else "", "tp": s(o.stop_price), "p": "0", "V": "EXPIRE_MAKER",
        "wt": "CONTRACT_PRICE", "pm": "NONE", "cp": o.close_position, "pP": False, "R": not o.close_position, "tt": trigger_ms, "gtd": 0,
    }
    if child is not None:
        filled = status == "FINISHED" and child.status == "FILLED"
        body.update(ap=s(child.avg_price) if filled else "0", aq=s(child.qty) if filled else "0", act="MARKET")
    return {"e": "ALGO_UPDATE", "T": now_ms, "E": now_ms, "o": body}


def order_trade_update(order_id: int, cid: str, symbol: str, side: str, qty: Decimal, status: str,
                       filled: Decimal, avg: Decimal | None, reduce_only: bool, now_ms: int) -> dict:
    """Event: Order Update (ORDER_TRADE_UPDATE), a MARKET order of the matching engine.
    https://developers.binance.com/docs/derivatives/usds-margined-futures/user-data-streams/Event-Order-Update
    SDK models `OrderTradeUpdate` / `OrderTradeUpdateO`."""
    trade = status in ("FILLED", "PARTIALLY_FILLED")
    return {"e": "ORDER_TRADE_UPDATE", "E": now_ms, "T": now_ms, "o": {
        "s": market_id(symbol), "c": cid, "S": side.upper(), "o": "MARKET", "f": "GTC", "q": s(qty),
        "p": "0", "ap": s(avg) if trade else "0", "sp": "0", "x": "TRADE" if trade else status,
        "X": status, "i": order_id, "l": s(filled) if trade else "0", "z": s(filled),
        "L": s(avg) if trade else "0", "N": "USDT", "n": "0", "T": now_ms, "t": order_id if trade else 0,
        "b": "0", "a": "0", "m": False, "R": reduce_only, "wt": "CONTRACT_PRICE", "ot": "MARKET",
        "ps": "BOTH", "cp": False, "rp": "0", "pP": False, "si": 0, "ss": 0, "V": "EXPIRE_MAKER",
        "pm": "NONE", "gtd": 0,
    }}


def account_update(positions: list[VenuePosition], balance: Decimal, now_ms: int) -> dict:
    """Event: Balance and Position Update (ACCOUNT_UPDATE), reason ORDER.
    https://developers.binance.com/docs/derivatives/usds-margined-futures/user-data-streams/Event-Balance-and-Position-Update
    SDK models `AccountUpdate` / `AccountUpdateA` (`B` balances, `P` positions)."""
    return {"e": "ACCOUNT_UPDATE", "E": now_ms, "T": now_ms, "a": {
        "m": "ORDER",
        "B": [{"a": "USDT", "wb": s(balance), "cw": s(balance), "bc": "0"}],
        "P": [{"s": market_id(p.symbol), "pa": s(p.qty), "ep": s(p.entry_price), "bep": s(p.entry_price),
               "cr": "0", "up": "0", "mt": "cross", "iw": "0", "ps": "BOTH"} for p in positions],
    }}


def mini_tickers(prices: dict[str, Decimal], now_ms: int) -> list[dict]:
    """All Market Mini Tickers Stream (`!miniTicker@arr`): only the symbols that changed.
    https://developers.binance.com/docs/derivatives/usds-margined-futures/websocket-market-streams/All-Market-Mini-Tickers-Stream
    SDK model `AllMarketMiniTickersStreamResponseInner`."""
    return [{"e": "24hrMiniTicker", "E": now_ms, "s": market_id(sym), "c": s(p), "o": s(p), "h": s(p),
             "l": s(p), "v": "0", "q": "0"} for sym, p in prices.items()]
