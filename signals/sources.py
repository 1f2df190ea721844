"""Signal sources for rehearsal and replay: a seeded demo generator and a JSON-lines file.

A source only produces raw messages; the service parses, validates and records them, so a
bad message is rejected with its reason whatever its origin, and never stops the source.
"""
from __future__ import annotations

import json
import math
import random
import threading
import time
from pathlib import Path
from typing import Callable, Protocol

from loguru import logger

Submit = Callable[[str, str], object]  # (raw message, source name)


class ReplaySubmit(Protocol):
    """What a replayed file submits to: Service.submit, with each wave's recorded time; the
    result is truthy when the wave was accepted."""

    def __call__(self, raw: str, source: str, now: float | None = None) -> object: ...


class DemoSource:
    """A wave of `size` distinct paper symbols every `interval_s` seconds, the first at once."""

    def __init__(self, symbols: list[str], submit: Submit, *, interval_s: float, size: int,
                 seed: int = 42) -> None:
        self.symbols, self.submit = sorted(symbols), submit
        self.interval_s, self.size = interval_s, min(size, len(symbols))
        self._rng = random.Random(seed)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-signals", daemon=True)
        self._n = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def make_wave(self) -> str:
        self._n += 1
        wave_id = f"demo-{int(time.time())}-{self._n}"
        picks = self._rng.sample(self.symbols, self.size)
        signals = [{"id": f"{wave_id}-{i}", "symbol": sym,
                    "side": self._rng.choice(["long", "short"]),
                    "score": round(self._rng.uniform(0.1, 1.0), 3)} for i, sym in enumerate(picks)]
        return json.dumps({"wave_id": wave_id, "ts": time.time(), "signals": signals})

    def _run(self) -> None:
        while not self._stop.is_set():
            self.submit(self.make_wave(), "demo")
            self._stop.wait(self.interval_s)


def recorded_time(line: str) -> float | None:
    """A wave message's own ts (unix seconds), if it carries a usable one."""
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    ts = obj.get("ts") if isinstance(obj, dict) else None
    return float(ts) if isinstance(ts, (int, float)) and not isinstance(ts, bool) and math.isfinite(ts) else None


class FileSource:
    """Replays a JSON-lines file, one wave per line; waits for each wave to finish (or its
    deadline) before sending the next, so a replay keeps the file's order and pace."""

    def __init__(self, path: str | Path, submit: ReplaySubmit, wave_done: threading.Event, *,
                 wait_s: float, restamp: bool = True) -> None:
        """`restamp`: each wave's ts becomes its arrival time (a recorded day traded now);
        otherwise it keeps its own ts and is judged at that time (its age is not held
        against it), so a rehearsal records what really happened when."""
        self.path, self.submit, self.wave_done = Path(path), submit, wave_done
        self.wait_s, self.restamp = wait_s, restamp
        self._stop = threading.Event()
        self.finished = threading.Event()
        self._thread = threading.Thread(target=self._run, name="file-signals", daemon=True)

    def start(self) -> None:
        if not self.path.exists():
            raise FileNotFoundError(f"signals file not found: {self.path}")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        try:
            with self.path.open("r", encoding="utf-8", errors="replace") as fh:
                for n, line in enumerate(fh, 1):
                    if self._stop.is_set():
                        return
                    line = line.strip()
                    if not line or line.startswith("#"):
                        continue
                    self.wave_done.clear()
                    source = f"{self.path.name}:{n}"
                    if self.restamp:
                        accepted = self.submit(self._restamped(line), source)
                    else:
                        accepted = self.submit(line, source, now=recorded_time(line))
                    if accepted:
                        self.wave_done.wait(self.wait_s)
        except Exception:
            logger.exception("file source {} failed", self.path)
        finally:
            self.finished.set()

    def _restamped(self, line: str) -> str:
        """Recorded waves carry old timestamps; a run that trades them is about now."""
        try:
            obj = json.loads(line)
        except ValueError:
            return line
        if isinstance(obj, dict) and "ts" in obj:
            obj["ts"] = time.time()
            return json.dumps(obj)
        return line
