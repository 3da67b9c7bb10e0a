"""Scenario 4: fan-out, one publisher and many subscribers, deliveries per second.

The same bare WebSocket clients (they only count frames) talk to the lfws
asyncio server (in-memory log) and to the peer, which sends each stored
event with :func:`websockets.asyncio.server.broadcast`. The publisher sends
every push at once (pre-encoded frames); the clock runs from that write
until every subscriber has counted every event.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from bench.fixtures import event_dicts, push_message
from bench.lfws_side import OPTIONS
from bench.measure import Contender, RatioSpec, Scenario, Target
from bench.peer import MemoryStore, serve_peer
from bench.settings import Settings
from bench.wsclient import close_clients, message_frames, open_clients
from lfws_adapters.asyncio import serve
from lfws_adapters.event_log import InMemoryEventLog


@asynccontextmanager
async def lfws_server() -> AsyncIterator[int]:
    async with serve(event_log=InMemoryEventLog(), port=0, options=OPTIONS) as server:
        yield server.port


@asynccontextmanager
async def peer_server() -> AsyncIterator[int]:
    async with serve_peer(MemoryStore()) as (_, port):
        yield port


def fan_out(
    server: Callable[[], AbstractAsyncContextManager[int]], subscribers: int, broadcasts: int
) -> float:
    """Deliveries per second from one publisher to ``subscribers`` clients."""
    frames = message_frames([push_message(event) for event in event_dicts(broadcasts)])

    async def main() -> float:
        async with server() as port:
            clients = await open_clients(port, subscribers, b'"events"')
            (publisher,) = await open_clients(port, 1, b'"ack"')
            start = time.perf_counter()
            publisher.send(frames)
            for client in clients:
                await client.received.until(broadcasts)
            elapsed = time.perf_counter() - start
            await publisher.received.until(broadcasts)
            close_clients([*clients, publisher])
            return subscribers * broadcasts / elapsed

    return asyncio.run(main())


def scenario(settings: Settings) -> Scenario:
    subscribers, broadcasts = settings.fanout_clients, settings.broadcasts
    return Scenario(
        name="fanout",
        title="Fan-out: one publisher, every event to every subscriber",
        unit="deliveries/s",
        better="higher",
        params={"subscribers": subscribers, "broadcasts": broadcasts},
        contenders=[
            Contender(
                "lfws", "lfws asyncio server", lambda: fan_out(lfws_server, subscribers, broadcasts)
            ),
            Contender(
                "websockets",
                "websockets peer, broadcast()",
                lambda: fan_out(peer_server, subscribers, broadcasts),
            ),
        ],
        ratios=[RatioSpec("lfws", "websockets", "lfws speedup", Target(">=", 1.3))],
        note="Deliveries per second (subscribers x events / time); above 1: lfws faster.",
    )
