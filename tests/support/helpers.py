"""Shared test helpers: configs for fast deterministic services, waves, and deadline waits."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

from core.config import Config, load_config


def make_config(tmp_path: Path, *overrides: str, db_url: str | None = None) -> Config:
    """A config for tests: its own SQLite file, no price feed (tests move prices), fast watchdog."""
    base = [
        f"database.url={db_url or 'sqlite:///' + str(tmp_path / 'test.db')}",
        "log.file=''", "log.status_interval_s=0",
        "paper.tick_interval_ms=0", "paper.latency_ms=0",
        "supervisor.watchdog_interval_s=0.02", "supervisor.backoff_base_s=0.01",
        "supervisor.backoff_max_s=0.05",
        "protection.retry_backoff_s=0.01", "protection.replace_min_interval_s=0",
        # These service tests rehearse the after-fill protocol's faults (a stop failing once the
        # entry has filled); the window-closing protocols have their own, tests/core/test_entry_protocol*.
        "protection.entry_mode='after_fill'",
        f"run_dir={tmp_path}",
        # the guardian reads the venue on its own clock: tests of it turn it on, others keep
        # their venue calls (and the fault rules they count) to themselves
        "guardian.enabled=false",
    ]
    cfg = load_config(None, base + list(overrides))
    cfg.log.file = None
    return cfg


def wave(wave_id: str, *signals: tuple[str, str, float], ts: float | None = None) -> str:
    """A wave message: signals as (symbol, side, score); ids are '<wave>-<n>'."""
    return json.dumps({
        "wave_id": wave_id, "ts": time.time() if ts is None else ts,
        "signals": [{"id": f"{wave_id}-{i}", "symbol": sym, "side": side, "score": score}
                    for i, (sym, side, score) in enumerate(signals)],
    })


def wait_for(predicate: Callable[[], object], timeout: float = 15.0, what: str = "condition"):
    """Wait until predicate() is truthy, failing with `what` at the deadline."""
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.01)


SYM = {name: f"{name}/USDT:USDT" for name in
       ("BTC", "ETH", "SOL", "XRP", "DOGE", "ADA", "AVAX", "LINK", "DOT", "LTC", "BNB", "SUI")}


class GateGateway:
    """Wraps a gateway: every entry order waits until the test opens `gate`, so a wave stays
    'opening' exactly as long as a test needs, with no timing involved."""

    def __init__(self, inner) -> None:
        import threading

        self.inner, self.gate = inner, threading.Event()

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def place_order(self, req, timeout):
        from core.position_types import Leg

        if req.leg is Leg.ENTRY:
            self.gate.wait(20)
        return self.inner.place_order(req, timeout)
