"""The intake of waves: a raw message from a source parsed, validated and handed to the
coordinator, or recorded with the reason it was not taken. A bad message is never raised."""
from __future__ import annotations

import dataclasses
import threading
import time
from typing import Protocol

from loguru import logger

from actors.coordinator_port import CoordinatorDown, CoordinatorPort
from actors.messages import SubmitWave
from core.config import Config
from core.types import MarketSpec
from persistence.waves import WaveStore
from service.compose import RunStats
from signals.intake import IntakeResult
from signals.rejections import Rejections
from signals.wave import Wave, WaveRejected, parse_wave


class WaveSubmit(Protocol):
    """What a signal source hands each raw wave to: `WaveIntake.submit`, or what stands in
    front of it; a replay gives `now`, the recorded time the wave is judged at."""

    def __call__(self, raw: str | bytes, source: str, now: float | None = None) -> IntakeResult: ...


class WaveIntake:
    def __init__(self, cfg: Config, markets: dict[str, MarketSpec], port: CoordinatorPort, waves: WaveStore,
                 stats: RunStats, rejections: Rejections, stopping: threading.Event) -> None:
        self.cfg, self.markets, self.coordinator_port, self.waves = cfg, markets, port, waves
        self.stats, self.rejections, self.stopping = stats, rejections, stopping

    def submit(self, raw: str | bytes, source: str, now: float | None = None) -> IntakeResult:
        """Parse a raw wave message and hand it to the coordinator; returns once the wave is
        persisted (so a fast source is slowed to the database's pace, never piled up in a
        mailbox). A bad message is recorded with its reason, never raised. `now` is the
        clock its age is judged by: a recorded wave replayed at its own time passes it."""
        s = self.cfg.signals
        try:
            wave = parse_wave(raw, markets=self.markets, source=source,
                              max_wave_size=s.max_wave_size, max_age_s=s.max_age_s, now=now)
            if now is not None:  # judged at its own time, but received now
                wave = dataclasses.replace(wave, received_at=time.time())
        except WaveRejected as e:
            return self.reject(e.reason, source, e.wave_id)
        except Exception as e:  # parse_wave raises only WaveRejected; this is the last guard
            logger.exception("wave parser failed on a message from {}", source)
            return self.reject(f"unreadable message ({type(e).__name__})", source)
        if self.stopping.is_set():
            logger.warning("wave {} arrived during shutdown; not taken", wave.id)
            return IntakeResult("not_taken", wave.id, "service is shutting down")
        # A stuck coordinator overruns at operation_s and is replaced after a backoff; the wave
        # then goes to the successor. Each attempt waits for that long, at most once per restart.
        sup = self.cfg.supervisor
        wait_s = self.cfg.deadlines.operation_s + sup.backoff_max_s * 1.5 + 1
        try:
            status = self.coordinator_port.request(lambda reply, n: SubmitWave(wave, reply, resent=n > 0),
                                                   wait_s, attempts=sup.max_restarts + 1)
        except CoordinatorDown as e:
            return self._not_taken(wave, source, f"coordinator down: {e}")
        except Exception as e:  # no coordinator answered: recorded, so no signal is left without an outcome
            return self._not_taken(wave, source, f"the coordinator did not take the wave ({e!r})"[:300])
        if status != "duplicate":
            self.stats.wave_ids.add(wave.id)
        return IntakeResult(status, wave.id)

    def _not_taken(self, wave: Wave, source: str, reason: str) -> IntakeResult:
        logger.error("wave {} from {} not taken: {}", wave.id, source, reason)
        try:
            recorded = self.waves.insert_not_taken(wave, reason)
        except Exception as e:
            logger.error("wave {}: recording it as not taken failed: {!r}", wave.id, e)
            return IntakeResult("not_taken", wave.id, reason)
        if not recorded:  # a coordinator stored it after all: it is its to finish
            self.stats.wave_ids.add(wave.id)
            return IntakeResult("opening", wave.id)
        return IntakeResult("not_taken", wave.id, reason)

    def reject(self, reason: str, source: str, wave_id: str | None = None) -> IntakeResult:
        """Record a message that is not a usable wave (sources use it for frames they could not
        even read, e.g. too big); never raises."""
        self.stats.waves_rejected += 1
        record, summary = self.rejections.admit(reason)
        if summary:
            logger.warning("wave intake ({}): {}", source, summary)
        if not record:
            return IntakeResult("rejected", wave_id, reason)
        try:
            wid = self.waves.insert_rejected(wave_id, reason, source)
        except Exception as e:
            logger.error("wave rejected ({}): {}; recording it failed: {!r}", source, reason, e)
            return IntakeResult("rejected", wave_id, reason)
        logger.error("wave rejected ({}, recorded as {}): {}", source, wid, reason)
        return IntakeResult("rejected", wid, reason)
