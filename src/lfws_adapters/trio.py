"""The trio runtime: the sync server and client on trio's own streams.

``serve`` and ``connect`` run the shared :class:`~lfws_adapters.hub.SyncHub`
and :class:`~lfws_adapters.driver.ClientDriver`; this module only supplies
trio's clock, timers and tasks (a :class:`~lfws_adapters._streams.TaskLoop`)
and a :class:`~lfws_adapters.runtime.Link` per TCP or TLS stream: a reader
task feeding the peer 64 KiB at a time, and a writer task. On plain TCP a
write goes to the socket at once, the writer taking only what the kernel
refused; on TLS the reader sends what each read produced and the writer what
is written between reads (broadcasts, acks of store tasks, a client's
pushes). The life cycle of ``async with`` is shared with the anyio adapter
(:func:`~lfws_adapters._streams.serving`, :func:`~lfws_adapters._streams.running_client`).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from contextlib import asynccontextmanager
from functools import partial
from ssl import SSLContext, create_default_context
from typing import Any

import trio

from lfws_core.actions import OpenConnection
from lfws_core.client import ClientConfig

from ._streams import (
    Outbox,
    TaskLoop,
    WriteBatch,
    lone_error_unwrapped,
    running_client,
    serving,
)
from .auth import Authenticator, Authorizer
from .driver import ClientBase, ClientHost, Receiver
from .event_log import EventLog
from .hub import ServerBase, ServerOptions
from .runtime import Link, PeerFactory

__all__ = ["Client", "Listener", "Server", "connect", "serve", "serve_peers"]

logger = logging.getLogger("lfws.trio")

_READ_SIZE = 1 << 16
_FLUSH_TIMEOUT = 5.0  # for a closing link whose peer stopped reading


async def _run_shielded(*, task_status: trio.TaskStatus[trio.Nursery]) -> None:
    with trio.CancelScope(shield=True):
        async with trio.open_nursery() as nursery:
            task_status.started(nursery)
            await trio.sleep_forever()


@asynccontextmanager
async def _service_nursery() -> AsyncIterator[trio.Nursery]:
    # Background tasks (timers, connections) out of reach of the caller's
    # cancellation, so that a graceful shutdown can still talk to the peers;
    # they are cancelled on exit.
    with lone_error_unwrapped():
        async with trio.open_nursery() as owner:
            nursery: trio.Nursery = await owner.start(_run_shielded)
            try:
                yield nursery
            finally:
                nursery.cancel_scope.cancel()


@asynccontextmanager
async def _open_loop() -> AsyncIterator[tuple[TaskLoop, trio.Nursery]]:
    """Yield trio's Loop, its timer task and every task it starts in a service nursery."""
    async with _service_nursery() as nursery:
        loop = TaskLoop(
            clock=trio.current_time,
            new_event=trio.Event,
            move_on_at=trio.move_on_at,
            start_soon=nursery.start_soon,
            logger=logger,
        )
        nursery.start_soon(loop.run_timers)
        yield loop, nursery


def _lost(error: trio.BrokenResourceError | OSError) -> str:
    # A stream's error carries the cause (OSError, SSLError); a socket's is one.
    cause = error if isinstance(error, OSError) else error.__cause__
    return f"connection lost: {cause or error!r}"


def _sender(raw: trio.socket.SocketType) -> Callable[[bytes], int]:
    def send_now(data: bytes) -> int:
        fd = raw.fileno()
        if fd == -1:  # closed: its number may be another file's by now
            return 0
        try:
            return os.write(fd, data)
        except OSError:  # full, or broken: the writer task's send finds out which
            return 0

    return send_now


