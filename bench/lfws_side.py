"""lfws driven through its public adapter API: ``serve``/``connect`` and a ClientHost."""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from types import ModuleType
from typing import Any

import trio

from bench.fixtures import REPOSITORY, TOKEN
from bench.progress import Progress
from lfws_adapters.driver import ClientHost
from lfws_adapters.event_log import EventLog
from lfws_adapters.hub import ServerOptions
from lfws_core.actions import ConnectionState
from lfws_core.client import ClientConfig
from lfws_core.events import SyncEvent

RUNTIMES = {
    # name: (adapter module, the event loop it runs on)
    "asyncio": ("lfws_adapters.asyncio", "asyncio"),
    "anyio": ("lfws_adapters.anyio", "asyncio"),
    "trio": ("lfws_adapters.trio", "trio"),
}

# No server pings during a measurement; they would only add noise.
OPTIONS = ServerOptions(ping_interval=None, max_connections=100_000)


def run_on(runtime: str, main: Callable[[], Awaitable[float]]) -> float:
    """Run ``main`` on the event loop the lfws ``runtime`` adapter needs."""
    if RUNTIMES[runtime][1] == "trio":
        return trio.run(main)
    return asyncio.run(_call(main))


async def _call(main: Callable[[], Awaitable[float]]) -> float:
    return await main()


def adapter(runtime: str) -> ModuleType:
    """The adapter module (``lfws_adapters.asyncio``, ``.anyio`` or ``.trio``)."""
    return importlib.import_module(RUNTIMES[runtime][0])


class BenchHost(ClientHost):
    """Counts what the client reports: acknowledged pushes, applied events, the cursor."""

    def __init__(self) -> None:
        self.acked = Progress()
        self.applied = Progress()

    async def mark_synced(self, repositories: Mapping[str, tuple[str, ...]]) -> None:
        self.acked.add(sum(len(ids) for ids in repositories.values()))

    async def apply_events(self, repository: str, events: tuple[SyncEvent, ...]) -> None:
        self.applied.add(len(events))


@asynccontextmanager
async def lfws_pair(
    runtime: str,
    event_log: EventLog,
    *,
    max_pending: int = 10_000,
    cursors: Mapping[str, int] | None = None,
    wait_live: bool = True,
) -> AsyncIterator[tuple[Any, BenchHost]]:
    """An lfws server and one client on ``runtime``; yield the client (live) and its host."""
    module = adapter(runtime)
    host = BenchHost()
    async with module.serve(event_log=event_log, port=0, options=OPTIONS) as server:
        config = ClientConfig(
            url=server.url, token=TOKEN, repositories=(REPOSITORY,), max_pending=max_pending
        )
        async with module.connect(config, host, cursors=cursors) as client:
            if wait_live:
                await client.wait_for_state(ConnectionState.LIVE)
            yield client, host
