"""The guardian: an independent watch over the venue's truth about our protection.

Every round (`guardian.interval_s`) it reads the venue's positions and resting orders —
two reads, issued together — and judges each position's protection from them alone
(service/venue_truth.py). Health, coverage and `wavetrader_unprotected_max_seconds` come from
this view, not from what the actors believe; where the two disagree for two rounds running it
is logged and counted. A position without a resting protective stop for longer than
`guardian.grace_s` makes health critical and, unless `guardian.emergency_stop = false`, the
guardian places a reduce-only stop itself (the position's recorded stop level, else
`protection.stop_loss_pct` from the venue's entry price; a market close if the price is
already through it) under its own client-id namespace, then has the supervisor restart the
position's actor, whose reconcile adopts that stop like any other of the position's stops.

It never blocks on the venue or the database: reads are bounded by `deadlines.venue_call_s`,
a read still hanging from an earlier round skips the round (counted), and each emergency
(service/guardian_emergency.py) runs on a thread of its own, one at a time per symbol.
"""
from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Callable

from loguru import logger

from core.config import Config
from core.phases import HELD_OPEN
from core.position_types import position_id_of
from core.types import MarketSpec
from exchange.gateway import Gateway
from persistence.db import Database
from service.guardian_emergency import Emergency
from service.position_supervision import PositionSupervisor
from service.venue_truth import Cover, assess

FLAT = "actor holds a position the venue does not"
LOOSENED = "native trailing stop replaced by a looser one at the venue"

# Request weight of one round and the venue's weight budget per minute, where the venue
# accounts requests by weight: Binance USD-M positionRisk (5) + openOrders and openAlgoOrders
# without a symbol (40 each), of 2,400 per minute.
ROUND_WEIGHT: dict[str, tuple[int, int]] = {"binanceusdm": (85, 2400)}


class ReadTimeout(TimeoutError):
    """A venue read did not answer within its deadline."""


@dataclass
class GuardianStats:
    rounds: int = 0
    read_failures: int = 0
    failing_rounds: int = 0  # consecutive failed rounds (0 once a round succeeds)
    last_error: str | None = None
    disagreements: Counter = field(default_factory=Counter)  # kind → confirmed episodes
    emergency_stops: int = 0
    emergency_closes: int = 0
    emergency_failures: int = 0
    restarts_requested: int = 0
    max_unprotected_s: float = 0.0  # the longest any venue position was seen without a stop
    max_unprotected_symbol: str | None = None


@dataclass(frozen=True)
class Naked:
    symbol: str
    position_id: str
    seconds: float


def effective_interval(cfg: Config) -> float:
    """`guardian.interval_s`, stretched where one round would spend more than the venue
    weight share the guardian may use."""
    g = cfg.guardian
    weight, per_min = ROUND_WEIGHT.get(cfg.exchange.name, (0, 0))
    if not weight:
        return g.interval_s
    return max(g.interval_s, 60.0 * weight / (g.max_budget_share * per_min))


