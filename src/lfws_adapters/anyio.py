"""The anyio runtime: the sync server and client on anyio (asyncio or trio backend).

:func:`serve` and :func:`connect` are the entry points; :func:`serve_peers`
is the bare transport server :func:`serve` builds on. Every protocol decision
is made by :mod:`lfws_adapters.hub` and :mod:`lfws_adapters.driver`; this
module only moves bytes (one reader and one writer task per connection) and
keeps time (one timer task, see :mod:`lfws_adapters._streams`).

TLS streams skip the TLS closing handshake (anyio's ``standard_compatible=False``):
the WebSocket close handshake already marks a clean end, and a ``close_notify``
exchange would need a second reader on a stream the reader task owns.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from ssl import SSLContext, create_default_context

import anyio
from anyio.abc import ByteStream, SocketAttribute, TaskGroup
from anyio.streams.tls import TLSListener

from lfws_core.actions import OpenConnection
from lfws_core.client import ClientConfig
from lfws_core.connection import CLOSE_TIMEOUT

from ._streams import Outbox, TaskLoop, lone_error_unwrapped
from .auth import Authenticator, Authorizer
from .driver import ClientBase, ClientDriver, ClientHost, Receiver
from .event_log import EventLog
from .hub import ServerBase, ServerOptions, SyncHub
from .runtime import Link, PeerFactory

__all__ = ["Client", "Listener", "Server", "connect", "serve", "serve_peers"]

logger = logging.getLogger("lfws.anyio")

_READ_SIZE = 65536
_FLUSH_TIMEOUT = CLOSE_TIMEOUT  # a closing link to a peer that stopped reading is cut


@asynccontextmanager
async def _tasks() -> AsyncIterator[TaskGroup]:
    """Open a task group cancelled when the block ends; a lone error comes out as itself."""
    with lone_error_unwrapped():
        async with anyio.create_task_group() as tasks:
            try:
                yield tasks
            finally:
                tasks.cancel_scope.cancel()


def _new_loop(tasks: TaskGroup) -> TaskLoop:
    loop = TaskLoop(
        clock=anyio.current_time,
        new_event=anyio.Event,
        move_on_at=lambda deadline: anyio.CancelScope(deadline=deadline),
        start_soon=tasks.start_soon,
        logger=logger,
    )
    tasks.start_soon(loop.run_timers)
    return loop


def _describe(error: BaseException) -> str:
    cause = error.__cause__ or error  # anyio wraps OS and TLS errors in BrokenResourceError
    return str(cause) or type(cause).__name__


async def _read(stream: ByteStream, link: _Link, receiver: Receiver) -> str:
    """Feed ``receiver`` what ``stream`` reads until it ends; return why it ended."""
    try:
        while True:
            receiver.data_received(await stream.receive(_READ_SIZE))
    except anyio.EndOfStream:
        # The end of input is input too: a client that half-closes after an
        # HTTP request still gets the answer; the receiver closes the link.
        receiver.data_received(b"")
        await link.finished.wait()
        return "connection closed by the peer"
    except anyio.ClosedResourceError:
        return "connection closed"
    except (anyio.BrokenResourceError, OSError) as error:  # ssl.SSLError is an OSError
        return f"connection lost: {_describe(error)}"
    except Exception:
        logger.exception("a connection callback failed")
        return "internal error"


class _Link(Outbox):
    """A stream as a Link: ``write`` queues and :meth:`send_all`, a task, sends."""

    __slots__ = ("_flushing", "finished")

    def __init__(self) -> None:
        super().__init__(anyio.Event)
        self._flushing = anyio.CancelScope()
        self.finished = anyio.Event()
        """Set once the writer is done: flushed and closed, or failed."""

    def close(self) -> None:
        # Flush, but not forever: a peer that stopped reading (say, a slow
        # consumer being dropped) would hold the connection open.
        deadline = anyio.current_time() + _FLUSH_TIMEOUT
        self._flushing.deadline = min(self._flushing.deadline, deadline)
        super().close()

    async def send_all(self, stream: ByteStream) -> None:
        try:
            with self._flushing:
                await self.pump(stream.send)
        except Exception as error:  # the reader ends too once the stream is closed
            logger.debug("send failed: %s", _describe(error))
        finally:
            self.finished.set()
            await stream.aclose()


class _Transports:
    """The open transports of a server or a client, each run by :meth:`_carry`."""

    def __init__(self) -> None:
        self._open = 0
        self._idle = anyio.Event()
        self._idle.set()

    async def drain(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for every open transport to end."""
        with anyio.move_on_after(timeout):
            await self._idle.wait()

    async def _carry(self, stream: ByteStream, link: _Link, receiver: Receiver) -> None:
        if not self._open:
            self._idle = anyio.Event()
        self._open += 1
        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(link.send_all, stream)
                reason = "connection closed locally"
                try:
                    reason = await _read(stream, link, receiver)
                finally:
                    link.close()
                    receiver.connection_lost(reason)
        finally:
            self._open -= 1
            if not self._open:
                self._idle.set()


