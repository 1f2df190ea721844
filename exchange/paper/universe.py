"""The paper venue's symbols: prices, tick and lot sizes shaped like Binance USD-M's."""
from __future__ import annotations

from decimal import Decimal

from core.types import MarketSpec

# base, start price, tick size, lot size, min notional (USDT)
_ROWS: tuple[tuple[str, str, str, str, str], ...] = (
    ("BTC", "65000", "0.1", "0.001", "100"),
    ("ETH", "3400", "0.01", "0.001", "20"),
    ("BNB", "590", "0.01", "0.01", "5"),
    ("SOL", "150", "0.01", "1", "5"),
    ("XRP", "0.52", "0.0001", "0.1", "5"),
    ("DOGE", "0.12", "0.00001", "1", "5"),
    ("ADA", "0.45", "0.0001", "1", "5"),
    ("AVAX", "28", "0.001", "1", "5"),
    ("LINK", "14", "0.001", "0.01", "5"),
    ("DOT", "6.5", "0.001", "0.1", "5"),
    ("LTC", "72", "0.01", "0.001", "20"),
    ("BCH", "380", "0.01", "0.001", "20"),
    ("TRX", "0.12", "0.00001", "1", "5"),
    ("ATOM", "7.2", "0.001", "0.01", "5"),
    ("NEAR", "5.1", "0.001", "1", "5"),
    ("APT", "8.4", "0.0001", "0.1", "5"),
    ("ARB", "0.78", "0.0001", "0.1", "5"),
    ("OP", "1.65", "0.0001", "0.1", "5"),
    ("SUI", "1.05", "0.0001", "0.1", "5"),
    ("FIL", "4.2", "0.001", "0.1", "5"),
    ("ALGO", "0.16", "0.0001", "0.1", "5"),
    ("NEO", "10.5", "0.001", "0.01", "5"),
    ("INJ", "22", "0.001", "0.1", "5"),
    ("TIA", "6.3", "0.0001", "1", "5"),
    ("SEI", "0.35", "0.0001", "1", "5"),
    ("WLD", "2.1", "0.0001", "1", "5"),
    ("FORM", "0.8132", "0.0001", "1", "5"),
    ("NMR", "16.5", "0.001", "0.01", "5"),
    ("SFP", "0.71", "0.0001", "1", "5"),
    ("ALICE", "0.95", "0.0001", "0.1", "5"),
    ("1000PEPE", "0.0095", "0.0000001", "1", "5"),
    ("1000RATS", "0.11", "0.00001", "1", "5"),
)


def symbol_of(base: str) -> str:
    return f"{base}/USDT:USDT"


def _rows(extra: int) -> list[tuple[str, str, str, str, str]]:
    """The real-looking symbols, plus `extra` synthetic ones (SYN0001…) for scale runs."""
    return [*_ROWS, *((f"SYN{i:04d}", "10", "0.001", "0.1", "5") for i in range(1, extra + 1))]


def paper_markets(extra: int = 0) -> dict[str, MarketSpec]:
    out = {}
    for base, _price, tick, lot, notional in _rows(extra):
        sym = symbol_of(base)
        out[sym] = MarketSpec(sym, Decimal(tick), Decimal(lot), Decimal(lot), Decimal(notional))
    return out


def start_prices(extra: int = 0) -> dict[str, Decimal]:
    return {symbol_of(base): Decimal(price) for base, price, *_ in _rows(extra)}
