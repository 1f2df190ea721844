"""Alerts to the operator's phone: stops fired, emergency closes, positions that need an
operator, health gone critical, the daily loss limit hit.

Delivery is apprise's (Telegram, Discord, Slack, e-mail, webhooks: one URL each). Its URLs
come only from an environment variable (they carry tokens), never from a config file. Alerts
wait in a bounded queue drained by one thread of their own: a position's thread only ever
enqueues (never blocks), and when the queue is full the alert is dropped and counted, so a
dead endpoint can slow down nothing but the alerts. Each send is bounded by apprise's
connect and read timeouts (`cto`/`rto` on the URL, 4 s each by default).
"""
from __future__ import annotations

import os
import queue
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from loguru import logger

if TYPE_CHECKING:  # imported when alerts are configured, not at start
    import apprise

KINDS = ("stop_fired", "emergency_close", "needs_attention", "health_critical", "loss_limit")


@dataclass(frozen=True, slots=True)
class Alert:
    kind: str
    title: str
    body: str


def urls_from_env(name: str) -> list[str]:
    """Space- or comma-separated apprise URLs from the environment variable `name`."""
    raw = os.environ.get(name, "")
    return [u for u in raw.replace(",", " ").split() if u]


class Alerts:
    """Fire-and-forget alerts. Without URLs every call is a no-op (nothing is queued)."""

    def __init__(self, urls: list[str], *, queue_size: int = 100) -> None:
        self._q: queue.Queue[Alert | None] = queue.Queue(maxsize=queue_size)
        self.queued = self.sent = self.failed = self.dropped = 0
        self._apprise: apprise.Apprise | None = None
        self._thread: threading.Thread | None = None
        if urls:
            import apprise

            self._apprise = sender = apprise.Apprise()
            bad = [u for u in urls if not sender.add(u)]
            if bad:  # the URL itself is a secret: say how many, not which
                logger.error("alerts: {} of {} URLs not understood by apprise; those are ignored",
                             len(bad), len(urls))
            self._thread = threading.Thread(target=self._run, args=(sender,), name="alerts", daemon=True)
            self._thread.start()

    @property
    def enabled(self) -> bool:
        return self._thread is not None

    def notify(self, kind: str, title: str, body: str) -> bool:
        """Queue one alert; never blocks. False when it was dropped (queue full) or alerts are off."""
        if not self.enabled:
            return False
        try:
            self._q.put_nowait(Alert(kind, title, body))
        except queue.Full:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 100 == 0:
                logger.warning("alerts: queue full ({} waiting), {} alerts dropped so far; is the endpoint down?",
                               self._q.maxsize, self.dropped)
            return False
        self.queued += 1
        return True

    def depth(self) -> int:
        return self._q.qsize()

    def stats(self) -> dict[str, int]:
        return {"queued": self.queued, "sent": self.sent, "failed": self.failed, "dropped": self.dropped,
                "waiting": self.depth()}

    def close(self, timeout_s: float = 2.0) -> None:
        """Let what is queued go out for up to `timeout_s`; the thread is a daemon either way."""
        if self._thread is None:
            return
        try:
            self._q.put(None, timeout=timeout_s)
        except queue.Full:
            return
        self._thread.join(timeout_s)

    def _run(self, sender: apprise.Apprise) -> None:
        while (a := self._q.get()) is not None:
            try:
                ok = bool(sender.notify(title=a.title, body=a.body))
            except Exception as e:  # a plugin bug must not end the alert thread
                logger.warning("alerts: sending {} failed: {!r}", a.kind, e)
                ok = False
            if ok:
                self.sent += 1
            else:
                self.failed += 1
                logger.warning("alerts: {} not delivered ({})", a.kind, a.title)
