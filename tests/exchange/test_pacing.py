"""The per-second budget for order writes (exchange/ccxt/pacing.py): at most `limit` requests
in any sliding window (plus the jitter slack), a request waits for room, and one whose room
would only come after its deadline is refused before anything is sent."""
from __future__ import annotations

import asyncio

import pytest

from exchange.ccxt.pacing import JITTER_S, PerSecond
from exchange.gateway import NotSent

WINDOW_S = 0.1  # the budget's window: WINDOW_S + JITTER_S in effect


def _run(coro):
    return asyncio.run(coro)


def test_requests_within_the_limit_go_at_once_and_the_next_waits_for_the_window():
    async def go():
        loop = asyncio.get_running_loop()
        budget = PerSecond(2, WINDOW_S, name="create")
        t0 = loop.time()
        await budget.acquire(t0 + 5)
        await budget.acquire(t0 + 5)
        assert loop.time() - t0 < 0.05 and budget.waited == 0
        await budget.acquire(t0 + 5)
        return loop.time() - t0, budget.waited

    elapsed, waited = _run(go())
    assert elapsed >= WINDOW_S + JITTER_S - 0.01, "the third request went before the window slid"
    assert waited == 1


def test_a_request_that_cannot_fit_before_its_deadline_is_refused_and_not_booked():
    async def go():
        loop = asyncio.get_running_loop()
        budget = PerSecond(1, WINDOW_S, name="create")
        t0 = loop.time()
        await budget.acquire(t0 + 5)
        with pytest.raises(NotSent, match="1 per 0.1s budget full"):
            await budget.acquire(t0 + 0.05)
        assert loop.time() - t0 < 0.05, "refused at once, not after waiting"
        await budget.acquire(t0 + 5)  # the refused one took no room: the next waits one window only
        return loop.time() - t0

    elapsed = _run(go())
    assert WINDOW_S + JITTER_S - 0.01 <= elapsed < 2 * (WINDOW_S + JITTER_S)


def test_the_window_slides_no_more_than_limit_in_any_window():
    async def go():
        loop = asyncio.get_running_loop()
        budget = PerSecond(3, WINDOW_S)
        sent = []
        for _ in range(9):
            await budget.acquire(loop.time() + 5)
            sent.append(loop.time())
        return sent

    sent = _run(go())
    span = WINDOW_S + JITTER_S
    for i, t in enumerate(sent):
        assert sum(1 for u in sent[i:] if u - t < span - 0.005) <= 3, "more than the limit in one window"
