"""Scenario 3: pipelined pushes, one client, every event acknowledged.

Each client keeps up to ``window`` pushes unacknowledged (sending half a
window at a time) until every event is acknowledged; the figure is events
per second. Client and server share one process (and its one event loop).

* ``lfws-memory``/``lfws-sqlite``: the lfws asyncio client and server with
  an :class:`~lfws_adapters.event_log.InMemoryEventLog` or a
  :class:`~lfws_adapters.sqlite_event_log.SqliteEventLog`;
* ``websockets-memory``/``websockets-sqlite``: the peer (same stores'
  contract: a set of ids, or one SQLite transaction per push in WAL mode
  with ``synchronous=NORMAL``) and a `websockets` client;
* ``raw``: newline-delimited JSON on asyncio Protocols (the ceiling);
* ``lfws-server``/``websockets-server``: one bare WebSocket client that
  sends pre-encoded frames against either server (in memory): the servers
  alone.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

from bench.codec import dumps_text, loads
from bench.fixtures import REPOSITORY, event_dicts, push_message, sync_events
from bench.lfws_side import OPTIONS, lfws_pair
from bench.measure import Contender, RatioSpec, Scenario, Target
from bench.peer import MemoryStore, PeerStore, SqliteStore, peer_client, serve_peer
from bench.progress import Progress, pipeline
from bench.raw import raw_pair
from bench.settings import Settings
from bench.wsclient import message_frames, open_clients
from lfws_adapters.asyncio import serve
from lfws_adapters.event_log import EventLog, InMemoryEventLog
from lfws_adapters.sqlite_event_log import SqliteEventLog


@asynccontextmanager
async def _directory() -> AsyncIterator[Path]:
    with tempfile.TemporaryDirectory(prefix="lfws-bench-") as name:
        yield Path(name)


def _lfws_log(kind: str, directory: Path) -> EventLog:
    return SqliteEventLog(directory / "events.db") if kind == "sqlite" else InMemoryEventLog()


def _peer_store(kind: str, directory: Path) -> PeerStore:
    return SqliteStore(directory / "events.db") if kind == "sqlite" else MemoryStore()


def lfws_pipelined(kind: str, count: int, window: int) -> float:
    events = sync_events(window + count)

    async def main() -> float:
        async with _directory() as directory:
            log = _lfws_log(kind, directory)
            async with lfws_pair("asyncio", log) as (client, host):

                async def send(first: int, last: int) -> None:
                    for event in events[first:last]:
                        client.push(REPOSITORY, event)

                await pipeline(send, host.acked, 0, window, window)  # warm-up
                return await pipeline(send, host.acked, window, window + count, window)

    return asyncio.run(main())


def websockets_pipelined(kind: str, count: int, window: int) -> float:
    events = event_dicts(window + count)

    async def main() -> float:
        async with _directory() as directory:
            store = _peer_store(kind, directory)
            async with serve_peer(store) as (_, port), peer_client(port) as websocket:
                acked = Progress()

                async def receive() -> None:
                    async for raw in websocket:
                        if loads(raw)["type"] == "ack":
                            acked.add(1)

                async def send(first: int, last: int) -> None:
                    for event in events[first:last]:
                        await websocket.send(dumps_text(push_message(event)))

                receiver = asyncio.create_task(receive())
                await pipeline(send, acked, 0, window, window)
                rate = await pipeline(send, acked, window, window + count, window)
                receiver.cancel()
                return rate

    return asyncio.run(main())


def raw_pipelined(count: int, window: int) -> float:
    events = event_dicts(window + count)

    async def main() -> float:
        async with raw_pair() as client:

            async def send(first: int, last: int) -> None:
                client.push(events[first:last])

            await pipeline(send, client.acked, 0, window, window)
            return await pipeline(send, client.acked, window, window + count, window)

    return asyncio.run(main())


def _lfws_server() -> AbstractAsyncContextManager[Any]:
    return serve(event_log=InMemoryEventLog(), port=0, options=OPTIONS)


@asynccontextmanager
async def _lfws_port() -> AsyncIterator[int]:
    async with _lfws_server() as server:
        yield server.port


@asynccontextmanager
async def _peer_port() -> AsyncIterator[int]:
    async with serve_peer(MemoryStore()) as (_, port):
        yield port


def server_pipelined(
    server: Callable[[], AbstractAsyncContextManager[int]], count: int, window: int
) -> float:
    """One bare client pushing pre-encoded frames: the server's throughput."""
    chunk = max(window // 2, 1)
    events = event_dicts(window + count)
    frames = [
        message_frames([push_message(event) for event in events[first : first + chunk]])
        for first in range(0, len(events), chunk)
    ]

    async def main() -> float:
        async with server() as port:
            (client,) = await open_clients(port, 1, b'"ack"')

            async def send(first: int, last: int) -> None:
                client.send(frames[first // chunk])

            await pipeline(send, client.received, 0, window, window)
            rate = await pipeline(send, client.received, window, window + count, window)
            client.transport.abort()
            return rate

    return asyncio.run(main())


def scenario(settings: Settings) -> Scenario:
    count, window = settings.pipelined, settings.window
    four_x = Target(">=", 4.0)
    return Scenario(
        name="pipelined",
        title="Pipelined pushes, one client, each acknowledged",
        unit="events/s",
        better="higher",
        params={"events": count, "window": window, "warm_up": window},
        contenders=[
            Contender(
                "lfws-memory",
                "lfws asyncio, in-memory log",
                lambda: lfws_pipelined("memory", count, window),
            ),
            Contender(
                "websockets-memory",
                "websockets peer, in memory",
                lambda: websockets_pipelined("memory", count, window),
            ),
            Contender(
                "lfws-sqlite",
                "lfws asyncio, SQLite log",
                lambda: lfws_pipelined("sqlite", count, window),
            ),
            Contender(
                "websockets-sqlite",
                "websockets peer, SQLite",
                lambda: websockets_pipelined("sqlite", count, window),
            ),
            Contender("raw", "raw asyncio NDJSON (ceiling)", lambda: raw_pipelined(count, window)),
            Contender(
                "lfws-server",
                "bare client -> lfws asyncio server",
                lambda: server_pipelined(_lfws_port, count, window),
            ),
            Contender(
                "websockets-server",
                "bare client -> websockets peer server",
                lambda: server_pipelined(_peer_port, count, window),
            ),
        ],
        ratios=[
            RatioSpec("lfws-memory", "websockets-memory", "lfws speedup, in memory", four_x),
            RatioSpec("lfws-memory", "raw", "lfws share of the ceiling", Target(">=", 0.4)),
            RatioSpec("lfws-sqlite", "websockets-sqlite", "lfws speedup, SQLite", four_x),
            RatioSpec("lfws-server", "websockets-server", "lfws server speedup (same client)"),
        ],
        note="Events per second; a ratio above 1 means lfws is faster.",
    )
