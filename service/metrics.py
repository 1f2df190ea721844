"""Metrics: venue and DB call latency, and a Prometheus endpoint on the loopback interface.

Venue calls are timed by wrapping the gateway the actors use; DB calls by SQLAlchemy's
cursor events, so neither the actors nor the stores know about metrics. Everything else
(coverage, restarts, outcomes) is read from the live service when Prometheus scrapes, by a
custom collector, so there is no second copy of the state to drift. Each service has its own
registry: two services in one process (tests) never share series.
"""
from __future__ import annotations

import json
import socket
import threading
import time
from collections import deque
from typing import Any, Callable, Protocol
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from loguru import logger
from prometheus_client import CollectorRegistry, Counter, Histogram, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from sqlalchemy import event
from sqlalchemy.engine import Engine

from control.bounded import BoundedMixIn
from control.replies import HealthReply
from exchange.gateway import Gateway, OrderNotFound, Rejected, Retryable, UnknownOutcome
from service.alerts import Alerts
from service.guardian import Guardian
from service.money import Ledger
from service.position_supervision import PositionSupervisor
from service.protection_gap import gap_histogram, venue_gaps

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30)


class LatencyWindow:
    """The last `size` durations and outcomes, for the p50/p99 the console shows."""

    def __init__(self, size: int) -> None:
        self._d: deque[tuple[float, bool]] = deque(maxlen=size)
        self._lock = threading.Lock()  # guards two counters for microseconds, never I/O
        self.calls = 0
        self.errors = 0

    def add(self, seconds: float, ok: bool = True) -> None:
        with self._lock:
            self._d.append((seconds, ok))
            self.calls += 1
            self.errors += 0 if ok else 1

    def quantile(self, q: float) -> float | None:
        xs = sorted(s for s, _ in list(self._d))
        return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else None

    def error_ratio(self) -> tuple[int, float]:
        items = list(self._d)
        return len(items), (sum(1 for _, ok in items if not ok) / len(items)) if items else 0.0


class Metrics:
    def __init__(self, window: int = 500) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.venue_seconds = Histogram("wavetrader_venue_call_seconds", "Venue call latency by operation",
                                       ["op"], buckets=_BUCKETS, registry=self.registry)
        self.venue_errors = Counter("wavetrader_venue_call_errors", "Venue calls that failed, by kind",
                                    ["op", "kind"], registry=self.registry)
        self.db_seconds = Histogram("wavetrader_db_call_seconds", "Database statement latency",
                                    buckets=_BUCKETS, registry=self.registry)
        self.db_errors = Counter("wavetrader_db_call_errors", "Database statements that failed",
                                 registry=self.registry)
        self.venue = LatencyWindow(window)
        self.db = LatencyWindow(window)

    def observe_venue(self, op: str, seconds: float, error: BaseException | None = None) -> None:
        self.venue_seconds.labels(op).observe(seconds)
        # a refused order is the venue working; only transport trouble counts as an error
        failed = isinstance(error, (Retryable, UnknownOutcome)) or (
            error is not None and not isinstance(error, (Rejected, OrderNotFound)))
        if error is not None:
            self.venue_errors.labels(op, type(error).__name__).inc()
        self.venue.add(seconds, not failed)

    def observe_db(self, seconds: float, ok: bool = True) -> None:
        self.db_seconds.observe(seconds)
        if not ok:
            self.db_errors.inc()
        self.db.add(seconds, ok)


class InstrumentedGateway:
    """The gateway the actors call, timing every call; everything else passes through."""

    _TIMED = ("price", "place_order", "cancel_order", "fetch_order", "open_orders", "positions", "balance")

    def __init__(self, inner, metrics: Metrics) -> None:
        self.inner, self.metrics = inner, metrics

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name not in self._TIMED:
            return attr

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                out = attr(*args, **kwargs)
            except BaseException as e:
                self.metrics.observe_venue(name, time.perf_counter() - t0, e)
                raise
            self.metrics.observe_venue(name, time.perf_counter() - t0)
            return out
        return timed


