"""The control plane mounted on one Service: socket server, health, metrics, settings.

The service mounts control (control/* imports nothing of the service: it is handed the
service as `control.ports.Operated`). Order of use (what `bin/trader run` does, and what
tests do)::

    plane = ControlPlane(cfg)      # claims the socket first: refuse before touching DB or venue
    svc = Service(cfg, metrics=plane.metrics)   # the positions' venue calls are timed
    plane.attach(svc)              # time database calls, replay persisted settings and pause
    plane.start()                  # socket, /metrics + /healthz, health line: up during recovery
    svc.start()                    # recovery, then waves
    ...
    plane.stop(); svc.shutdown()
"""
from __future__ import annotations

from typing import Any

from loguru import logger

from control.client import socket_path
from control.commands import ControlHandler
from control.server import ControlServer, SocketLock
from control.settings import SettingsStore
from core.config import Config
from core.files import private_dir
from service.app import Service
from service.health import HealthMonitor
from service.metrics import Metrics, MetricsServer, ServiceCollector, instrument_db


class ControlPlane:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        private_dir(cfg.run_dir)  # 0700, ours, not a symlink: before anything is created in it
        self.lock = SocketLock(socket_path(cfg))
        self.svc: Service | None = None
        self.metrics = Metrics(cfg.health.latency_window)
        self.health: HealthMonitor | None = None
        self.server: ControlServer | None = None
        self.http: MetricsServer | None = None
        self.http_error: str | None = None

    def attach(self, svc: Service) -> None:
        """Before `svc.start()`: the coordinator must start with the persisted defaults and pause."""
        if svc.metrics is not self.metrics:
            raise ValueError("build the service with this plane's metrics: Service(cfg, metrics=plane.metrics)")
        self.svc = svc
        instrument_db(svc.db.engine, self.metrics)
        self.settings = SettingsStore(svc.db.engine)
        changes, paused = self.settings.replay()
        for problem in self.settings.problems:  # never a reason not to start: loud, then the default
            logger.error("control: {}", problem)
            svc.health_notes.append(problem)
        if changes:
            svc.set_defaults(changes)
            logger.info("control: operator defaults restored: {}", {k: str(v) for k, v in changes.items()})
        if paused:
            svc.restore_paused()
            logger.warning("control: the service was paused by an operator; it stays paused (resume to trade)")
        self.health = HealthMonitor(svc, self.cfg.health, self.metrics, self.cfg.supervisor.restart_window_s)
        self.metrics.registry.register(ServiceCollector(svc, self.health))
        handler = ControlHandler(svc, self.settings, self.health, timeout_s=self.cfg.control.request_timeout_s,
                                 socket_path=str(self.lock.path), metrics_url=self.metrics_url)
        c = self.cfg.control
        self.server = ControlServer(self.lock, handler, max_frame_bytes=c.max_frame_bytes,
                                    max_connections=c.max_connections, idle_timeout_s=c.idle_timeout_s)

    def metrics_url(self) -> str | None:
        return self.http.url if self.http else None

    def start(self) -> None:
        if self.health is None or self.server is None:
            raise RuntimeError("attach a service before starting its control plane")
        health, server = self.health, self.server
        c = self.cfg.control
        if c.metrics_port >= 0:
            try:
                self.http = MetricsServer(self.metrics.registry, self._healthz, c.metrics_host, c.metrics_port,
                                          max_connections=c.metrics_max_connections, deadline_s=c.metrics_timeout_s)
                logger.info("metrics: {}/metrics and {}/healthz", self.http.url, self.http.url)
            except OSError as e:  # trading must not stop because a port is taken
                self.http_error = str(e)
                logger.error("metrics: could not listen on {}:{} ({}); no /metrics endpoint — set "
                             "control.metrics_port", c.metrics_host, c.metrics_port, e)
        health.start()
        server.start()

    def _healthz(self) -> tuple[str, dict[str, Any]]:
        assert self.health is not None  # served only once started, which needs it
        h = self.health.report()
        return h.status, {"status": h.status, "reasons": h.reasons, "open": h.open,
                          "trailing": h.trailing, "coverage": h.coverage,
                          "unprotected": len(h.unprotected), "paused": h.paused,
                          "recovering": h.recovering, "halted": h.halted}

    def stop(self) -> None:
        """Idempotent: the socket goes first, so no command reaches a service shutting down."""
        server, self.server = self.server, None
        if server is not None:
            server.stop()
        self.lock.release()
        if self.health is not None:
            self.health.stop()
        http, self.http = self.http, None
        if http is not None:
            http.stop()
