"""Recorded market data: OHLCV candles per symbol, read from the files traders already keep.

Layouts read (a file, or every such file under a directory):

- CSV with a header naming `timestamp` (or `date`, `time`, `open_time`, `datetime`), `open`,
  `high`, `low`, `close` and optionally `volume`, any case, any column order; timestamps in
  unix seconds, milliseconds, microseconds or ISO 8601 (naive means UTC).
- CSV without a header: Binance's public kline dumps (open time, open, high, low, close,
  volume, then columns that are ignored).
- JSON: Freqtrade's `<PAIR>-<tf>.json`, a list of `[ms, open, high, low, close, volume]`.
- Feather / Parquet (Freqtrade's `<PAIR>-<tf>[-futures].feather`: `date`, `open`, `high`,
  `low`, `close`, `volume`), through pyarrow (the `backtest` extra).

Trades (a file whose name has `-trades`): Freqtrade's `<PAIR>-trades.json[.gz]` (rows of
`[ms, id, type, side, price, amount, cost]`) and `-trades.feather` / `.parquet`, or a CSV with a
header naming a timestamp column, `price` and optionally `amount`. Each trade is one price of
the path, in time order.

The symbol is taken from the file name: `BTC_USDT_USDT-1m-futures.feather` is
`BTC/USDT:USDT`, `BTC_USDT-1m.json` (spot) is `BTC/USDT`, `BTCUSDT-1m-2024-05-01.csv` is
`BTC/USDT:USDT`; waves name symbols the same way. Several files of one symbol are joined; of
several intervals the finest is kept. Prices are Decimal from the file's own digits.
"""
from __future__ import annotations

import csv
import gzip
import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Iterable

MAX_PRICE = Decimal(10) ** 12
SUFFIXES = (".csv", ".json", ".json.gz", ".feather", ".parquet")
_TS_NAMES = ("timestamp", "date", "time", "open_time", "datetime", "ts")
_QUOTES = ("USDT", "USDC", "BUSD", "USD")


class DataError(ValueError):
    """Market data that cannot be used, worded for the operator: file, row, what is wrong."""


@dataclass(frozen=True, slots=True)
class Candle:
    ts: float  # open time, unix seconds
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal = Decimal(0)


@dataclass(frozen=True, slots=True)
class Series:
    """One symbol's candles (or trades, each a candle of one price), in time order, and their
    interval in seconds (0 for trades)."""

    symbol: str
    interval: float
    candles: tuple[Candle, ...]
    source: str
    kind: str = "candles"  # or "trades"

    @property
    def start(self) -> float:
        return self.candles[0].ts

    @property
    def end(self) -> float:
        return self.candles[-1].ts + self.interval


