"""What slow and hostile clients cost a running service (figures, not a test).

    .venv/bin/python benchmarks/hostile_clients.py [N_CONNECTIONS] [N_BAD_MESSAGES]

Starts a real service with its control plane (paper venue, SQLite in a temp dir), then:
N idle TCP connections to /metrics (threads added, how fast a scrape is refused and served
again after the deadline); N control connections dripping a byte every 0.2 s (how long an
operator waits to be served); and N_BAD_MESSAGES refused messages (rows and time per message).
"""
from __future__ import annotations

import socket
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from loguru import logger  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from control import protocol as p  # noqa: E402
from persistence.models import WaveRow  # noqa: E402
from tests.support.control_support import start_controlled, stop_controlled  # noqa: E402
from tests.support.helpers import make_config  # noqa: E402


def _status(url: str) -> int:
    try:
        return urllib.request.urlopen(url, timeout=10).status
    except urllib.error.HTTPError as e:
        return e.code


def _until(pred, timeout: float) -> float:
    t0 = time.monotonic()
    while not pred():
        if time.monotonic() - t0 > timeout:
            return float("nan")
        time.sleep(0.02)
    return time.monotonic() - t0


def metrics(plane, n: int) -> None:
    url = plane.metrics_url()
    host, port = urlsplit(url).hostname, urlsplit(url).port
    before = threading.active_count()
    conns = [socket.create_connection((host, port), timeout=10) for _ in range(n)]
    t0 = time.perf_counter()
    code = _status(url + "/healthz")
    refused_ms = (time.perf_counter() - t0) * 1000
    grown = threading.active_count() - before
    back = _until(lambda: _status(url + "/healthz") == 200, 60)
    for c in conns:
        c.close()
    print(f"metrics: {n} idle connections -> +{grown} threads; a scrape meanwhile got {code} in "
          f"{refused_ms:.1f} ms; served again after {back:.1f} s (deadline {plane.cfg.control.metrics_timeout_s:g} s)")


def control(plane, n: int) -> None:
    path = str(plane.lock.path)
    stop = threading.Event()

    def drip():
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(path)
            while not stop.is_set():
                try:
                    s.sendall(b"{")
                except OSError:
                    return
                stop.wait(0.2)
    drippers = [threading.Thread(target=drip, daemon=True) for _ in range(n)]
    for d in drippers:
        d.start()
    time.sleep(0.5)

    def served() -> bool:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(path)
            try:
                s.sendall(p.encode_request("health"))
            except OSError:
                pass
            return b'"ok": true' in s.makefile("rb").readline()
    waited = _until(served, 120)
    stop.set()
    print(f"control: {n} dripping clients (cap {plane.cfg.control.max_connections}) -> an operator served "
          f"after {waited:.1f} s (idle deadline {plane.cfg.control.idle_timeout_s:g} s)")


def flood(svc, n: int) -> None:
    t0 = time.perf_counter()
    for i in range(n):
        svc.submit(f"not json {i}", "bench")
    per_ms = (time.perf_counter() - t0) * 1000 / n
    with svc.db.tx("db_read") as tx:
        rows = tx.scalar(select(func.count()).select_from(WaveRow).where(WaveRow.status == "rejected"))
    print(f"flood: {n} refused messages -> {rows} rows, {per_ms:.2f} ms per message, "
          f"{svc.rejections.as_dict()['unrecorded']} counted only")


def main(n_conn: int, n_bad: int) -> None:
    logger.remove()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = make_config(Path(tmp), "control.metrics_port=0", "control.metrics_timeout_s=3",
                          "control.idle_timeout_s=3")
        svc, plane = start_controlled(cfg)
        try:
            metrics(plane, n_conn)
            control(plane, n_conn)
            flood(svc, n_bad)
        finally:
            stop_controlled(svc, plane)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 120, int(sys.argv[2]) if len(sys.argv) > 2 else 2000)