class Guardian:
    """Watches the venue itself, on its own thread, through the gateway the positions use (the
    instrumented one: its calls are timed too); `supervisor` is whose children it judges."""

    def __init__(self, cfg: Config, gateway: Gateway, supervisor: PositionSupervisor,
                 markets: Mapping[str, MarketSpec], db: Database) -> None:
        self.cfg, self.gcfg = cfg, cfg.guardian
        self.gateway, self.supervisor, self.markets, self.db = gateway, supervisor, markets, db
        self.interval_s = effective_interval(cfg)
        self.stats = GuardianStats()
        self.covers: dict[str, Cover] = {}
        self.last_ok: float | None = None  # monotonic time of the last successful round
        self._naked_since: dict[str, float] = {}
        self._episodes: dict[tuple[str, str], int] = {}
        self.emergency = Emergency(self)
        self._trails: dict[str, tuple[str, Decimal | None]] = {}  # symbol → trailing cid, trigger
        self._pending_read: threading.Thread | None = None
        self._lock = threading.Lock()  # guards the view for readers (health); never held for I/O
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="guardian", daemon=True)

    # ---- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        if self.gcfg.enabled and not self._thread.is_alive():
            logger.info("guardian: reading the venue every {:g}s; grace {:g}s; emergency stops {}",
                        self.interval_s, self.gcfg.grace_s, "on" if self.gcfg.emergency_stop else "off")
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            t0 = time.monotonic()
            try:
                self.round()
            except Exception:  # the watch must outlive any one bad round
                logger.exception("guardian: round failed")
            self._stop.wait(max(0.0, self.interval_s - (time.monotonic() - t0)))

    # ---- one round ------------------------------------------------------------------------

    def round(self) -> bool:
        """Read the venue once, update the view, act on what has been naked too long."""
        t_read = time.monotonic()
        try:
            got = self._read({"positions": lambda t: self.gateway.positions(timeout=t),
                              "orders": lambda t: self.gateway.open_orders(None, timeout=t)})
        except Exception as e:
            with self._lock:
                self.stats.read_failures += 1
                self.stats.failing_rounds += 1
                self.stats.last_error = f"{type(e).__name__}: {e}"[:300]
            if self.stats.failing_rounds in (1, 10) or self.stats.failing_rounds % 100 == 0:
                logger.warning("guardian: venue read failed ({} in a row): {}", self.stats.failing_rounds,
                               self.stats.last_error)
            return False
        covers = assess(got["positions"], got["orders"])
        now = time.monotonic()
        owners = self.owners()
        with self._lock:
            self.covers = covers
            self.last_ok = now
            self.stats.rounds += 1
            self.stats.failing_rounds = 0
            for sym in list(self._naked_since):
                if sym not in covers or covers[sym].protected:
                    del self._naked_since[sym]
            for sym, c in covers.items():
                if not c.protected:
                    since = self._naked_since.setdefault(sym, t_read)
                    if t_read - since > self.stats.max_unprotected_s:
                        self.stats.max_unprotected_s = round(t_read - since, 3)
                        self.stats.max_unprotected_symbol = sym
            overdue = [(sym, t_read - since) for sym, since in self._naked_since.items()
                       if t_read - since > self.gcfg.grace_s]
        self._compare(covers, owners)
        self.emergency.tidy(got["orders"], covers)
        for sym, naked_s in overdue:
            self.emergency.overdue(sym, covers[sym], naked_s, owners.get(sym))
        return True

    def _read(self, calls: dict[str, Callable[[float], Any]]) -> dict[str, Any]:
        """All reads at once on daemon threads; ReadTimeout past the venue call deadline. A
        read still hanging from an earlier round is not joined by a second one."""
        if self._pending_read is not None and self._pending_read.is_alive():
            raise ReadTimeout("a venue read of an earlier round has not answered yet")
        t = self.cfg.deadlines.venue_call_s
        results: dict[str, Any] = {}
        errors: list[BaseException] = []

        def run() -> None:
            helpers = [threading.Thread(target=one, args=(k, fn), daemon=True, name=f"guardian {k}")
                       for k, fn in calls.items()]
            for h in helpers:
                h.start()
            for h in helpers:
                h.join()

        def one(name: str, fn: Callable[[float], Any]) -> None:
            try:
                results[name] = fn(t)
            except BaseException as e:
                errors.append(e)

        reader = threading.Thread(target=run, name="guardian read", daemon=True)
        reader.start()
        reader.join(t + 1.0)
        if reader.is_alive():
            self._pending_read = reader
            raise ReadTimeout(f"venue reads did not answer within {t + 1.0:g}s")
        if errors:
            raise errors[0]
        return results

    def owners(self) -> dict[str, Any]:
        """symbol → the live supervisor handle of the position holding it."""
        out = {}
        for k, h in list(self.supervisor.children.items()):
            if k != "coordinator" and not h.retired and h.symbol:
                out[h.symbol] = h
        return out

    # ---- the actors' view against the venue's ---------------------------------------------

    def _compare(self, covers: dict[str, Cover], owners: dict[str, Any]) -> None:
        seen: set[tuple[str, str]] = set()
        for sym, c in covers.items():
            h = owners.get(sym)
            if h is None:
                seen.add((sym, "venue position without an actor"))
            elif h.phase in HELD_OPEN:
                thinks = h.unprotected_since is None
                if thinks and not c.protected:
                    seen.add((sym, "actor thinks protected, venue holds no stop"))
                elif not thinks and c.protected:
                    seen.add((sym, "actor thinks unprotected, venue holds a stop"))
        for sym, h in owners.items():
            if h.phase in HELD_OPEN and sym not in covers:
                seen.add((sym, FLAT))
        confirmed = []
        with self._lock:
            for key in list(self._episodes):
                if key not in seen:
                    del self._episodes[key]
            for key in seen:
                n = self._episodes[key] = self._episodes.get(key, 0) + 1
                if n == 2:  # two rounds running: not an order in flight between our two reads
                    self.stats.disagreements[key[1]] += 1
                    confirmed.append(key)
        for sym, kind in confirmed:
            logger.warning("guardian: {}: {}", sym, kind)
            h = owners.get(sym)
            if kind == FLAT and h is not None and not h.retired:
                # its replacement reconciles with the venue and records how the position ended
                self.stats.restarts_requested += 1
                self.supervisor.child_failed(h, f"guardian: {kind}")
        self._watch_trailing(covers)

    def _watch_trailing(self, covers: dict[str, Cover]) -> None:
        """A native trailing stop replaced by one that fires later (or is not armed while the
        one it replaced was) has lost its ratchet: logged and counted."""
        seen: dict[str, tuple[str, Decimal | None]] = {}
        for sym, c in covers.items():
            if c.trailing is None:
                continue
            now = c.trailing.trailing_trigger()
            seen[sym] = (c.trailing.cid, now)
            before = self._trails.get(sym)
            if (before is None or before[0] == c.trailing.cid or before[1] is None
                    or position_id_of(before[0]) != position_id_of(c.trailing.cid)):
                continue  # the same order, nothing armed before, or another position on the symbol
            long = c.qty > 0
            if now is None or (now < before[1] if long else now > before[1]):
                self.stats.disagreements[LOOSENED] += 1
                logger.warning("guardian: {}: {} (trigger {} -> {})", sym, LOOSENED, before[1],
                               now if now is not None else "unarmed")
        self._trails = seen

    # ---- what health and reports read -----------------------------------------------------

    def fresh(self, now: float | None = None) -> bool:
        """Whether the view is recent enough to judge health by (a few rounds old at most)."""
        now = time.monotonic() if now is None else now
        return self.last_ok is not None and now - self.last_ok <= 3 * self.interval_s + self.cfg.deadlines.venue_call_s

    def naked(self, now: float | None = None) -> list[Naked]:
        """Venue positions without a resting stop, longest first, with their owners' ids."""
        now = time.monotonic() if now is None else now
        owners = self.owners()
        with self._lock:
            items = list(self._naked_since.items())
        out = [Naked(sym, owners[sym].key if sym in owners else "", round(now - since, 3)) for sym, since in items]
        return sorted(out, key=lambda n: -n.seconds)

    def report(self) -> dict:
        s = self.stats
        return {"rounds": s.rounds, "read_failures": s.read_failures, "interval_s": self.interval_s,
                "grace_s": self.gcfg.grace_s, "max_unprotected_s": s.max_unprotected_s,
                "max_unprotected_symbol": s.max_unprotected_symbol,
                "disagreements": dict(s.disagreements), "emergency_stops": s.emergency_stops,
                "emergency_closes": s.emergency_closes, "emergency_failures": s.emergency_failures,
                "restarts_requested": s.restarts_requested}
