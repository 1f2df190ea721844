"""The backtest against exits worked out by hand from the real candles in tests/data.

Each expected number below is derived from the candle rows quoted next to it, with the
documented path order (rising candle: open → low → high → close; falling: open → high → low →
close; points at 0, ¼, ½ and ¾ of the day) and the documented rounding (stop-losses away from
the price, activation further into profit, fills at the level a stop is crossed at).
"""
from __future__ import annotations

import gzip
import json
import subprocess
from datetime import datetime, timezone
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, Decimal
from pathlib import Path

import pytest

from backtest.sim import Backtest
from backtest.waves import read_waves
from core.config import load_config
from exchange.paper.candles import load, read_file, symbol_of_file

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
D = Decimal


def ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


def floor(v: Decimal, tick: str) -> Decimal:
    return (v / D(tick)).to_integral_value(ROUND_FLOOR) * D(tick)


def ceil(v: Decimal, tick: str) -> Decimal:
    return (v / D(tick)).to_integral_value(ROUND_CEILING) * D(tick)


def lots(v: Decimal, lot: str) -> Decimal:
    return (v / D(lot)).to_integral_value(ROUND_DOWN) * D(lot)


def run(*overrides: str, waves: Path = DATA / "waves.jsonl"):
    cfg = load_config(None, ["paper.slippage_bps=0", *overrides])
    data = load(DATA / "candles")
    r = Backtest(cfg, read_waves(waves, set(data)), data, record=True).run()
    return {t.signal_id: t for t in r.trades}, r


def test_exits_match_the_hand_computation_long_and_short():
    trades, result = run()  # stop-loss 2 %, activation 1 %, callback 0.5 %, notional 200
    fee = D(5) / 10000

    # A. ASML long at the open of 2012-10-09 (o 42.68002 h 42.84996 l 41.89 c 41.99996, falling).
    a = trades["a-asml-long"]
    entry = D("42.68002")
    stop = floor(entry * D("0.98"), "0.00001")                     # 41.82641
    assert (a.entry_price, a.qty) == (entry, lots(D(200) / entry, "0.001"))  # 4.686
    # 10-09's low 41.89 stays above the stop; 10-10 (o 41.99996 h 42.03499 l 41.39004) falls
    # through it on the way from its high to its low (the ½ point): filled at the stop itself.
    assert (a.exit_price, a.exit_reason, a.exit_ts) == (stop, "stop-loss triggered", ts("2012-10-10T12:00"))
    assert a.pnl == (stop - entry) * a.qty
    assert a.fees == (entry + stop) * a.qty * fee and a.net == a.pnl - a.fees

    # B. 002032 short at the open of 2012-10-24 (o 10.56 h 10.56 l 10.33 c 10.34, falling).
    b = trades["b-002032-short"]
    assert b.entry_price == D("10.56") and b.qty == D("18.93")
    # Activation floor(10.56 × 0.99) = 10.45: armed on the fall to 10.33 (best 10.33); the
    # trailing stop sits at 10.33 × 1.005 = 10.38165. 10-25 (o 10.35 h 10.45 l 10.22, falling)
    # rises from its open to its high (the ¼ point) through it: filled at the next tick up.
    assert (b.exit_price, b.exit_reason, b.exit_ts) == (D("10.39"), "trailing stop triggered",
                                                        ts("2012-10-25T06:00"))
    assert b.pnl == (D("10.56") - D("10.39")) * D("18.93")

    # C. ASML long at the open of 2012-10-30 (o 42.47998 l 42.47998 h 43.86998 c 43.54496, rising).
    c = trades["c-asml-long"]
    assert c.entry_price == D("42.47998") and c.qty == D("4.708")
    # Activation ceil(42.47998 × 1.01) = 42.90478, passed on the way to the high (best
    # 43.86998); on the way down to the close (¾) the price crosses 43.86998 × 0.995 = 43.6506301.
    trail = floor(D("43.86998") * D("0.995"), "0.00001")
    assert (c.exit_price, c.exit_reason, c.exit_ts) == (trail, "trailing stop triggered", ts("2012-10-30T18:00"))
    assert trades["c-asml-again"].status == "skipped"
    assert trades["c-asml-again"].reason == "ASML/EUR already has an open position"

    # D. 002032 short at the open of 2012-11-01 (o 9.99 l 9.95 h 10.24 c 10.17, rising): the
    # stop ceil(9.99 × 1.02) = 10.19 is crossed on the way from the low to the high (½).
    d = trades["d-002032-short"]
    assert d.qty == D("20.02")
    assert (d.exit_price, d.exit_reason, d.exit_ts) == (ceil(D("9.99") * D("1.02"), "0.01"), "stop-loss triggered",
                                                        ts("2012-11-01T12:00"))
    assert d.pnl == (D("9.99") - D("10.19")) * D("20.02") == D("-4.0040")
    assert trades["d-unknown"].status == "rejected"

    # Totals: realized equity steps at each exit; the drawdown is D's loss after C's gain.
    nets = [a.net, b.net, c.net, d.net]
    assert [e for _t, e in result.equity] == [sum(nets[:i + 1]) for i in range(4)]