class Listener(_Transports):
    """A listening transport server (see :func:`serve_peers`) on ``host``:``port``."""

    def __init__(self, factory: PeerFactory, host: str, port: int) -> None:
        super().__init__()
        self._factory = factory
        self.host = host
        self.port = port
        """The real port, also when 0 was asked for."""

    async def _accept(self, stream: ByteStream) -> None:
        try:
            async with stream:
                address = stream.extra(SocketAttribute.remote_address)
                link = _Link()
                peer = self._factory.connect(link, f"{address[0]}:{address[1]}")
                await self._carry(stream, link, peer)
        except Exception:
            logger.exception("serving a connection failed")


@asynccontextmanager
async def serve_peers(
    factory: PeerFactory,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    ssl: SSLContext | None = None,
) -> AsyncIterator[Listener]:
    """Accept TCP (TLS with ``ssl``) transports for ``factory`` during the block.

    Each one becomes ``factory.connect(link, "ip:port")``, then gets every read
    and finally ``connection_lost``. On exit the listener closes and the
    transports still open are cancelled.
    """
    tcp = await anyio.create_tcp_listener(local_host=host, local_port=port)
    accepting: anyio.abc.Listener[ByteStream] = tcp
    if ssl is not None:
        accepting = TLSListener(tcp, ssl, standard_compatible=False)
    listener = Listener(factory, host, tcp.extra(SocketAttribute.local_port))
    async with accepting, _tasks() as tasks:
        tasks.start_soon(accepting.serve, listener._accept)
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
    """Run a sync server on ``host``:``port`` (TLS with ``ssl``) during the block.

    On exit every client is sent a 1001 close frame and given
    ``options.shutdown_timeout`` seconds to go; then the listener closes, and
    ``event_log`` with it. A cancelled block cancels the transports too, so
    the close frames then go out only on a best-effort basis.
    """
    try:
        async with _tasks() as tasks:
            hub = SyncHub(
                event_log,
                _new_loop(tasks),
                options=options,
                authenticator=authenticator,
                authorizer=authorizer,
            )
            async with serve_peers(hub, host=host, port=port, ssl=ssl) as listener:
                try:
                    yield Server(hub, listener.host, listener.port, secure=ssl is not None)
                finally:
                    hub.shutdown()
                    await listener.drain(hub.options.shutdown_timeout)
    finally:
        with anyio.CancelScope(shield=True):
            await event_log.aclose()


class _Connector(_Transports):
    """Opens the client's transports; each runs in a task of the client's loop."""

    def __init__(self, loop: TaskLoop, ssl: SSLContext | None) -> None:
        super().__init__()
        self._loop = loop
        self._ssl = ssl

    async def connect(self, target: OpenConnection, receiver: Receiver) -> Link:
        stream: ByteStream
        if target.secure:
            self._ssl = self._ssl or create_default_context()
            try:
                stream = await anyio.connect_tcp(
                    target.host,
                    target.port,
                    tls=True,
                    ssl_context=self._ssl,
                    tls_hostname=target.host,
                    tls_standard_compatible=False,
                )
            except (anyio.BrokenResourceError, anyio.EndOfStream) as error:
                raise OSError(f"TLS handshake failed: {_describe(error)}") from error
        else:
            stream = await anyio.connect_tcp(target.host, target.port)
        link = _Link()
        self._loop.spawn(lambda: self._carry(stream, link, receiver))
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
    """Run a sync client during the block, connecting (and reconnecting) from the start.

    ``ssl`` is used for ``wss://`` URLs (default: ``ssl.create_default_context()``).
    On exit the client closes: a close frame, a few seconds for the server's
    answer, then whatever still runs is cancelled.
    """
    async with _tasks() as tasks:
        loop = _new_loop(tasks)
        connector = _Connector(loop, ssl)
        driver = ClientDriver(config, host or ClientHost(), loop, connector, cursors=cursors)
        client = Client(driver)
        driver.start()
        try:
            yield client
        finally:
            driver.close()
            await connector.drain(CLOSE_TIMEOUT)
