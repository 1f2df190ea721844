"""Wave validation against hostile input: hypothesis-generated JSON and wave-shaped messages
with bad fields. parse_wave may only ever raise WaveRejected; a signal is accepted exactly
when all its fields are good; whatever it lets through, SQLite and a real PostgreSQL store."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from core.types import Side
from persistence.db import Database
from persistence.models import SignalRow, WaveRow
from persistence.schema import ensure_current
from persistence.waves import WaveStore
from signals.wave import MAX_SCORE, WaveRejected, parse_wave
from tests.support.hostile import MARKETS, dumps, json_any, signal_fields

NOW = 1_800_000_000.0


def _stored_ok(text: str, limit: int) -> None:
    """What goes into a column: bounded, UTF-8 encodable, no NUL (PostgreSQL refuses it)."""
    assert len(text) <= limit and "\x00" not in text
    text.encode("utf-8")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(msg=json_any)
def test_arbitrary_json_is_rejected_with_a_reason_and_nothing_else_escapes(msg):
    try:
        w = parse_wave(dumps(msg), markets=MARKETS, now=NOW)
    except WaveRejected as e:
        assert e.reason and isinstance(e.reason, str)
        e.reason.encode("utf-8")
        return
    # only a dict carrying a usable wave_id and non-empty signals list gets this far
    assert isinstance(msg, dict) and isinstance(msg["signals"], list) and msg["signals"]
    for s in w.signals:
        assert s.reason or (s.symbol in MARKETS and s.side is not None and s.score is not None)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sigs=st.lists(signal_fields(), min_size=1, max_size=8))
def test_a_signal_is_accepted_exactly_when_every_field_is_good(sigs):
    msg = {"wave_id": "w-1", "ts": NOW - 5, "signals": [f for f, *_ in sigs]}
    w = parse_wave(dumps(msg), markets=MARKETS, now=NOW)
    assert len(w.signals) == len(sigs)
    ids_seen: set[str] = set()  # an id repeated in a wave is a duplicate, whoever had it first
    expected_valid = []
    for fields, good, id_good in sigs:
        sid = str(fields.get("id")).strip()
        if good and sid not in ids_seen:
            expected_valid.append(sid)
        if id_good:
            ids_seen.add(sid)
    assert sorted(s.id for s in w.valid) == sorted(expected_valid)
    for s in w.signals:
        _stored_ok(s.id, 128)
        _stored_ok(s.symbol, 64)
        if s.reason is None:
            assert s.symbol in MARKETS and isinstance(s.side, Side)
            assert s.score.is_finite() and 0 <= s.score <= MAX_SCORE and s.rank >= 1
        else:
            assert s.rank == 0 and s.reason.strip()
            s.reason.encode("utf-8")
            assert "\x00" not in s.reason
    assert [s.rank for s in w.valid] == list(range(1, len(w.valid) + 1))
    assert all(a.score >= b.score for a, b in zip(w.valid, w.valid[1:]))


@pytest.mark.parametrize("raw, reason", [
    ("[" * 100_000 + "]" * 100_000, "not valid JSON: nested too deeply"),
    ('{"wave_id": "w", "signals": ' + "[" * 50_000 + "]" * 50_000 + "}", "not valid JSON: nested too deeply"),
    (b'{"wave_id": "w\xff", "signals": []}', "not valid JSON"),
    ("", "not valid JSON"),
    ('"just a string"', "a wave must be a JSON object, got str"),
    ('{"signals": [{}]}', "wave_id missing"),
    ('{"wave_id": "' + "w" * 49 + '", "signals": [{}]}', "wave_id must be 1–48 printable characters"),
    ('{"wave_id": "w\\u0000", "signals": [{}]}', "wave_id must be 1–48 printable characters"),
    ('{"wave_id": "w"}', "signals missing"),
    ('{"wave_id": "w", "signals": {"a": 1}}', "signals must be a list, got a JSON object"),
    ('{"wave_id": "w", "signals": []}', "wave has no signals"),
    ('{"wave_id": "w", "signals": [' + ",".join(["{}"] * 51) + "]}", "more than signals.max_wave_size=50"),
    ('{"wave_id": "w", "ts": NaN, "signals": [{}]}', "ts must be a finite, non-negative unix timestamp"),
    ('{"wave_id": "w", "ts": -1, "signals": [{}]}', "ts must be a finite, non-negative unix timestamp"),
    ('{"wave_id": "w", "ts": 1' + "0" * 400 + ', "signals": [{}]}', "ts must be a finite, non-negative"),
    ('{"wave_id": "w", "ts": "yesterday", "signals": [{}]}', "ts must be a unix timestamp in seconds"),
    ('{"wave_id": "w", "ts": 1000, "signals": [{}]}', "older than signals.max_age_s=900"),
    ('{"wave_id": "w", "ts": 1800000000000, "signals": [{}]}', "in the future (milliseconds instead of seconds"),
])
def test_wave_level_problems_name_their_reason(raw, reason):
    with pytest.raises(WaveRejected) as e:
        parse_wave(raw, markets=MARKETS, now=NOW)
    assert reason in e.value.reason


def _one(sig: dict) -> str | None:
    w = parse_wave(json.dumps({"wave_id": "w", "ts": NOW, "signals": [sig]}), markets=MARKETS, now=NOW)
    return w.signals[0].reason


@pytest.mark.parametrize("sig, reason", [
    ({"symbol": "BTC/USDT:USDT", "side": "long", "score": 1}, "signal 0: id missing"),
    ({"id": "a", "side": "long", "score": 1}, "symbol missing"),
    ({"id": "a", "symbol": "NOPE/USDT:USDT", "side": "long", "score": 1}, "unknown symbol 'NOPE/USDT:USDT' for this venue"),
    ({"id": "a", "symbol": "\ud800\x00", "side": "long", "score": 1}, "unknown symbol '\\ud800\\x00' for this venue"),
    ({"id": "a", "symbol": "BTC/USDT:USDT", "score": 1}, "side missing"),
    ({"id": "a", "symbol": "BTC/USDT:USDT", "side": "up", "score": 1}, "side must be long/short (or buy/sell), got 'up'"),
    ({"id": "a", "symbol": "BTC/USDT:USDT", "side": [[[[["long"]]]]], "score": 1}, "got a JSON list"),
    ({"id": "a", "symbol": "BTC/USDT:USDT", "side": "long"}, "score missing"),
    ({"id": "a", "symbol": "BTC/USDT:USDT", "side": "long", "score": -0.5}, "score must not be negative, got -0.5"),
    ({"id": "a", "symbol": "BTC/USDT:USDT", "side": "long", "score": "NaN"}, "score must be a finite number"),
    ({"id": "a", "symbol": "BTC/USDT:USDT", "side": "long", "score": 1e300}, "score must be at most 1000000000"),
    ({"id": "a", "symbol": "BTC/USDT:USDT", "side": "long", "score": True}, "score must be a number, got True"),
])
def test_signal_level_problems_name_their_reason(sig, reason):
    assert reason in (_one(sig) or "")


def test_deep_nesting_inside_a_signal_field_is_a_reason_not_a_recursion_error():
    deep: list = []
    for _ in range(900):  # below the decoder's limit, far beyond what repr() survives in a thread
        deep = [deep]
    for field in ("id", "symbol", "side", "score"):
        sig = {"id": "a", "symbol": "BTC/USDT:USDT", "side": "long", "score": 1, field: deep}
        assert "a JSON list" in _one(sig)


def test_duplicate_ids_within_a_wave_keep_the_first_and_reject_the_rest():
    w = parse_wave(json.dumps({"wave_id": "w", "ts": NOW, "signals": [
        {"id": "a", "symbol": "BTC/USDT:USDT", "side": "long", "score": 1},
        {"id": "a", "symbol": "ETH/USDT:USDT", "side": "long", "score": 2}]}), markets=MARKETS, now=NOW)
    assert [s.id for s in w.valid] == ["a"] and w.valid[0].symbol == "BTC/USDT:USDT"
    assert [s.reason for s in w.signals if s.reason] == ["duplicate signal id a in wave"]


# ---- whatever parse_wave lets through, the database stores ---------------------------------

def _pg_cluster():
    """A throwaway PostgreSQL 15 cluster on a Unix socket, owned by the postgres user."""
    if shutil.which("initdb") is None:
        pytest.skip("PostgreSQL binaries not installed")
    root = Path(tempfile.mkdtemp(prefix="wt-pg-"))
    shutil.chown(root, "postgres", "postgres")
    as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    data = root / "data"
    subprocess.run([*as_pg, "initdb", "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"],
                   check=True, capture_output=True, timeout=60)
    subprocess.run([*as_pg, "pg_ctl", "-D", str(data), "-w", "-t", "30", "-l", str(root / "log"), "-o",
                    f"-c listen_addresses='' -k {root} -c fsync=off -c full_page_writes=off", "start"],
                   check=True, capture_output=True, timeout=60)

    def stop() -> None:
        subprocess.run([*as_pg, "pg_ctl", "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True, timeout=30)
        shutil.rmtree(root, ignore_errors=True)
    return f"postgresql+psycopg://postgres@/postgres?host={root}", stop


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def store(request, tmp_path_factory):
    stop = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('hostile')}/w.db"
    else:
        url, stop = _pg_cluster()
    db = Database(url, call_timeout_s=5)
    ensure_current(db.engine, auto_create=True)
    yield WaveStore(db)
    db.dispose()
    if stop:
        stop()


_counter = iter(range(10**9))


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(sigs=st.lists(signal_fields(), min_size=1, max_size=6), junk=json_any, wave_level=st.booleans(),
       name=st.one_of(st.text(max_size=20), st.text(alphabet="abc-:", min_size=40, max_size=70)))
def test_the_database_stores_every_verdict_of_parse_wave(store, sigs, junk, wave_level, name):
    n = next(_counter)
    wave_id = f"{n}-{name}"  # unique per example, like a signal server's
    msg = {"wave_id": wave_id, "ts": time.time(), "signals": [f for f, *_ in sigs]} if not wave_level else junk
    try:
        w = parse_wave(dumps(msg), markets=MARKETS, source="hypothesis")
    except WaveRejected as e:
        wid = store.insert_rejected(e.wave_id, e.reason, "hypothesis")
        with store.db.tx("db_read") as tx:
            assert tx.get(WaveRow, wid).reason == e.reason
        return
    # the signal ids are global: make them unique per example, as a signal server does
    w = w.__class__(w.id, tuple(s.__class__(f"{n}-{s.id}"[:128], s.symbol, s.side, s.score, s.rank, s.reason)
                                for s in w.signals), w.ts, w.source, w.received_at)
    assert store.insert(w, 60) == []
    with store.db.tx("db_read") as tx:
        rows = {r.id: r for r in tx.scalars(select(SignalRow).where(SignalRow.wave_id == w.id))}
    assert set(rows) == {s.id for s in w.signals}
    for s in w.signals:
        assert rows[s.id].reason == s.reason and (rows[s.id].outcome == "rejected") == (s.reason is not None)
        if s.score is not None:
            assert rows[s.id].score == s.score
