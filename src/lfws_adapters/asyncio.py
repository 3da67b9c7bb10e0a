"""The asyncio runtime: ``asyncio.Protocol`` callbacks, no task or stream per connection.

Each transport is one :class:`asyncio.Protocol` that is also the drivers'
:class:`~lfws_adapters.runtime.Link`. Writes made while a read is handled
wait for its end and leave in one ``transport.write`` per transport: all that
answers one read (replies, acks of stores that finished at once, broadcasts
to the other clients) costs one system call each. Any other write (a client's
push, an ack from a store task) goes out at once, unless another went out at
once since the transport's last read: then it and those that follow in the
same loop turn leave together at the turn's end (pipelined pushes).
The transport's write flow control (``pause_writing``/``resume_writing``,
with a zero low-water mark) tells :meth:`~lfws_adapters.runtime.Link.drained`
waiters when the backlog is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from ssl import SSLContext, create_default_context
from typing import NamedTuple, cast

from lfws_core.actions import OpenConnection
from lfws_core.client import ClientConfig
from lfws_core.connection import CLOSE_TIMEOUT

from .auth import Authenticator, Authorizer
from .driver import ClientBase, ClientDriver, ClientHost, Receiver
from .event_log import EventLog
from .hub import ServerBase, ServerOptions, SyncHub
from .runtime import Link, PeerFactory

__all__ = ["AsyncioLoop", "Client", "Listener", "Server", "connect", "serve", "serve_peers"]

logger = logging.getLogger("lfws.asyncio")

_FLUSH_AT = 64 * 1024  # the most bytes held back to share one write
_ACCEPT_TURNS = 3  # loop turns from accept() to connection_made()


class AsyncioLoop:
    """The drivers' :class:`~lfws_adapters.runtime.Loop` over the running asyncio loop."""

    def __init__(self) -> None:
        self._loop = loop = asyncio.get_running_loop()
        self._tasks: set[asyncio.Task[None]] = set()  # asyncio keeps only weak references
        self.time = loop.time  # bound methods: no extra call on the hot path
        self.call_at = loop.call_at

    def spawn(self, function: Callable[[], Awaitable[None]]) -> None:
        """Run ``function()`` in a task; what it raises is logged."""
        task = self._loop.create_task(_logged(function))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def new_event(self) -> asyncio.Event:
        """Return an ``asyncio.Event``."""
        return asyncio.Event()

    async def aclose(self) -> None:
        """Cancel the tasks still running (and those they start) and wait for them."""
        while tasks := list(self._tasks):
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


async def _logged(function: Callable[[], Awaitable[None]]) -> None:
    try:
        await function()
    except Exception:
        logger.exception("a background task failed")


