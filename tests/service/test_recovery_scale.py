"""A large recovery shows its progress, and one stuck position does not hold the others back."""
from __future__ import annotations

import threading

from sqlalchemy import func, select

from loguru import logger

from exchange.paper.engine import PaperEngine
from exchange.paper.store import PaperStore
from exchange.paper.universe import paper_markets, start_prices
from persistence.db import Database
from persistence.models import EventRow, PositionRow
from service.app import Service, position_params
from tests.support.helpers import make_config, wait_for
from tests.support.recovery_checks import wait_agreed
from tests.support.seeding import seed_open_positions

N = 150


def test_large_recovery_reports_progress_and_reprotects_every_position(start_service, db_url, tmp_path):
    start_service(db_url=db_url).shutdown()  # creates the schema
    cfg = make_config(tmp_path, db_url=db_url)
    markets = paper_markets(N)
    venue = PaperEngine(markets, start_prices(N), store=PaperStore(tmp_path / "paper-venue.db"))
    symbols = [s for s in markets if s.startswith("SYN")]
    db = Database(db_url)
    ids = seed_open_positions(db, venue, symbols, position_params(cfg), markets, missing_stop_every=10)
    venue.close()
    db.dispose()

    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(m.record["message"]), level="INFO")
    stuck = symbols[6]  # its reconciliation hangs: the other positions must not wait for it
    svc = Service(make_config(tmp_path, f"paper.extra_symbols={N}", "recovery.progress_every_s=0.05",
                              f'faults.actor=[{{kind="hang", op="recover", symbols=["{stuck}"], times=1}}]',
                              db_url=db_url))

    def release_when_the_rest_reconciled() -> None:
        wait_for(lambda: reconciled(svc.db) >= N - 1 and progress(lines), timeout=60,
                 what="the other positions reconciled while one hangs")
        svc.actor_faults.release()

    releaser = threading.Thread(target=release_when_the_rest_reconciled, daemon=True)
    releaser.start()
    try:
        svc.start(with_source=False)
    finally:
        logger.remove(sink)
    try:
        check_recovered(svc, lines, ids)
    finally:
        svc.actor_faults.release()
        svc.shutdown()


def reconciled(db: Database) -> int:
    with db.tx("db_read") as tx:
        return tx.scalar(select(func.count()).where(EventRow.kind == "reconciled"))


def progress(lines: list[str]) -> list[int]:
    """Positions reconciled so far, as each progress line said."""
    return [int(line.split()[1].split("/")[0]) for line in lines
            if line.startswith("recovery: ") and f"/{N} positions reconciled" in line]


def check_recovered(svc: Service, lines: list[str], ids: list[str]) -> None:
    rep = svc.recovery
    assert rep.restored == rep.reconciled == N and not rep.still_reconciling
    done = progress(lines)
    assert done == sorted(done) and 0 < done[-1] <= N - 1
    assert any(line.startswith(f"recovery: {N} restored, {N} reconciled") for line in lines)
    with svc.db.tx("db_read") as tx:
        assert tx.scalars(select(PositionRow.epoch).distinct()).all() == [2]
    wait_for(lambda: svc.positions_view() == {"trailing": N}, what=f"all {N} positions trailing")
    wait_agreed(svc.db, svc.gateway.engine)  # incl. the 15 whose stop had gone: re-placed
    with svc.db.tx("db_read") as tx:
        replaced = tx.scalars(select(PositionRow).where(PositionRow.id.in_(ids[9::10]))).all()
    assert len(replaced) == N // 10 and all("-s2-" in r.stop_cid for r in replaced)
