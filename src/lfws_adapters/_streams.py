"""What the trio and anyio adapters share: a Link's outbox and a timer loop.

Both runtimes lack ``loop.call_at`` and a synchronous ``transport.write``, and
both fill the gap the same way: timers run in one task that sleeps until the
next deadline, and each connection's writes are queued for one writer task.
The runtime hands in its own primitives (event factory, deadline scope,
``start_soon``), so this module imports neither trio nor anyio.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol

from ._timers import TimerQueue
from .runtime import TimerHandle

__all__ = ["Event", "Outbox", "TaskLoop", "lone_error_unwrapped"]


@contextmanager
def lone_error_unwrapped() -> Iterator[None]:
    """Re-raise a task group's lone error as itself.

    Task groups and nurseries wrap every error in an exception group, also
    one raised in the body of ``async with serve(...)``; the caller should
    see that error as it was raised.
    """
    try:
        yield
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1:
            error = group.exceptions[0]
            raise error from error.__cause__
        raise


class Event(Protocol):
    """A one-shot event: ``trio.Event`` or ``anyio.Event``."""

    def set(self) -> None: ...

    async def wait(self) -> None: ...


class Outbox:
    """A :class:`~lfws_adapters.runtime.Link` whose bytes one writer task sends.

    ``write`` only queues; :meth:`pump` (the writer task) sends the queue in
    order. ``buffered`` counts the bytes queued behind a send still in
    progress: those the OS has not taken. Bytes written while the writer is
    idle go out on its next turn, as asyncio's ``write`` hands them to the
    kernel at once, so a healthy peer is never mistaken for a slow one.
    :meth:`drained` waits for the writer to take the queue.
    """

    __slots__ = ("_chunks", "_closing", "_new_event", "_sending", "_size", "_taken", "_wake")

    def __init__(self, new_event: Callable[[], Event]) -> None:
        self._new_event = new_event
        self._wake = new_event()
        self._taken = new_event()
        self._chunks: list[bytes] = []
        self._size = 0
        self._sending = False
        self._closing = False

    def write(self, data: bytes) -> None:
        if not self._closing:
            self._chunks.append(data)
            self._size += len(data)
            self._wake.set()

    def close(self) -> None:
        self._closing = True
        self._wake.set()

    def buffered(self) -> int:
        return self._size if self._sending else 0

    async def drained(self) -> None:
        while self.buffered():
            await self._taken.wait()

    def _queue_taken(self) -> None:
        self._taken.set()
        self._taken = self._new_event()

    async def pump(self, send: Callable[[bytes], Awaitable[None]]) -> None:
        """Send what is written until closed and flushed; ``send`` errors propagate."""
        try:
            while self._chunks or not self._closing:
                if not self._chunks:
                    self._wake = self._new_event()
                    await self._wake.wait()
                    continue
                # Coalesce: a broadcast burst becomes one send, not one per frame.
                data = b"".join(self._chunks)
                self._chunks.clear()
                self._size, self._sending = 0, True
                self._queue_taken()
                await send(data)
                self._sending = False
        finally:
            self._closing, self._sending, self._size = True, False, 0
            self._chunks.clear()
            self._queue_taken()


class TaskLoop:
    """A :class:`~lfws_adapters.runtime.Loop` made of a runtime's primitives.

    Timers live in a :class:`TimerQueue` fired by :meth:`run_timers`, a task
    that sleeps until the earliest deadline and is woken early when an
    earlier timer is added. Spawned tasks have their exceptions logged.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float],
        new_event: Callable[[], Event],
        move_on_at: Callable[[float], AbstractContextManager[object]],
        start_soon: Callable[[Callable[[], Coroutine[Any, Any, None]]], object],
        logger: logging.Logger,
    ) -> None:
        self._clock = clock
        self._new_event = new_event
        self._move_on_at = move_on_at
        self._start_soon = start_soon
        self._logger = logger
        self._wake = new_event()
        self._timers = TimerQueue(lambda: self._wake.set())

    def time(self) -> float:
        return self._clock()

    def call_at(self, when: float, callback: Callable[[], None]) -> TimerHandle:
        return self._timers.call_at(when, callback)

    def spawn(self, function: Callable[[], Awaitable[None]]) -> None:
        async def logged() -> None:
            try:
                await function()
            except Exception:
                self._logger.exception("a background task failed")

        self._start_soon(logged)

    async def run_timers(self) -> None:
        """Fire timers as they fall due, forever (run it as a task)."""
        while True:
            self._wake = self._new_event()
            due = self._timers.next_due()
            with self._move_on_at(math.inf if due is None else due):
                await self._wake.wait()
            try:
                self._timers.fire_due(self._clock())
            except Exception:
                self._logger.exception("a timer callback failed")