def test_venue_latency_is_path_time():
    """With 6 h per call the entry arrives at the ¼ point (10-09's high, 42.84996); the stop,
    floor(42.84996 × 0.98) = 41.99296, arrives at the ½ point when the price (41.89) is
    already through it: the engine refuses it (-2021) and the position is closed at market
    when that order arrives, at the close point (41.99996)."""
    trades, _r = run("paper.latency_ms=21600000")
    a = trades["a-asml-long"]
    assert (a.entry_ts, a.entry_price) == (ts("2012-10-09T06:00"), D("42.84996"))
    assert a.outcome == "emergency_closed" and "-2021" in a.exit_reason
    assert (a.exit_ts, a.exit_price) == (ts("2012-10-09T18:00"), D("41.99996"))


def test_slippage_moves_fills_against_us():
    trades, _r = run("paper.slippage_bps=2")
    a = trades["a-asml-long"]
    entry = floor(D("42.68002") * D("1.0002"), "0.00001")  # a buy fills higher, on the tick below
    stop = floor(entry * D("0.98"), "0.00001")
    assert a.entry_price == entry
    assert a.exit_price == ceil(stop * D("0.9998"), "0.00001")  # a sell fills lower, on the tick above


def test_sweep_prints_one_result_per_value():
    out = subprocess.run([str(ROOT / "bin" / "trader"), "backtest", str(DATA / "waves.jsonl"), "--prices",
                          str(DATA / "candles"), "--set", "paper.slippage_bps=0",
                          "--sweep", "protection.trailing_callback_pct=0.3,0.5,1", "--json"],
                         capture_output=True, text=True, timeout=120, check=True)
    runs = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["settings"] for r in runs] == [{"protection.trailing_callback_pct": v} for v in ("0.3", "0.5", "1")]
    exits = [next(s for s in r["signals"] if s["signal"] == "c-asml-long")["exit"] for r in runs]
    # C's trailing stop from its best 43.86998, for each callback
    assert exits == [str(floor(D("43.86998") * (1 - D(cb) / 100), "0.00001")) for cb in ("0.3", "0.5", "1")]
    assert all({"net_pnl", "win_rate", "max_drawdown", "exposure", "avg_time_in_trade_s"} <= set(r["totals"])
               for r in runs)


def test_report_and_chart_are_written_next_to_each_other(tmp_path):
    subprocess.run([str(ROOT / "bin" / "trader"), "backtest", str(DATA / "waves.jsonl"), "--prices",
                    str(DATA / "candles"), "--out", str(tmp_path), "--chart", "c-asml-long"],
                   capture_output=True, text=True, timeout=120, check=True)
    html = (tmp_path / "chart.html").read_text()
    assert html.count("<svg") == 2 and "trailing stop" in html and "stop-loss" in html
    assert "src=" not in html and "href=" not in html  # self-contained: nothing to fetch
    assert "c-asml-long" in (tmp_path / "report.txt").read_text()
    assert json.loads((tmp_path / "report.json").read_text())["totals"]["trades"] == 4


ROWS = [(1700000000000, "100.5", "101", "99.5", "100", "12"), (1700000060000, "100", "100.25", "98", "99", "3")]


def _same(candles) -> None:
    assert [(c.ts, c.open, c.high, c.low, c.close, c.volume) for c in candles] == [
        (r[0] / 1000, *(D(x) for x in r[1:])) for r in ROWS]


def test_layouts_read(tmp_path):
    (tmp_path / "a.csv").write_text("Timestamp,Open,High,Low,Close,Volume\n"
                                    + "".join(",".join(map(str, r)) + "\n" for r in ROWS))
    (tmp_path / "b.csv").write_text("".join(",".join(map(str, r)) + ",0,0,0,0,0,0\n" for r in ROWS))  # Binance dump
    iso = [datetime.fromtimestamp(r[0] / 1000, timezone.utc).isoformat() for r in ROWS]
    (tmp_path / "c.csv").write_text("date,open,high,low,close\n" + "".join(
        f"{t},{','.join(r[1:5])}\n" for t, r in zip(iso, ROWS)))
    (tmp_path / "d.json").write_text(json.dumps([[r[0], *map(float, r[1:])] for r in ROWS]))
    for name in ("a.csv", "b.csv", "d.json"):
        _same(read_file(tmp_path / name))
    assert [c.ts for c in read_file(tmp_path / "c.csv")] == [r[0] / 1000 for r in ROWS]
    import pyarrow as pa  # the backtest extra; the test extra has it too
    import pyarrow.feather as feather
    import pyarrow.parquet as parquet
    table = pa.table({"date": pa.array([datetime.fromtimestamp(r[0] / 1000, timezone.utc) for r in ROWS],
                                       pa.timestamp("ms", tz="UTC")),
                      **{k: [float(r[i]) for r in ROWS] for i, k in enumerate(
                          ("open", "high", "low", "close", "volume"), 1)}})
    feather.write_feather(table, tmp_path / "BTC_USDT_USDT-1m-futures.feather")
    parquet.write_table(table, tmp_path / "e.parquet")
    _same(read_file(tmp_path / "BTC_USDT_USDT-1m-futures.feather"))
    _same(read_file(tmp_path / "e.parquet"))