class _Transports(set["_Stream"]):
    """The live transports of a listener or a client: to wait for, or to cut off.

    Also the write batch they share: while one of them handles a read,
    ``held`` collects every one that was written to, flushed once the read
    is handled (a broadcast from a read reaches other transports).
    """

    def __init__(self) -> None:
        super().__init__()
        self.reading = False
        self.held: list[_Stream] = []

    async def wait_gone(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while self:
                    await next(iter(self)).gone.wait()

    async def abort(self) -> None:
        for stream in list(self):
            stream.abort()
        await self.wait_gone(1.0)  # connection_lost runs on the next iteration


class _Flag:
    """An ``asyncio.Event`` that costs its waiters' future only once someone waits.

    Every transport has two and almost never waits on them: an ``Event``
    (with its deque of waiters) is about 1 KB per idle connection.
    """

    __slots__ = ("_is_set", "_waiter")

    def __init__(self) -> None:
        self._is_set = False
        self._waiter: asyncio.Future[None] | None = None

    def is_set(self) -> bool:
        return self._is_set

    def set(self) -> None:
        self._is_set = True
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def clear(self) -> None:
        self._is_set = False

    async def wait(self) -> None:
        if self._is_set:
            return
        if self._waiter is None:
            self._waiter = asyncio.get_running_loop().create_future()
        # Shielded: one waiter's cancellation must not cancel the others' future.
        await asyncio.shield(self._waiter)


class _Stream(asyncio.Protocol):
    """One TCP or TLS transport: the drivers' Link, feeding their receiver."""

    _transport: asyncio.Transport
    _receiver: Receiver

    def __init__(self, start: Callable[[Link, str], Receiver], transports: _Transports) -> None:
        self._start = start
        self._transports = transports
        self._loop = asyncio.get_running_loop()
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._wrote = False  # a write went out at once since the last read or flush
        self._abort_timer: asyncio.TimerHandle | None = None
        self._emptied = _Flag()
        self.gone = _Flag()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        # resume_writing() once the buffer is empty (see drained()).
        self._transport.set_write_buffer_limits(high=0)
        self._transports.add(self)
        address = transport.get_extra_info("peername")
        self._receiver = self._start(self, f"{address[0]}:{address[1]}" if address else "?")

    def data_received(self, data: bytes) -> None:
        self._wrote = False
        batch = self._transports
        batch.reading = True  # callbacks never nest: no read is handled already
        try:
            self._receiver.data_received(data)
        finally:
            batch.reading = False
            for stream in batch.held:
                stream._flush()
            batch.held.clear()

    def eof_received(self) -> bool:
        # The end of input is input too (b""): a client that half-closes
        # after an HTTP request still gets the answer, and the receiver
        # closes the transport when it is done. TLS has no half-close here.
        self.data_received(b"")
        return self._transport.get_extra_info("sslcontext") is None

    def connection_lost(self, exc: Exception | None) -> None:
        self._pending.clear()
        if self._abort_timer is not None:
            self._abort_timer.cancel()
        self._transports.discard(self)
        self.gone.set()
        self._emptied.set()
        self._receiver.connection_lost((str(exc) or repr(exc)) if exc else "connection closed")

    def write(self, data: bytes) -> None:
        batch = self._transports
        if batch.reading:
            if not self._pending:
                batch.held.append(self)
        elif self._pending or self._wrote:
            # A second write since the last read or flush: likely a burst
            # (pipelined pushes). It and those that follow in this loop turn
            # leave together at the turn's end.
            if not self._pending:
                self._loop.call_soon(self._flush_turn)
        else:
            # Likely alone (a push awaiting its ack): waiting would only cost
            # a loop turn. (Nothing is held here: a read's writes leave when
            # it is handled.)
            self._wrote = True
            if not self._transport.is_closing():
                self._transport.write(data)
            return
        self._pending.append(data)
        self._pending_size += len(data)
        if self._pending_size >= _FLUSH_AT:
            self._flush()  # a burst is no sign of a slow peer: hand it to the OS now

    def buffered(self) -> int:
        return self._pending_size + self._transport.get_write_buffer_size()

    async def drained(self) -> None:
        self._flush()
        while self._transport.get_write_buffer_size() and not self.gone.is_set():
            self._emptied.clear()
            await self._emptied.wait()

    def resume_writing(self) -> None:
        self._emptied.set()

    def close(self) -> None:
        self._flush()
        transport = self._transport
        if not transport.is_closing():
            transport.close()
            if transport.get_write_buffer_size():
                # Closing waits for the buffer to drain: forever if the peer never reads.
                self._abort_timer = self._loop.call_later(CLOSE_TIMEOUT, transport.abort)

    def abort(self) -> None:
        self._pending.clear()
        self._transport.abort()

    def _flush_turn(self) -> None:
        self._wrote = False
        self._flush()

    def _flush(self) -> None:
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            self._pending_size = 0
            if not self._transport.is_closing():
                self._transport.write(data)


class Listener(NamedTuple):
    """A listening socket (see :func:`serve_peers`); ``port`` is the real one, also for 0."""

    host: str
    port: int
    transports: _Transports


@contextlib.asynccontextmanager
async def serve_peers(
    factory: PeerFactory,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    ssl: SSLContext | None = None,
) -> AsyncIterator[Listener]:
    """Listen on ``host``:``port``; on exit stop, cutting off the transports left."""
    transports = _Transports()
    server = await asyncio.get_running_loop().create_server(
        lambda: _Stream(factory.connect, transports), host, port, ssl=ssl
    )
    try:
        yield Listener(host, server.sockets[0].getsockname()[1], transports)
    finally:
        # asyncio (3.11) drops, unclosed and unanswered, a connection it
        # accepted just before close() (its transport fails to attach to the
        # closed server): stop accepting first, and let what was accepted
        # reach its protocol (and be answered) before closing.
        loop = asyncio.get_running_loop()
        for sock in server.sockets:
            with contextlib.suppress(NotImplementedError):  # loops without readers
                loop.remove_reader(sock.fileno())
        for _ in range(_ACCEPT_TURNS):
            await asyncio.sleep(0)
        server.close()
        await transports.abort()
        await server.wait_closed()


class Server(ServerBase):
    """A running sync server (see :func:`serve`)."""


@contextlib.asynccontextmanager
async def serve(
    *,
    event_log: EventLog,
    host: str = "127.0.0.1",
    port: int = 8080,
    options: ServerOptions | None = None,
    authenticator: Authenticator | None = None,
    authorizer: Authorizer | None = None,
    ssl: SSLContext | None = None,
) -> AsyncIterator[Server]:
    """Run a sync server; on exit close every client with 1001, wait, then close the log."""
    loop = AsyncioLoop()
    hub = SyncHub(
        event_log, loop, options=options, authenticator=authenticator, authorizer=authorizer
    )
    try:
        async with serve_peers(hub, host=host, port=port, ssl=ssl) as listener:
            try:
                yield Server(hub, listener.host, listener.port, secure=ssl is not None)
            finally:
                hub.shutdown()
                await listener.transports.wait_gone(hub.options.shutdown_timeout)
    finally:
        await loop.aclose()
        await event_log.aclose()


class _Connector:
    def __init__(self, ssl: SSLContext | None, transports: _Transports) -> None:
        self._ssl = ssl
        self._transports = transports

    async def connect(self, target: OpenConnection, receiver: Receiver) -> Link:
        if target.secure and self._ssl is None:
            self._ssl = create_default_context()
        context = self._ssl if target.secure else None
        _, stream = await asyncio.get_running_loop().create_connection(
            lambda: _Stream(lambda link, name: receiver, self._transports),
            target.host,
            target.port,
            ssl=context,
            server_hostname=target.host if context else None,
        )
        return stream


class Client(ClientBase):
    """A running sync client (see :func:`connect`)."""


@contextlib.asynccontextmanager
async def connect(
    config: ClientConfig,
    host: ClientHost | None = None,
    *,
    ssl: SSLContext | None = None,
    cursors: Mapping[str, int] | None = None,
) -> AsyncIterator[Client]:
    """Run a sync client; on exit close it (close handshake, then the transport)."""
    transports = _Transports()
    connector = _Connector(ssl, transports)
    loop = AsyncioLoop()
    driver = ClientDriver(config, host or ClientHost(), loop, connector, cursors=cursors)
    driver.start()
    try:
        yield Client(driver)
    finally:
        driver.close()
        await transports.wait_gone(CLOSE_TIMEOUT)
        await transports.abort()
        await loop.aclose()