def instrument_db(engine: Engine, metrics: Metrics) -> None:
    """Time every statement on this engine (SQLAlchemy cursor events)."""

    @event.listens_for(engine, "before_cursor_execute")
    def _before(conn, cursor, statement, params, context, executemany):
        conn.info.setdefault("wt_t0", []).append(time.perf_counter())

    @event.listens_for(engine, "after_cursor_execute")
    def _after(conn, cursor, statement, params, context, executemany):
        starts = conn.info.get("wt_t0")
        if starts:
            metrics.observe_db(time.perf_counter() - starts.pop())

    @event.listens_for(engine, "handle_error")
    def _error(ctx):
        starts = ctx.connection.info.get("wt_t0") if ctx.connection is not None else None
        metrics.observe_db(time.perf_counter() - starts.pop() if starts else 0.0, ok=False)


class RunCounts(Protocol):
    @property
    def waves(self) -> list[Any]: ...
    @property
    def waves_rejected(self) -> int: ...


class ScrapeSource(Protocol):
    """What the scrape reads of the service besides the health report."""

    @property
    def supervisor(self) -> PositionSupervisor: ...
    @property
    def stats(self) -> RunCounts: ...
    @property
    def guardian(self) -> Guardian: ...
    @property
    def gateway(self) -> Gateway: ...
    @property
    def money(self) -> Ledger: ...
    @property
    def alerts(self) -> Alerts: ...


class HealthReports(Protocol):
    """service/health.py's monitor, as the scrape reads it."""

    def report(self) -> HealthReply: ...
    def outcomes(self) -> dict[str, int]: ...


class ServiceCollector:
    """Gauges and counters read from the live service at scrape time."""

    def __init__(self, svc: ScrapeSource, health: HealthReports) -> None:
        self.svc, self.health = svc, health

    def describe(self):
        return []  # computed at scrape time only

    def collect(self):
        h = self.health.report()
        sup = self.svc.supervisor
        yield _gauge("wavetrader_positions_open", "Positions holding exposure (open, protected, trailing)", h.open)
        yield _gauge("wavetrader_positions_protected", "Open positions with a resting stop-loss", h.protected)
        yield _gauge("wavetrader_positions_trailing", "Open positions with stop-loss and trailing stop", h.trailing)
        yield _gauge("wavetrader_trailing_coverage_ratio", "Trailing-stop coverage: trailing / open", h.coverage)
        yield _gauge("wavetrader_positions_unprotected", "Open positions without a resting stop", len(h.unprotected))
        yield _gauge("wavetrader_unprotected_max_seconds", "Longest time any position has been unprotected",
                     max((u.seconds for u in h.unprotected), default=0.0))
        yield _counter("wavetrader_supervisor_restarts", "Supervised restarts", sup.stats.restarts)
        yield _counter("wavetrader_supervisor_escalations", "Escalations past restart intensity", sup.stats.escalations)
        yield _gauge("wavetrader_abandoned_threads", "Abandoned (fenced) actor threads still alive", h.abandoned_alive)
        yield _counter("wavetrader_waves_completed", "Waves whose every signal has an outcome (this run)",
                       len(self.svc.stats.waves))
        yield _counter("wavetrader_waves_rejected", "Wave messages rejected as unusable (this run)",
                       self.svc.stats.waves_rejected)
        try:  # a database outage must not take the rest of the scrape down with it
            counts = self.health.outcomes()
        except Exception:
            counts = None
        if counts is not None:
            outcomes = GaugeMetricFamily("wavetrader_signal_outcomes",
                                         "Signals by final outcome (all time, from the DB)", labels=["outcome"])
            for k, v in sorted(counts.items()):
                outcomes.add_metric([k], v)
            yield outcomes
        state = GaugeMetricFamily("wavetrader_health", "1 for the current health status", labels=["status"])
        for s in ("healthy", "degraded", "critical"):
            state.add_metric([s], 1.0 if h.status == s else 0.0)
        yield state
        g = getattr(self.svc, "guardian", None)
        if g is not None:
            yield _counter("wavetrader_guardian_rounds", "Guardian rounds that read the venue", g.stats.rounds)
            yield _counter("wavetrader_guardian_read_failures", "Guardian rounds whose venue reads failed",
                           g.stats.read_failures)
            dis = CounterMetricFamily("wavetrader_guardian_disagreements",
                                      "Actors' view of protection contradicted by the venue (two rounds running)",
                                      labels=["kind"])
            for kind, n in sorted(g.stats.disagreements.items()):
                dis.add_metric([kind], n)
            yield dis
            yield _counter("wavetrader_guardian_emergency_orders", "Emergency stops and closes the guardian placed",
                           g.stats.emergency_stops + g.stats.emergency_closes)
            yield _gauge("wavetrader_guardian_max_unprotected_seconds",
                         "Longest a venue position was seen without a resting stop (this run)",
                         g.stats.max_unprotected_s)
        yield _gauge("wavetrader_paused", "1 while the service takes no new waves", 1.0 if h.paused else 0.0)
        if (gaps := venue_gaps(self.svc.gateway)) is not None:
            yield gap_histogram(gaps)
        yield from self._money()

    def _money(self):
        ledger, alerts = getattr(self.svc, "money", None), getattr(self.svc, "alerts", None)
        if alerts is not None:
            yield _counter("wavetrader_alerts_dropped", "Alerts dropped because their queue was full",
                           alerts.dropped)
            yield _counter("wavetrader_alerts_failed", "Alerts the endpoint did not accept", alerts.failed)
        if ledger is None:
            return
        try:  # the venue or the database may be down: the other series still go out
            m = ledger.snapshot(timeout_s=2.0)
        except Exception:
            return
        yield _gauge("wavetrader_realized_pnl_usdt", "Realized P&L net of fees, all time (closed positions)",
                     float(m.realized.net))
        yield _gauge("wavetrader_realized_pnl_today_usdt", "Realized P&L net of fees since midnight "
                     "(report.timezone)", float(m.today.net))
        yield _gauge("wavetrader_fees_usdt", "Fees paid by closed positions, all time", float(m.realized.fees))
        yield _gauge("wavetrader_unrealized_pnl_usdt", "Open positions at the latest price", float(m.unrealized))
        if m.balance is not None:
            yield _gauge("wavetrader_equity_usdt", "Account equity as the venue reports it", float(m.balance.equity))
            yield _gauge("wavetrader_balance_usdt", "Wallet balance as the venue reports it", float(m.balance.wallet))


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