@pytest.mark.parametrize("name, symbol", [("BTC_USDT_USDT-1m-futures.feather", "BTC/USDT:USDT"),
                                          ("ETH_BTC-1m.json", "ETH/BTC"),
                                          ("BTCUSDT-1m-2024-05-01.csv", "BTC/USDT:USDT")])
def test_symbols_from_file_names(name, symbol):
    assert symbol_of_file(Path(name)) == symbol


def test_bad_data_is_named(tmp_path):
    from exchange.paper.candles import DataError

    (tmp_path / "x.csv").write_text("timestamp,open,high,low,close\n1700000000,10,9,8,9.5\n")
    with pytest.raises(DataError, match=r"x.csv:2: high/low 9/8 do not contain open/close 10/9.5"):
        read_file(tmp_path / "x.csv")
    out = subprocess.run([str(ROOT / "bin" / "trader"), "backtest", str(DATA / "waves.jsonl"), "--prices",
                          str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "x.csv:2" in out.stderr
    assert "Traceback" not in out.stderr


def test_emulated_trailing_moves_the_stop_to_the_same_level():
    """Emulated, the service moves the stop-loss to floor(best × 0.995) as C's price makes
    its best (43.86998): the moved stop is what fills, at the same level as the native one."""
    trades, _r = run("protection.trailing_mode='emulated'", "protection.replace_min_interval_s=0")
    c = trades["c-asml-long"]
    assert (c.exit_price, c.exit_reason) == (floor(D("43.86998") * D("0.995"), "0.00001"), "stop-loss triggered")


def test_trades_are_a_path_too(tmp_path):
    """Recorded trades: each print is one price, walked from the one before. A long entered at
    100 has its stop at 98 (2 %); the print at 97.5 after 99 passes it: filled at 98."""
    start = 1_700_000_000
    prices = ["100", "100.4", "99", "97.5", "101"]
    rows = [[(start + 10 * i) * 1000, str(i), None, "buy", float(p), 1.0, float(p)] for i, p in enumerate(prices)]
    data = tmp_path / "data"
    data.mkdir()
    (data / "BTC_USDT_USDT-trades.json.gz").write_bytes(gzip.compress(json.dumps(rows).encode()))
    waves = tmp_path / "w.jsonl"
    waves.write_text(json.dumps({"wave_id": "t", "ts": start, "signals": [
        {"id": "t1", "symbol": "BTC/USDT:USDT", "side": "long", "score": 1}]}) + "\n")
    series = load(data)["BTC/USDT:USDT"]
    assert series.kind == "trades" and [c.close for c in series.candles] == [D(p) for p in prices]
    cfg = load_config(None, ["paper.slippage_bps=0"])
    r = Backtest(cfg, read_waves(waves, set(load(data))), load(data)).run()
    (t,) = r.trades
    assert (t.entry_price, t.exit_price, t.exit_reason, t.exit_ts) == (D(100), D(98), "stop-loss triggered", start + 30)
    (tmp_path / "ETH_USDT_USDT-trades.csv").write_text("timestamp,id,price,amount\n1700000000000,1,3400.5,0.2\n")
    assert [(c.ts, c.close, c.volume) for c in read_file(tmp_path / "ETH_USDT_USDT-trades.csv")] == [
        (1_700_000_000, D("3400.5"), D("0.2"))]


def test_lines_that_are_not_waves_are_rows_with_their_reason(tmp_path):
    waves = tmp_path / "w.jsonl"
    waves.write_text('{"wave_id": "x", "signals": [{"id": "1", "symbol": "ASML/EUR", "side": "long", "score": 1}]}\n'
                     "not json\n")
    _trades, r = run(waves=waves)
    assert [(t.line, t.status, t.reason.split(":")[0]) for t in r.trades] == [
        (1, "rejected", "a recorded wave needs its ts (unix seconds)"), (2, "rejected", "not valid JSON")]
