"""The protection window as the paper venue sees it: per position opened, the seconds from its
first entry fill to the first stop resting on its closing side (0 when one was there first).

A venue-side record, so it measures what the trader cannot see from its own books. Called by
the engine with its lock held; it keeps no lock of its own.
"""
from __future__ import annotations

from typing import Callable

from exchange.rehearsal import PROTECTION_GAPS_PATH  # noqa: F401 (re-exported for the fakes)


class ProtectionWindow:
    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._naked_since: dict[str, float] = {}
        self._gaps: list[float] = []

    def opened(self, symbol: str, protected: bool) -> None:
        """A position was just opened: protected already, or naked from now on."""
        if protected:
            self._gaps.append(0.0)
        else:
            self._naked_since[symbol] = self._clock()

    def ended(self, symbol: str) -> None:
        """A stop now rests on the position's closing side, or it closed without one (then
        the window is its whole life)."""
        since = self._naked_since.pop(symbol, None)
        if since is not None:
            self._gaps.append(self._clock() - since)

    def naked(self, symbol: str) -> bool:
        return symbol in self._naked_since

    def gaps(self) -> list[float]:
        """Every position's window so far; one still naked counts with its time until now."""
        now = self._clock()
        return [*self._gaps, *(now - t for t in self._naked_since.values())]
