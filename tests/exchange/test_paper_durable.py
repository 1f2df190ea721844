"""The paper venue outlives the trader process: its account is written through to its own file
before any call returns, and a new engine on that file resumes exactly the same account."""
from __future__ import annotations

import tempfile
import threading
from decimal import Decimal
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.position_types import Leg
from exchange.gateway import OrderRequest, Rejected
from exchange.paper.engine import PaperEngine
from exchange.paper.store import PaperStore
from exchange.paper.universe import paper_markets, start_prices
from tests.support.helpers import SYM

BTC, ETH = SYM["BTC"], SYM["ETH"]
MARKETS, PRICES = paper_markets(), start_prices()


def engine(path: Path, seed: int = 42) -> PaperEngine:
    return PaperEngine(MARKETS, PRICES, seed=seed, store=PaperStore(path))


def req(cid: str, sym: str, leg: Leg, side: str, qty: str, **kw) -> OrderRequest:
    return OrderRequest(cid, sym, leg, side, Decimal(qty), **{k: Decimal(v) for k, v in kw.items()})


def test_a_restarted_venue_resumes_positions_orders_prices_and_pnl(tmp_path):
    e = engine(tmp_path / "venue.db")
    e.place(req("wt-a-e1-1", BTC, Leg.ENTRY, "buy", "0.010"))
    e.place(req("wt-a-s1-2", BTC, Leg.STOP, "sell", "0.010", stop_price="60000"))
    e.place(req("wt-a-t1-3", BTC, Leg.TRAILING, "sell", "0.010", activation="65500", callback_pct="1"))
    e.place(req("wt-b-e1-1", ETH, Leg.ENTRY, "sell", "0.1"))
    e.place(req("wt-b-s1-2", ETH, Leg.STOP, "buy", "0.1", stop_price="3500"))
    e.set_price(BTC, Decimal("66000"))  # arms the trailing stop: best 66000
    e.set_price(ETH, Decimal("3600"))  # ETH short stopped out: realized loss
    before = e.snapshot()
    e.close()

    again = engine(tmp_path / "venue.db")
    assert again.snapshot() == before
    assert {o.cid for o in again.open_orders()} == {"wt-a-s1-2", "wt-a-t1-3"}
    assert again.fetch("wt-b-s1-2").status == "filled"  # order history by client id survives
    assert again.account.realized_pnl < 0
    # the restored resting orders still work: the trailing stop fires 1 % under its best
    again.set_price(BTC, Decimal("65300"))
    assert again.fetch("wt-a-t1-3").status == "filled"
    assert again.positions() == []
    assert again.fetch("wt-a-s1-2").status == "open"  # reduce-only: left for the trader to cancel
    # and every fill is in the venue's trade history, once
    cids = [t[1] for t in again.store.trades()]
    assert cids == ["wt-a-e1-1", "wt-b-e1-1", "wt-b-s1-2", "wt-a-t1-3"]


def test_every_call_is_durable_before_it_returns(tmp_path):
    """What a second reader of the file sees right after a call returns is what a restart after
    `kill -9` at that instant would see."""
    e = engine(tmp_path / "venue.db")
    e.place(req("wt-a-e1-1", BTC, Leg.ENTRY, "buy", "0.010"))
    seen = PaperStore(tmp_path / "venue.db").load()
    assert seen.positions[BTC][0] == Decimal("0.010")
    assert [o["cid"] for o in seen.orders] == ["wt-a-e1-1"]
    e.place(req("wt-a-s1-2", BTC, Leg.STOP, "sell", "0.010", stop_price="60000"))
    e.cancel("wt-a-s1-2")
    seen = PaperStore(tmp_path / "venue.db").load()
    assert {o["cid"]: o["status"] for o in seen.orders} == {"wt-a-e1-1": "filled", "wt-a-s1-2": "cancelled"}
    try:
        e.place(req("wt-a-s1-3", BTC, Leg.STOP, "sell", "0.010", stop_price="70000"))
    except Rejected as err:
        assert "-2021" in str(err)
    assert "wt-a-s1-3" not in {o["cid"] for o in PaperStore(tmp_path / "venue.db").load().orders}


