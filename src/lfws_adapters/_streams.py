"""What the trio and anyio adapters share: a Link's outbox, a timer loop, the life cycles.

Both runtimes lack ``loop.call_at`` and a synchronous ``transport.write``, and
both fill the gap the same way: timers run in one task that sleeps until the
next deadline, and each connection's writes go to an :class:`Outbox`, which
sends them at once when it can (a non-blocking send on a plain socket), else
through the task that reads the connection (the reply to a read) or one
writer task.
The runtime hands in its own primitives (event factory, deadline scope,
``start_soon``), so these classes import neither trio nor anyio.

:func:`serving` and :func:`running_client` are the life cycles of a server
and a client, written once with anyio (which runs on either backend): what
``serve`` and ``connect`` do on entering and, above all, on leaving.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator, Mapping
from contextlib import (
    AbstractAsyncContextManager,
    AbstractContextManager,
    asynccontextmanager,
    contextmanager,
)
from typing import Any, Protocol, TypeVar

import anyio

from lfws_core.client import ClientConfig
from lfws_core.connection import CLOSE_TIMEOUT

from ._timers import TimerQueue
from .auth import Authenticator, Authorizer
from .driver import ClientDriver, ClientHost, Connector
from .event_log import EventLog
from .hub import ServerOptions, SyncHub
from .runtime import Event, Loop, TimerHandle

__all__ = [
    "ClientTransports",
    "Event",
    "Listening",
    "Outbox",
    "TaskLoop",
    "WriteBatch",
    "lone_error_unwrapped",
    "running_client",
    "serving",
]

_Owner = TypeVar("_Owner")


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


class WriteBatch:
    """The outboxes of one listener (or client) written to while one of them handles a read.

    What a read produces (the reply, its acks, broadcasts to the other
    connections) is held until the read is handled, then leaves in one send
    per connection instead of one per frame.
    """

    __slots__ = ("held", "reading")

    def __init__(self) -> None:
        self.reading = False
        self.held: list[Outbox] = []

    def feed(self, data_received: Callable[[bytes], None], data: bytes, reader: Outbox) -> None:
        """Hand a read to ``data_received``, then send what it wrote (but ``reader``'s)."""
        self.reading = True  # reads never nest: each is one synchronous call
        try:
            data_received(data)
        finally:
            self.reading = False
            held, self.held = self.held, []
            for outbox in held:
                if outbox is not reader:
                    outbox._release()


class Outbox:
    """A :class:`~lfws_adapters.runtime.Link` whose bytes go out at once, or via a writer task.

    With ``send_now`` (a non-blocking send on the socket, returning how many
    bytes the kernel took) a write leaves at once, as asyncio's ``write``
    does; what the kernel does not take, and every write without
    ``send_now`` (TLS), wakes the writer task (:meth:`pump`), which
    coalesces what queued meanwhile into one send. Writes made while a
    connection of the same :class:`WriteBatch` handles a read wait for the
    read's end: then each connection sends them in one go; the reader sends
    its own connection's (:meth:`flush`), so no other task is woken for a
    reply. One send is in progress at a time; what is written meanwhile waits
    for it.

    ``buffered`` counts the bytes the kernel has not taken: queued behind a
    send in progress, or refused by ``send_now``. Bytes held for the end of a
    read do not count: they go out before the read's task yields.
    :meth:`drained` waits for the queue to be taken.
    """

    __slots__ = (
        "_backlog",
        "_batch",
        "_chunks",
        "_closing",
        "_held",
        "_new_event",
        "_send_now",
        "_sending",
        "_size",
        "_taken",
        "_wake",
    )

    def __init__(
        self,
        new_event: Callable[[], Event],
        batch: WriteBatch,
        send_now: Callable[[bytes], int] | None = None,
    ) -> None:
        self._new_event = new_event
        self._batch = batch
        self._send_now = send_now
        self._wake = new_event()
        self._taken: Event | None = None  # made by drained(), the rare waiter
        self._chunks: list[bytes] = []
        self._size = 0
        self._sending = False
        self._backlog = False  # the writer task has what send_now left
        self._held = False  # in the batch, until the read's end
        self._closing = False

    def write(self, data: bytes) -> None:
        if self._closing:
            return
        self._chunks.append(data)
        self._size += len(data)
        if self._sending or self._backlog or self._held:
            return  # the send in progress, the writer or the read's end takes it
        if self._batch.reading:
            self._held = True
            self._batch.held.append(self)
        else:
            self._release()

    def close(self) -> None:
        self._closing = True
        self._wake.set()

    def buffered(self) -> int:
        return self._size if self._sending or self._backlog else 0

    async def drained(self) -> None:
        while self.buffered():
            if self._taken is None:
                self._taken = self._new_event()
            await self._taken.wait()

    async def flush(self, send: Callable[[bytes], Awaitable[None]]) -> None:
        """Send, from the reader, what its read produced (unless a send is in progress).

        Without ``send_now`` the reader awaits the send itself; what is
        written during it is left to the writer task: the reader goes back
        to reading.
        """
        self._held = False
        if self._send_now is not None or self._sending or self._backlog:
            self._release()
        elif self._chunks:
            await self._send(send)
            if self._chunks or self._closing:
                self._wake.set()

    def _release(self) -> None:
        # Send what is queued now if the socket takes it, else wake the writer.
        self._held = False
        if not self._chunks or self._sending or self._backlog:
            return
        if self._send_now is not None:
            data = b"".join(self._chunks) if len(self._chunks) > 1 else self._chunks[0]
            sent = self._send_now(data)
            if sent == len(data):
                self._chunks.clear()
                self._size = 0
                return
            self._chunks[:] = (data[sent:],)
            self._size = len(data) - sent
            self._backlog = True
        self._wake.set()

    async def pump(self, send: Callable[[bytes], Awaitable[None]]) -> None:
        """Send what is written until closed and flushed; ``send`` errors propagate."""
        try:
            while True:
                if self._chunks and not self._sending:
                    await self._send(send)
                    continue
                if self._closing and not self._sending:
                    return
                # Idle, or the reader is sending: it wakes us if it leaves work.
                self._wake = self._new_event()
                await self._wake.wait()
        finally:
            self._closing, self._size = True, 0
            self._chunks.clear()
            self._queue_taken()

    async def _send(self, send: Callable[[bytes], Awaitable[None]]) -> None:
        # Coalesce: a broadcast burst becomes one send, not one per frame.
        data = b"".join(self._chunks)
        self._chunks.clear()
        self._size, self._sending, self._backlog = 0, True, False
        self._queue_taken()
        try:
            await send(data)
        finally:
            self._sending = False

    def _queue_taken(self) -> None:
        if self._taken is not None:
            self._taken.set()
            self._taken = None


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

    def new_event(self) -> Event:
        return self._new_event()

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


class Listening(Protocol):
    """A listening transport server, as :func:`serving` needs it."""

    @property
    def host(self) -> str:
        """The address listened on."""
        ...

    @property
    def port(self) -> int:
        """The real port, also when 0 was asked for."""
        ...

    async def drain(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds (even when cancelled) for every transport to end."""
        ...


class ClientTransports(Connector, Protocol):
    """A client's connector that can wait for the transports it opened."""

    async def wait_closed(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for them to end, then cut off what is left."""
        ...


@asynccontextmanager
async def serving(
    event_log: EventLog,
    tasks: AbstractAsyncContextManager[tuple[Loop, object]],
    serve_peers: Callable[[SyncHub], AbstractAsyncContextManager[Listening]],
    *,
    options: ServerOptions | None,
    authenticator: Authenticator | None,
    authorizer: Authorizer | None,
) -> AsyncIterator[tuple[SyncHub, Listening]]:
    """Run a hub on the loop of ``tasks``, its transports from ``serve_peers``, during the block.

    On exit every client is sent a 1001 close frame and given
    ``options.shutdown_timeout`` seconds to go; then the listener closes,
    the tasks are cancelled, and ``event_log`` is closed, also when the
    block was cancelled.
    """
    try:
        async with tasks as (loop, _):
            hub = SyncHub(
                event_log,
                loop,
                options=options,
                authenticator=authenticator,
                authorizer=authorizer,
            )
            async with serve_peers(hub) as listener:
                try:
                    yield hub, listener
                finally:
                    hub.shutdown()
                    await listener.drain(hub.options.shutdown_timeout)
    finally:
        with anyio.CancelScope(shield=True):
            await event_log.aclose()


@asynccontextmanager
async def running_client(
    tasks: AbstractAsyncContextManager[tuple[Loop, _Owner]],
    transports: Callable[[_Owner], ClientTransports],
    config: ClientConfig,
    host: ClientHost | None,
    cursors: Mapping[str, int] | None,
) -> AsyncIterator[ClientDriver]:
    """Run a client driver on the loop of ``tasks`` during the block, started at once.

    ``transports`` makes the connector from what owns the tasks. On exit the
    client closes: a close frame, up to ``CLOSE_TIMEOUT`` seconds for the
    server's answer, then whatever still runs is cancelled.
    """
    async with tasks as (loop, owner):
        connector = transports(owner)
        driver = ClientDriver(config, host or ClientHost(), loop, connector, cursors=cursors)
        driver.start()
        try:
            yield driver
        finally:
            driver.close()
            with anyio.CancelScope(shield=True):
                await connector.wait_closed(CLOSE_TIMEOUT)