_BUSY = b"HTTP/1.0 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class _BoundedWSGIServer(BoundedMixIn, WSGIServer):
    pass


class _BoundedWSGIServer6(_BoundedWSGIServer):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    timeout = 10  # per read; the server's deadline bounds the whole connection

    def log_message(self, *args) -> None:  # access logs would drown the service log
        pass

    def handle(self) -> None:
        try:
            super().handle()
        except (OSError, ValueError):  # a client that went away or was cut at its deadline
            pass

    def get_stderr(self):  # wsgiref writes application errors here; they go to the log instead
        return _LogStream()


class _LogStream:
    def write(self, text: str) -> None:
        if text.strip():
            logger.debug("metrics: {}", text.rstrip())

    def flush(self) -> None:
        pass


class MetricsServer:
    """`/metrics` (Prometheus text format) and `/healthz` (JSON; 503 when critical)."""

    def __init__(self, registry: CollectorRegistry, healthz: Callable[[], tuple[str, dict]],
                 host: str, port: int, *, max_connections: int = 8, deadline_s: float = 10.0) -> None:
        prom = make_wsgi_app(registry)

        def app(environ, start_response):
            path = environ.get("PATH_INFO", "")
            if path == "/metrics":
                return prom(environ, start_response)
            if path == "/healthz":
                status, body = healthz()
                code = "503 Service Unavailable" if status == "critical" else "200 OK"
                start_response(code, [("Content-Type", "application/json")])
                return [json.dumps(body, default=str).encode()]
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found: try /metrics or /healthz\n"]

        cls = _BoundedWSGIServer6 if ":" in host else _BoundedWSGIServer
        self._server = make_server(host, port, app, server_class=cls,
                                   handler_class=_QuietHandler)
        self._server.init_bounded(max_connections, deadline_s, _BUSY, "metrics-http")
        self.host, self.port = host, self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="metrics-http", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