def test_concurrent_callers_leave_a_consistent_file(tmp_path):
    """Fifty positions' threads and the price feed mutate at once; the file ends equal to memory
    (group commit writes journal entries in mutation order)."""
    e = engine(tmp_path / "venue.db")
    syms = list(MARKETS)[:25]
    errors: list[BaseException] = []

    def trader(i: int) -> None:
        sym = syms[i % len(syms)]
        spec, price = MARKETS[sym], PRICES[sym]
        qty = spec.round_qty(Decimal(150) / price)
        side, exit_side = ("buy", "sell") if i % 2 == 0 else ("sell", "buy")
        try:
            e.place(OrderRequest(f"wt-p{i}-e1-1", sym, Leg.ENTRY, side, qty))
            for n in range(5):
                stop = spec.floor_price(price * Decimal("0.5" if side == "buy" else "1.5"))
                e.place(OrderRequest(f"wt-p{i}-s1-{n + 2}", sym, Leg.STOP, exit_side, qty, stop_price=stop))
                if n:
                    e.cancel(f"wt-p{i}-s1-{n + 1}")
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=trader, args=(i,)) for i in range(50)]
    stepper = threading.Thread(target=lambda: [e.step(0.25) for _ in range(40)])
    for t in [*threads, stepper]:
        t.start()
    for t in [*threads, stepper]:
        t.join(timeout=30)
    assert not errors
    before = e.snapshot()
    e.close()
    assert engine(tmp_path / "venue.db").snapshot() == before


ops = st.lists(st.tuples(st.sampled_from(["entry", "stop", "trail", "cancel", "price", "step"]),
                         st.sampled_from([BTC, ETH]), st.integers(-40, 40)), max_size=25)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops)
def test_restore_equals_memory_after_any_history(history):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "venue.db"
        e = engine(path, seed=3)
        for n, (op, sym, move) in enumerate(history):
            spec, price = MARKETS[sym], e.price(sym)
            qty = spec.round_qty(Decimal(150) / price)
            try:
                if op == "entry":
                    e.place(OrderRequest(f"wt-h-e1-{n}", sym, Leg.ENTRY, "buy" if move >= 0 else "sell", qty))
                elif op == "stop":
                    e.place(OrderRequest(f"wt-h-s1-{n}", sym, Leg.STOP, "sell", qty,
                                         stop_price=spec.floor_price(price * Decimal("0.99"))))
                elif op == "trail":
                    e.place(OrderRequest(f"wt-h-t1-{n}", sym, Leg.TRAILING, "sell", qty,
                                         activation=spec.floor_price(price * Decimal("1.002")),
                                         callback_pct=Decimal("0.5")))
                elif op == "cancel" and (open_ := e.open_orders(sym)):
                    e.cancel(open_[abs(move) % len(open_)].cid)
                elif op == "price":
                    e.set_price(sym, spec.nearest_price(price * (1 + Decimal(move) / 1000)))
                elif op == "step":
                    e.step(1.0)
            except Rejected:
                pass
        before = e.snapshot()
        e.close()
        assert engine(path, seed=3).snapshot() == before


def test_fees_and_the_wallet_survive_a_restart_and_an_old_file_gains_the_fee_column(tmp_path):
    import sqlite3

    from core.position_types import Leg
    from exchange.gateway import OrderRequest
    from exchange.paper.engine import PaperEngine
    from exchange.paper.store import PaperStore
    from exchange.paper.universe import paper_markets, start_prices

    path = tmp_path / "venue.db"
    old = sqlite3.connect(path)  # a file written before fees: orders without the column
    old.executescript("CREATE TABLE orders (cid TEXT PRIMARY KEY, symbol TEXT NOT NULL, leg TEXT NOT NULL, "
                      "side TEXT NOT NULL, qty TEXT NOT NULL, stop_price TEXT, activation TEXT, callback_pct TEXT, "
                      "status TEXT NOT NULL, filled_qty TEXT NOT NULL, avg_price TEXT, activated INTEGER NOT NULL, "
                      "best TEXT, seq INTEGER NOT NULL);")
    old.close()
    eng = PaperEngine(paper_markets(), start_prices(), store=PaperStore(path))
    o = eng.place(OrderRequest("wt-p1-e1-1", "BTC/USDT:USDT", Leg.ENTRY, "buy", Decimal("0.01")))
    before = eng.balance()
    eng.close()
    again = PaperEngine(paper_markets(), start_prices(), store=PaperStore(path))
    assert again.fetch(o.cid).fee == o.fee > 0
    assert again.account.fees_paid == o.fee and again.balance() == before
    again.close()
