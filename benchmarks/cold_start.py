"""Cold start with many open paper positions: how long until every one is restored and reconciled.

Seeds a database and a paper venue file with N open, protected positions (as a previous run
leaves them; every 10th has lost its stop at the venue), then times `Service.start()`, which
returns once recovery has restored every position under a new epoch and reconciled it with the
venue. Not a test: prints figures.

    .venv/bin/python -m benchmarks.cold_start --positions 1000            # SQLite (default)
    .venv/bin/python -m benchmarks.cold_start --positions 1000 --pg       # a throwaway PostgreSQL 15
    .venv/bin/python -m benchmarks.cold_start --positions 1000 --db URL   # any database URL
    .venv/bin/python -m benchmarks.cold_start --positions 0 --latency-ms 2000   # an empty account, slow venue
    .venv/bin/python -m benchmarks.cold_start --positions 20 --latency-ms 2000 --closed-in-db
        # the venue holds them, the database records them closed: recovery adopts all of them
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

from loguru import logger
from sqlalchemy import update

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from exchange.paper.engine import PaperEngine  # noqa: E402
from exchange.paper.store import PaperStore  # noqa: E402
from exchange.paper.universe import paper_markets, start_prices  # noqa: E402
from persistence.db import Database  # noqa: E402
from persistence.models import PositionRow  # noqa: E402
from persistence.schema import upgrade  # noqa: E402
from service.app import Service, position_params  # noqa: E402
from tests.support.helpers import make_config  # noqa: E402
from tests.support.seeding import seed_open_positions  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--positions", type=int, default=1000)
    ap.add_argument("--db", help="database URL (default: a fresh SQLite file)")
    ap.add_argument("--pg", action="store_true", help="start a throwaway PostgreSQL cluster (tests/pg.py)")
    ap.add_argument("--latency-ms", type=float, default=0, help="paper venue latency per call")
    ap.add_argument("--closed-in-db", action="store_true",
                    help="record the seeded positions closed in the database (as a second owner left them)")
    ap.add_argument("--verbose", action="store_true", help="show the service's INFO log (progress lines)")
    args = ap.parse_args()
    logger.remove()
    logger.add(sys.stderr, level="INFO" if args.verbose else "WARNING")
    n = args.positions
    stop_pg = None
    if args.pg:
        from tests.support.pg import start_cluster
        cluster, stop_pg = start_cluster()
        args.db = cluster.create_database("bench")
    try:
        run(args, n)
    finally:
        if stop_pg:
            stop_pg()


def run(args, n: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        cfg = make_config(tmp, f"paper.extra_symbols={n}", f"risk.max_open_positions={max(n, 1)}",
                          f"paper.latency_ms={args.latency_ms}", db_url=args.db)
        db = Database(cfg.database.url)
        upgrade(db.engine)
        markets = paper_markets(n)
        venue = PaperEngine(markets, start_prices(n), store=PaperStore(tmp / "paper-venue.db"))
        t = time.perf_counter()
        symbols = [s for s in markets if s.startswith("SYN")][:n]
        seed_open_positions(db, venue, symbols, position_params(cfg), markets, missing_stop_every=10)
        seeded = time.perf_counter() - t
        if args.closed_in_db:
            with db.tx("db_write") as tx:
                tx.execute(update(PositionRow).values(phase="closed", active_symbol=None))
        orders_before = len(venue.account.orders)
        venue.close()
        db.dispose()

        t0 = time.perf_counter()
        svc = Service(cfg)
        built = time.perf_counter() - t0
        svc.start(with_source=False)
        total = time.perf_counter() - t0
        rep = svc.recovery
        protected = svc.positions_view()
        orders_sent = len(svc.gateway.engine.account.orders) - orders_before
        svc.shutdown()
    print(json.dumps({
        "positions": n, "db": cfg.database.url.split("://")[0], "latency_ms": args.latency_ms,
        "restored": rep.restored, "reconciled": rep.reconciled, "phases": dict(rep.phases),
        "still_reconciling": len(rep.still_reconciling), "adopted": len(rep.unknown_venue_positions),
        "stray_orders_cancelled": len(rep.stray_orders_cancelled), "orders_sent": orders_sent,
        "service_build_s": round(built, 3), "recovery_s": round(rep.seconds, 3),
        "start_to_reconciled_s": round(total, 3), "positions_by_phase_after": dict(protected),
        "seed_s": round(seeded, 2), "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
    }))


if __name__ == "__main__":
    main()