class _StreamLink(Outbox):
    """A trio stream as a Link: writes leave at once when the socket takes them (plain TCP).

    trio has no synchronous send, so on a plain TCP stream a write goes
    straight to its socket's descriptor (``os.write``): one the kernel takes
    at once (the usual case) costs no task switch and no checkpoint. The
    rest, and everything on TLS, goes through the reader (a read's reply) or
    the writer task (see :class:`~lfws_adapters._streams.Outbox`). The reader
    reads that descriptor too, once trio says it is readable: one system
    call per read, not two. Each use first checks that the socket is still
    open (``fileno() != -1``), with no checkpoint in between, so a closed
    socket's number, reused by another file, is never touched.
    """

    __slots__ = ("_flushing", "_raw", "_stream", "error", "finished")

    def __init__(self, stream: trio.abc.Stream, batch: WriteBatch) -> None:
        raw = stream.socket if isinstance(stream, trio.SocketStream) else None
        super().__init__(trio.Event, batch, None if raw is None else _sender(raw))
        self._raw = raw
        self._stream = stream
        self._flushing = trio.CancelScope()
        self.error: str | None = None
        self.finished = trio.Event()
        """Set once the transport ended and the receiver heard of it."""

    async def _receive(self) -> bytes:
        raw = self._raw
        if raw is None:
            return bytes(await self._stream.receive_some(_READ_SIZE))
        # Wait first: a read's reply rarely arrives before the reader is back.
        while True:
            if raw.fileno() == -1:  # closed by the writer (or after our wake-up)
                raise trio.ClosedResourceError
            await trio.lowlevel.wait_readable(raw)  # closing it wakes us too
            fd = raw.fileno()
            if fd == -1:
                raise trio.ClosedResourceError
            with contextlib.suppress(BlockingIOError):  # woken for nothing
                return os.read(fd, _READ_SIZE)

    def close(self) -> None:
        # Flush, but not forever: a peer that stopped reading gets cut off.
        deadline = trio.current_time() + _FLUSH_TIMEOUT
        self._flushing.deadline = min(self._flushing.deadline, deadline)
        super().close()

    async def _send_all(self) -> None:
        try:
            with self._flushing:
                await self.pump(self._stream.send_all)
                await self._stream.aclose()
        except trio.BrokenResourceError as error:
            self.error = _lost(error)
        finally:
            await trio.aclose_forcefully(self._stream)

    async def _receive_all(self, receiver: Receiver) -> str | None:
        """Feed reads to ``receiver``; return why the stream failed, or None at its end."""
        try:
            while data := await self._receive():
                self._batch.feed(receiver.data_received, data, self)
                await self.flush(self._stream.send_all)
        except trio.ClosedResourceError:  # by the writer, done or failed
            return self.error or "connection closed"
        except trio.BrokenResourceError as error:
            return _lost(error)
        except OSError as error:  # the socket's own reads (plain TCP)
            return _lost(error)
        # The end of input is input too: a client that half-closes after an
        # HTTP request still gets the answer; the receiver closes the link.
        receiver.data_received(b"")
        return None

    async def run(self, receiver: Callable[[], Receiver]) -> None:
        """Feed ``receiver()`` and send the queue until the stream ends."""
        peer: Receiver | None = None
        reason: str | None = "connection cancelled"
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._send_all)
                peer = receiver()
                try:
                    reason = await self._receive_all(peer)
                finally:
                    if reason is not None:  # a failure is reported at once
                        peer.connection_lost(reason)
                        self.close()
        except Exception:  # a bug must not take the other connections down
            logger.exception("a connection task failed")
        finally:
            if peer is not None and reason is None:
                # The end of input: reported once the receiver closed the
                # link and the writer sent what it wrote, so nothing follows.
                peer.connection_lost("connection closed by the peer")
            self.finished.set()