def symbol_of_file(path: Path) -> str:
    """`BTC_USDT_USDT-1m-futures.feather` → `BTC/USDT:USDT`; `BTCUSDT-1m.csv` → `BTC/USDT:USDT`."""
    name = path.name
    for suffix in sorted(SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    pair = name.split("-")[0]
    parts = pair.split("_")
    if len(parts) == 3:
        return f"{parts[0]}/{parts[1]}:{parts[2]}"
    if len(parts) == 2:
        return f"{parts[0]}/{parts[1]}"
    for q in _QUOTES:
        if pair.upper().endswith(q) and len(pair) > len(q):
            return f"{pair[: -len(q)].upper()}/{q}:{q}"
    return pair


def parse_ts(raw: object) -> float:
    """Unix seconds from seconds, milliseconds, microseconds or an ISO 8601 text."""
    if isinstance(raw, datetime):
        dt = raw
    else:
        text = str(raw).strip()
        try:
            value = float(text)
        except ValueError:
            try:
                dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                raise DataError(f"timestamp {text[:40]!r} is neither a number nor ISO 8601") from None
        else:
            if value > 1e14:
                return value / 1e6
            return value / 1000 if value > 1e11 else value
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def _price(raw: object, where: str, what: str) -> Decimal:
    try:
        d = raw if isinstance(raw, Decimal) else Decimal(repr(raw) if isinstance(raw, float) else str(raw).strip())
    except InvalidOperation:
        raise DataError(f"{where}: {what} {str(raw)[:40]!r} is not a number") from None
    if not d.is_finite() or d < 0 or d > MAX_PRICE:
        raise DataError(f"{where}: {what} {d} is out of range")
    return d


def make_candle(ts: object, o: object, h: object, low: object, c: object, v: object, where: str) -> Candle:
    candle = Candle(parse_ts(ts), _price(o, where, "open"), _price(h, where, "high"),
                    _price(low, where, "low"), _price(c, where, "close"),
                    _price(v if v not in (None, "") else 0, where, "volume"))
    if candle.low <= 0:
        raise DataError(f"{where}: low {candle.low} is not positive")
    if not (candle.low <= min(candle.open, candle.close) and candle.high >= max(candle.open, candle.close)):
        raise DataError(f"{where}: high/low {candle.high}/{candle.low} do not contain open/close "
                        f"{candle.open}/{candle.close}")
    return candle


def read_csv(path: Path) -> list[Candle]:
    with path.open(newline="", encoding="utf-8") as fh:
        rows = csv.reader(fh)
        first = next(rows, None)
        if first is None:
            return []
        header = [c.strip().lower() for c in first]
        if any(h in _TS_NAMES for h in header):
            ts_col = next(header.index(h) for h in _TS_NAMES if h in header)
            try:
                cols = [header.index(k) for k in ("open", "high", "low", "close")]
            except ValueError:
                raise DataError(f"{path}: header {first} lacks one of open, high, low, close") from None
            vol = header.index("volume") if "volume" in header else None
            pick = [ts_col, *cols]
            body: Iterable[list[str]] = rows
            start = 2
        else:  # Binance kline dump: open_time, open, high, low, close, volume, …
            pick, vol, start = [0, 1, 2, 3, 4], 5, 1
            body = [first, *rows]
        out = []
        for n, row in enumerate(body, start):
            if not row or not "".join(row).strip():
                continue
            where = f"{path.name}:{n}"
            try:
                ts, o, h, low, c = (row[i] for i in pick)
                v = row[vol] if vol is not None and vol < len(row) else 0
            except IndexError:
                raise DataError(f"{where}: expected at least {max(pick) + 1} columns, got {len(row)}") from None
            out.append(make_candle(ts, o, h, low, c, v, where))
        return out


def read_json(path: Path) -> list[Candle]:
    rows = json.loads(path.read_text(encoding="utf-8"), parse_float=Decimal)
    if not isinstance(rows, list):
        raise DataError(f"{path}: expected a JSON list of [ms, open, high, low, close, volume]")
    out = []
    for n, row in enumerate(rows):
        if not isinstance(row, list) or len(row) < 5:
            raise DataError(f"{path.name}[{n}]: expected [ms, open, high, low, close, volume]")
        out.append(make_candle(row[0], row[1], row[2], row[3], row[4], row[5] if len(row) > 5 else 0,
                               f"{path.name}[{n}]"))
    return out


def _arrow_table(path: Path):
    try:
        import pyarrow.feather as feather
        import pyarrow.parquet as parquet
    except ImportError:
        raise DataError(f"{path}: reading Feather/Parquet needs pyarrow "
                        "(.venv/bin/pip install -e '.[backtest]')") from None
    return parquet.read_table(path) if path.suffix.lower() == ".parquet" else feather.read_table(path)


def read_arrow(path: Path) -> list[Candle]:
    table = _arrow_table(path)
    cols = {c.lower(): c for c in table.column_names}
    ts_name = next((cols[h] for h in _TS_NAMES if h in cols), None)
    if ts_name is None or not all(k in cols for k in ("open", "high", "low", "close")):
        raise DataError(f"{path}: columns {table.column_names} lack date/open/high/low/close")
    data = {k: table.column(cols[k]).to_pylist() for k in ("open", "high", "low", "close")}
    vols = table.column(cols["volume"]).to_pylist() if "volume" in cols else [0] * table.num_rows
    stamps = table.column(ts_name).to_pylist()
    return [make_candle(stamps[i], data["open"][i], data["high"][i], data["low"][i], data["close"][i],
                        vols[i], f"{path.name}[{i}]") for i in range(table.num_rows)]


def trade(ts: object, price: object, amount: object, where: str) -> Candle:
    p = _price(price, where, "price")
    if p <= 0:
        raise DataError(f"{where}: price {p} is not positive")
    return Candle(parse_ts(ts), p, p, p, p, _price(amount if amount not in (None, "") else 0, where, "amount"))


def read_trades(path: Path) -> list[Candle]:
    name = path.name.lower()
    if name.endswith((".json", ".json.gz")):
        raw = gzip.decompress(path.read_bytes()) if name.endswith(".gz") else path.read_bytes()
        rows = json.loads(raw, parse_float=Decimal)
        if not isinstance(rows, list) or any(not isinstance(r, list) or len(r) < 6 for r in rows):
            raise DataError(f"{path}: expected a JSON list of [ms, id, type, side, price, amount, …]")
        return [trade(r[0], r[4], r[5], f"{path.name}[{n}]") for n, r in enumerate(rows)]
    if name.endswith(".csv"):
        with path.open(newline="", encoding="utf-8") as fh:
            rows = csv.reader(fh)
            header = [c.strip().lower() for c in next(rows, [])]
            ts_col = next((header.index(h) for h in _TS_NAMES if h in header), None)
            if ts_col is None or "price" not in header:
                raise DataError(f"{path}: a trades CSV needs a header with a timestamp column and price")
            pc, ac = header.index("price"), header.index("amount") if "amount" in header else None
            return [trade(r[ts_col], r[pc], r[ac] if ac is not None else 0, f"{path.name}:{n}")
                    for n, r in enumerate(rows, 2) if r]
    table = _arrow_table(path)
    cols = {c.lower(): c for c in table.column_names}
    ts_name = next((cols[h] for h in _TS_NAMES if h in cols), None)
    if ts_name is None or "price" not in cols:
        raise DataError(f"{path}: columns {table.column_names} lack timestamp/price")
    stamps, prices = table.column(ts_name).to_pylist(), table.column(cols["price"]).to_pylist()
    amounts = table.column(cols["amount"]).to_pylist() if "amount" in cols else [0] * table.num_rows
    return [trade(stamps[i], prices[i], amounts[i], f"{path.name}[{i}]") for i in range(table.num_rows)]


def is_trades(path: Path) -> bool:
    return "-trades" in path.name.lower()


def read_file(path: Path) -> list[Candle]:
    name = path.name.lower()
    if is_trades(path):
        return read_trades(path)
    if name.endswith(".csv"):
        return read_csv(path)
    if name.endswith(".json"):
        return read_json(path)
    if name.endswith((".feather", ".parquet")):
        return read_arrow(path)
    raise DataError(f"{path}: unknown format (read: {', '.join(SUFFIXES)})")


def _interval(candles: list[Candle], where: str) -> float:
    gaps = [b.ts - a.ts for a, b in zip(candles, candles[1:]) if b.ts > a.ts]
    if not gaps:
        if len(candles) == 1:
            return 60.0
        raise DataError(f"{where}: every candle has the same timestamp")
    return min(gaps)


def load(data: str | Path) -> dict[str, Series]:
    """Every symbol's candles under `data` (a file or a directory)."""
    root = Path(data).expanduser()
    if root.is_dir():
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.name.lower().endswith(SUFFIXES))
    elif root.is_file():
        files = [root]
    else:
        raise DataError(f"no such file or directory: {root}")
    if not files:
        raise DataError(f"{root}: no market data files ({', '.join(SUFFIXES)})")
    by_symbol: dict[str, dict[float, list[tuple[Path, list[Candle]]]]] = defaultdict(lambda: defaultdict(list))
    for f in files:
        candles = read_file(f)
        if candles:
            candles.sort(key=lambda c: c.ts)
            interval = 0.0 if is_trades(f) else _interval(candles, f.name)
            by_symbol[symbol_of_file(f)][interval].append((f, candles))
    out: dict[str, Series] = {}
    for sym, by_interval in by_symbol.items():
        interval = min(by_interval)  # trades (0) before any candles: the finest there is
        parts = by_interval[interval]
        if interval == 0:  # trades: several at one millisecond are all real
            rows = tuple(sorted((c for _f, cs in parts for c in cs), key=lambda c: c.ts))
        else:
            merged = {c.ts: c for _f, cs in parts for c in cs}  # a candle in two files counts once
            rows = tuple(merged[t] for t in sorted(merged))
        out[sym] = Series(sym, interval, rows, ", ".join(str(f) for f, _c in parts),
                          "trades" if interval == 0 else "candles")
    return out
