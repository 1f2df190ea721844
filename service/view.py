"""The live view: a periodic status line and a compact table of open positions."""
from __future__ import annotations

import threading

from loguru import logger

from core.phases import Phase
from service.views import StatusSource


class StatusReporter:
    def __init__(self, svc: StatusSource, interval_s: float) -> None:
        self.svc, self.interval_s = svc, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="status", daemon=True)

    def start(self) -> None:
        if self.interval_s > 0:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                logger.info("status: {}", status_line(self.svc))
            except Exception:
                logger.exception("status line failed")


def status_line(svc: StatusSource) -> str:
    phases = svc.positions_view()
    open_n = sum(phases.values())
    trailing = phases.get(Phase.TRAILING, 0)
    sup = svc.supervisor
    return (f"waves {len(svc.stats.waves)} done | positions {open_n} open, {trailing} trailing"
            f"{'' if open_n == trailing else ' (' + ', '.join(f'{v} {k}' for k, v in sorted(phases.items()) if k != 'trailing') + ')'}"
            f" | restarts {sup.stats.restarts} | escalations {sup.stats.escalations}"
            f" | abandoned {sup.abandoned_alive()}"
            f"{money_note(svc)}"
            f"{signals_note(svc.signals_health())}")


def money_note(svc: StatusSource) -> str:
    """Today's realized P&L, the open positions' unrealized, the venue's equity (USDT)."""
    ledger = getattr(svc, "money", None)
    if ledger is None:
        return ""
    try:
        m = ledger.snapshot(timeout_s=2.0)
    except Exception as e:
        return f" | P&L unavailable ({type(e).__name__})"
    eq = "-" if m.equity is None else f"{m.equity:.2f}"
    return (f" | P&L today {m.today.net:+.2f} USDT ({m.today.trades} closed), unrealized "
            f"{m.unrealized:+.2f}, equity {eq}")


def signals_note(h: dict | None) -> str:
    """The websocket source's state, so a silent signal server shows in the status line."""
    if not h:
        return ""
    return (f" | signals {h['state']}, {h['received']} received, {h['rejected']} rejected,"
            f" {h['duplicates']} duplicates")
