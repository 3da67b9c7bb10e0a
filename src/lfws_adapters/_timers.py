"""One-shot timers on a heap, for runtimes without ``loop.call_at`` (trio, anyio).

A runtime runs one task that sleeps until :meth:`TimerQueue.next_due` and
then calls :meth:`TimerQueue.fire_due`; :attr:`TimerQueue.on_earlier` tells
it to wake up early when a new timer comes before the one it sleeps for.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable

__all__ = ["TimerQueue"]


class _Handle:
    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class TimerQueue:
    """Timers ordered by deadline; cancelled ones are skipped lazily."""

    def __init__(self, on_earlier: Callable[[], None]) -> None:
        self._heap: list[tuple[float, int, _Handle]] = []
        self._order = itertools.count()
        self.on_earlier = on_earlier

    def call_at(self, when: float, callback: Callable[[], None]) -> _Handle:
        handle = _Handle(when, callback)
        earliest = self.next_due()
        heapq.heappush(self._heap, (when, next(self._order), handle))
        if earliest is None or when < earliest:
            self.on_earlier()
        return handle

    def next_due(self) -> float | None:
        heap = self._heap
        while heap and heap[0][2].cancelled:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def fire_due(self, now: float) -> None:
        heap = self._heap
        while heap and heap[0][0] <= now:
            handle = heapq.heappop(heap)[2]
            if not handle.cancelled:
                handle.callback()
