"""Counting acknowledged or applied events, waiting for a count, pipelining pushes."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import anyio


class Progress:
    """A count that a coroutine can wait on (``anyio.Event``: asyncio and trio alike)."""

    def __init__(self) -> None:
        self.count = 0
        self._goal = 0
        self._reached: anyio.Event | None = None

    def add(self, amount: int) -> None:
        self.count += amount
        if self._reached is not None and self.count >= self._goal:
            self._reached.set()
            self._reached = None

    async def until(self, goal: int) -> None:
        """Return once the count is at least ``goal``."""
        if self.count >= goal:
            return
        self._goal = goal
        self._reached = reached = anyio.Event()
        await reached.wait()


async def pipeline(
    send: Callable[[int, int], Awaitable[None]],
    acked: Progress,
    begin: int,
    end: int,
    window: int,
) -> float:
    """Send items ``begin..end`` in chunks, at most ``window`` unacknowledged; return items/s.

    ``send(first, last)`` sends items ``first..last - 1``; ``acked`` counts
    every acknowledgement since item 0.
    """
    chunk = max(window // 2, 1)
    start = time.perf_counter()
    for first in range(begin, end, chunk):
        await acked.until(first + chunk - window)
        await send(first, min(end, first + chunk))
    await acked.until(end)
    return (end - begin) / (time.perf_counter() - start)