class Listener:
    """A listening TCP (or TLS) server (see :func:`serve_peers`)."""

    def __init__(self, factory: PeerFactory, host: str, port: int) -> None:
        self.factory = factory
        """Where accepted transports go."""
        self.host = host
        """The address listened on."""
        self.port = port
        """The port listened on (the real one, also when 0 was asked for)."""
        self._links: set[_StreamLink] = set()
        self._batch = WriteBatch()

    async def drain(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds (even when cancelled) for every transport to end."""
        with trio.move_on_after(timeout, shield=True):
            for link in list(self._links):
                await link.finished.wait()

    async def _accept(self, stream: trio.abc.Stream) -> None:
        link = _StreamLink(stream, self._batch)
        self._links.add(link)
        try:
            raw = stream.transport_stream if isinstance(stream, trio.SSLStream) else stream
            assert isinstance(raw, trio.SocketStream)
            address = raw.socket.getpeername()
            name = f"{address[0]}:{address[1]}"
        except OSError:  # reset before we asked
            name = "unknown peer"
        try:
            await link.run(partial(self.factory.connect, link, name))
        finally:
            self._links.discard(link)


@asynccontextmanager
async def serve_peers(
    factory: PeerFactory,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    ssl: SSLContext | None = None,
) -> AsyncIterator[Listener]:
    """Accept TCP (TLS with ``ssl``) connections for ``factory``; on exit, cut them all."""
    sockets = await trio.open_tcp_listeners(port, host=host)
    listeners: list[trio.abc.Listener[trio.abc.Stream]] = (
        [trio.SSLListener(socket, ssl) for socket in sockets] if ssl else list(sockets)
    )
    listener = Listener(factory, host, sockets[0].socket.getsockname()[1])
    async with _service_nursery() as connections, _service_nursery() as accepting:
        serve = partial(trio.serve_listeners, listener._accept, listeners)
        accepting.start_soon(partial(serve, handler_nursery=connections))
        yield listener


class Server(ServerBase):
    """A running sync server (see :func:`serve`)."""


@asynccontextmanager
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
    async with serving(
        event_log,
        _open_loop(),
        partial(serve_peers, host=host, port=port, ssl=ssl),
        options=options,
        authenticator=authenticator,
        authorizer=authorizer,
    ) as (hub, listener):
        yield Server(hub, listener.host, listener.port, secure=ssl is not None)


class _Connector:
    """Opens the client's TCP/TLS streams; ``start_soon`` runs each in the client's tasks."""

    def __init__(
        self,
        start_soon: Callable[[Callable[[], Coroutine[Any, Any, None]]], object],
        ssl: SSLContext | None,
    ) -> None:
        self._start_soon = start_soon
        self._ssl = ssl
        self._batch = WriteBatch()
        self.link: _StreamLink | None = None

    async def wait_closed(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds (even when cancelled) for the last stream to end."""
        with trio.move_on_after(timeout, shield=True):
            if self.link is not None:
                await self.link.finished.wait()

    async def connect(self, target: OpenConnection, receiver: Receiver) -> Link:
        stream: trio.abc.Stream = await trio.open_tcp_stream(target.host, target.port)
        if target.secure:
            context = self._ssl or create_default_context()
            stream = trio.SSLStream(stream, context, server_hostname=target.host)
            try:
                await stream.do_handshake()  # so that a bad certificate fails the attempt
            except BaseException as error:
                await trio.aclose_forcefully(stream)
                if isinstance(error, trio.BrokenResourceError):
                    raise OSError(_lost(error)) from error
                raise
        link = self.link = _StreamLink(stream, self._batch)
        self._start_soon(partial(link.run, lambda: receiver))
        return link


class Client(ClientBase):
    """A running sync client (see :func:`connect`)."""


@asynccontextmanager
async def connect(
    config: ClientConfig,
    host: ClientHost | None = None,
    *,
    ssl: SSLContext | None = None,
    cursors: Mapping[str, int] | None = None,
) -> AsyncIterator[Client]:
    """Run a sync client; on exit close it (close handshake, then the transport)."""
    async with running_client(
        _open_loop(), lambda nursery: _Connector(nursery.start_soon, ssl), config, host, cursors
    ) as driver:
        yield Client(driver)
