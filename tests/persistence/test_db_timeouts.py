"""PostgreSQL statement and lock timeouts: a database call that takes too long fails that one
actor's operation, the supervisor restarts it, and no other position waits (a hung
DB call must never freeze the whole wave loop)."""
from __future__ import annotations

from decimal import Decimal

import psycopg
import pytest
from loguru import logger
from sqlalchemy import select
from sqlalchemy.engine import make_url

from core.faults import FaultRule
from persistence.models import PositionRow
from tests.support.helpers import SYM, wait_for, wave
from tests.support.recovery_checks import wait_agreed

BTC, ETH = SYM["BTC"], SYM["ETH"]
FAST_DB = ("deadlines.db_call_s=0.5", "deadlines.venue_call_s=2", "deadlines.operation_s=5",
           "supervisor.max_restarts=50")  # restarts fail while the lock is held: no escalation


@pytest.fixture
def pg_service(start_service, pg_cluster):
    url = pg_cluster.create_database()
    svc = start_service(*FAST_DB, db_url=url)
    svc.submit(wave("w1", (BTC, "long", 0.9), (ETH, "long", 0.8)), "t")
    wait_for(lambda: svc.stats.waves, what="wave")
    assert svc.stats.waves[0].outcomes == {"protected": 2}
    return svc, url


@pytest.fixture
def warnings_seen():
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(m.record["message"]), level="WARNING")
    yield lines
    logger.remove(sink)


def row(svc, symbol: str) -> PositionRow:
    with svc.db.tx("db_read") as tx:
        return tx.scalars(select(PositionRow).where(PositionRow.symbol == symbol)).one()


def test_a_write_blocked_by_a_row_lock_fails_at_lock_timeout_and_is_restarted(pg_service, warnings_seen):
    svc, url = pg_service
    btc = row(svc, BTC)
    u = make_url(url)
    with psycopg.connect(host=u.query["host"], user="postgres", dbname=u.database, connect_timeout=5) as other:
        # an operator's session holds BTC's row (SELECT … FOR UPDATE in an open transaction)
        other.execute("SELECT id FROM positions WHERE id = %s FOR UPDATE", (btc.id,))
        # ticks past activation arm the trailing stops: a step each must write (price-only
        # ticks are not persisted)
        svc.market_data.on_tick(BTC, btc.activation_price + Decimal("0.1"))  # BTC's write now blocks
        svc.market_data.on_tick(ETH, row(svc, ETH).activation_price + Decimal("0.01"))
        wait_for(lambda: row(svc, ETH).trailing_activated, timeout=5,
                 what="ETH's step written while BTC's row is locked")
        wait_for(lambda: svc.supervisor.stats.restarts >= 1, timeout=5, what="BTC's failed write restarted")
        other.rollback()
    reasons = [line for line in warnings_seen if btc.id in line and "restart 1 of" in line]
    assert reasons and "lock timeout" in reasons[0] and "overran its deadline" not in reasons[0]
    wait_for(lambda: (r := row(svc, BTC)).epoch > btc.epoch and r.phase == "trailing", what="BTC restored")
    assert row(svc, ETH).epoch == 1  # untouched by BTC's trouble
    assert not svc.supervisor.escalated
    wait_agreed(svc.db, svc.gateway.engine)


def test_a_statement_past_statement_timeout_fails_and_is_restarted(pg_service, warnings_seen):
    svc, _url = pg_service
    btc = row(svc, BTC)
    # the next write of BTC runs a 3 s statement on the server; statement_timeout is 0.5 s
    svc.db_faults.add(FaultRule("latency", op="db_write", symbols=[BTC], latency_ms=3000, times=1))
    svc.market_data.on_tick(BTC, btc.activation_price + Decimal("0.1"))  # arms the trailing stop: a write
    wait_for(lambda: svc.supervisor.stats.restarts >= 1, timeout=5, what="BTC's slow statement restarted")
    reasons = [line for line in warnings_seen if btc.id in line and "restart 1 of" in line]
    assert reasons and "statement timeout" in reasons[0]
    wait_for(lambda: (r := row(svc, BTC)).epoch > btc.epoch and r.phase == "trailing", what="BTC restored")
    assert row(svc, ETH).epoch == 1
    wait_agreed(svc.db, svc.gateway.engine)
