"""The anyio runtime: the sync server and client on anyio (asyncio or trio backend).

:func:`serve` and :func:`connect` are the entry points; :func:`serve_peers`
is the bare transport server :func:`serve` builds on. Every protocol decision
is made by :mod:`lfws_adapters.hub` and :mod:`lfws_adapters.driver`.

anyio brings the structured API, not transports of its own: a connection
is what the backend's own adapter makes of it, so a read, a write or a
timer costs what it costs there, without anyio's stream wrappers on every
call. On asyncio the transports are :mod:`lfws_adapters.asyncio`'s Protocols
and the timers the event loop's; on trio they are :mod:`lfws_adapters.trio`'s
streams and timer task. What is anyio's: the life cycle of ``async with``
(shared with the trio adapter, see :func:`~lfws_adapters._streams.serving`):
the background tasks (stores, authentication, the client's store work) are
cancelled and awaited when the block ends, and the closing steps (close
frames, closing the event log) run shielded from the caller's cancellation.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from functools import partial
from ssl import SSLContext

import anyio
from anyio.abc import TaskGroup

from lfws_core.actions import OpenConnection
from lfws_core.client import ClientConfig

from . import asyncio as asyncio_runtime
from ._background import current_library
from ._streams import ClientTransports, TaskLoop, lone_error_unwrapped, running_client, serving
from .auth import Authenticator, Authorizer
from .driver import ClientBase, ClientHost, Receiver
from .event_log import EventLog
from .hub import ServerBase, ServerOptions
from .runtime import Link, Loop, PeerFactory

__all__ = ["Client", "Listener", "Server", "connect", "serve", "serve_peers"]

logger = logging.getLogger("lfws.anyio")


def _on_asyncio() -> bool:
    return current_library() == "asyncio"


@asynccontextmanager
async def _tasks() -> AsyncIterator[TaskGroup]:
    """Open a task group cancelled when the block ends; a lone error comes out as itself."""
    with lone_error_unwrapped():
        async with anyio.create_task_group() as tasks:
            try:
                yield tasks
            finally:
                tasks.cancel_scope.cancel()


@asynccontextmanager
async def _open_loop() -> AsyncIterator[tuple[Loop, TaskGroup | None]]:
    """Yield the drivers' Loop for the running backend, and the task group behind it.

    On asyncio it is the asyncio adapter's Loop (the event loop's clock,
    timers and tasks), without a task group: the Protocol callbacks that
    start tasks run outside any task, where anyio cannot start one. On trio
    the loop's timer task and every transport's tasks run in the group.
    Either way, the tasks still running when the block ends are cancelled
    and awaited.
    """
    if _on_asyncio():
        loop = asyncio_runtime.AsyncioLoop()
        try:
            yield loop, None
        finally:
            with anyio.CancelScope(shield=True):
                await loop.aclose()
    else:
        async with _tasks() as tasks:
            task_loop = TaskLoop(
                clock=anyio.current_time,
                new_event=anyio.Event,
                move_on_at=lambda deadline: anyio.CancelScope(deadline=deadline),
                start_soon=tasks.start_soon,
                logger=logger,
            )
            tasks.start_soon(task_loop.run_timers)
            yield task_loop, tasks


class Listener:
    """A listening transport server (see :func:`serve_peers`) on ``host``:``port``."""

    def __init__(self, host: str, port: int, drain: Callable[[float], Awaitable[None]]) -> None:
        self.host = host
        """The address listened on."""
        self.port = port
        """The real port, also when 0 was asked for."""
        self._drain = drain

    async def drain(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for every open transport to end."""
        with anyio.CancelScope(shield=True):
            await self._drain(timeout)


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
    transports still open are cut off.
    """
    if _on_asyncio():
        async with asyncio_runtime.serve_peers(factory, host=host, port=port, ssl=ssl) as server:
            yield Listener(server.host, server.port, server.transports.wait_gone)
    else:
        from . import trio as trio_runtime

        async with trio_runtime.serve_peers(factory, host=host, port=port, ssl=ssl) as listener:
            yield Listener(listener.host, listener.port, listener.drain)


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
    ``event_log`` with it.
    """
    async with serving(
        event_log,
        _open_loop(),
        partial(serve_peers, host=host, port=port, ssl=ssl),
        options=options,
        authenticator=authenticator,
        authorizer=authorizer,
    ) as (hub, listener):
        yield Server(hub, listener.host, listener.port, secure=ssl is not None)


class _AsyncioConnector:
    """The asyncio adapter's connector and the transports it opened."""

    def __init__(self, ssl: SSLContext | None) -> None:
        self._open = asyncio_runtime._Transports()
        self._connector = asyncio_runtime._Connector(ssl, self._open)

    async def connect(self, target: OpenConnection, receiver: Receiver) -> Link:
        return await self._connector.connect(target, receiver)

    async def wait_closed(self, timeout: float) -> None:
        await self._open.wait_gone(timeout)
        await self._open.abort()


def _connector(tasks: TaskGroup | None, ssl: SSLContext | None) -> ClientTransports:
    if tasks is None:
        return _AsyncioConnector(ssl)
    from . import trio as trio_runtime

    return trio_runtime._Connector(tasks.start_soon, ssl)


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
    async with running_client(
        _open_loop(), partial(_connector, ssl=ssl), config, host, cursors
    ) as driver:
        yield Client(driver)
