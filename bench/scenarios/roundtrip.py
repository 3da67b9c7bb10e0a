"""Scenario 2: sequential push -> ack round trips over loopback, client and server in one process.

* ``lfws-asyncio``, ``lfws-anyio`` (on asyncio), ``lfws-trio``: the lfws
  server (``serve`` with an :class:`~lfws_adapters.event_log.InMemoryEventLog`)
  and the lfws client (``connect`` with a ClientHost); a round trip ends when
  the host hears ``mark_synced`` for the event, as an app would.
* ``websockets``: the peer server and a `websockets` asyncio client sending
  ``push_event`` and awaiting the ``ack``.
* ``lfws-server``: the `websockets` client of the peer against the lfws
  asyncio server: the server's share of the lfws round trip.
* ``raw``: newline-delimited JSON on asyncio Protocols (the ceiling).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.codec import dumps_text, loads
from bench.fixtures import REPOSITORY, event_dicts, push_message, sync_events
from bench.lfws_side import OPTIONS, lfws_pair, run_on
from bench.measure import Contender, RatioSpec, Scenario, Target
from bench.peer import MemoryStore, peer_client, serve_peer
from bench.raw import raw_pair
from bench.settings import Settings
from lfws_adapters.asyncio import serve
from lfws_adapters.event_log import InMemoryEventLog

WARM_UP = 100


def lfws_round_trips(runtime: str, count: int) -> float:
    """Microseconds per round trip through the lfws adapter for ``runtime``."""
    events = sync_events(count + WARM_UP)

    async def main() -> float:
        async with lfws_pair(runtime, InMemoryEventLog()) as (client, host):
            for index, event in enumerate(events):
                if index == WARM_UP:
                    start = time.perf_counter()
                client.push(REPOSITORY, event)
                await host.acked.until(index + 1)
            return (time.perf_counter() - start) / count * 1e6

    return run_on(runtime, main)


async def _websockets_client(port: int, events: list[dict[str, Any]]) -> float:
    count = len(events) - WARM_UP
    async with peer_client(port) as websocket:
        for index, event in enumerate(events):
            if index == WARM_UP:
                start = time.perf_counter()
            await websocket.send(dumps_text(push_message(event)))
            ack = loads(await websocket.recv())
            assert ack["type"] == "ack"
        return (time.perf_counter() - start) / count * 1e6


def websockets_round_trips(count: int) -> float:
    events = event_dicts(count + WARM_UP)

    async def main() -> float:
        async with serve_peer(MemoryStore()) as (_, port):
            return await _websockets_client(port, events)

    return asyncio.run(main())


def lfws_server_round_trips(count: int) -> float:
    """The peer's `websockets` client against the lfws asyncio server."""
    events = event_dicts(count + WARM_UP)

    async def main() -> float:
        async with serve(event_log=InMemoryEventLog(), port=0, options=OPTIONS) as server:
            return await _websockets_client(server.port, events)

    return asyncio.run(main())


def raw_round_trips(count: int) -> float:
    events = event_dicts(count + WARM_UP)

    async def main() -> float:
        async with raw_pair() as client:
            for index, event in enumerate(events):
                if index == WARM_UP:
                    start = time.perf_counter()
                client.push([event])
                await client.acked.until(index + 1)
            return (time.perf_counter() - start) / count * 1e6

    return asyncio.run(main())


def scenario(settings: Settings) -> Scenario:
    count = settings.round_trips
    at_least_2x = Target(">=", 2.0)
    at_least_08x = Target(">=", 0.8)
    return Scenario(
        name="roundtrip",
        title="Loopback push -> ack round trip, sequential",
        unit="us/round trip",
        better="lower",
        params={"round_trips": count, "warm_up": WARM_UP, "store": "memory"},
        contenders=[
            Contender(
                "lfws-asyncio", "lfws, asyncio adapter", lambda: lfws_round_trips("asyncio", count)
            ),
            Contender(
                "lfws-anyio",
                "lfws, anyio adapter on asyncio",
                lambda: lfws_round_trips("anyio", count),
            ),
            Contender("lfws-trio", "lfws, trio adapter", lambda: lfws_round_trips("trio", count)),
            Contender(
                "websockets",
                "websockets peer (asyncio client + server)",
                lambda: websockets_round_trips(count),
            ),
            Contender(
                "lfws-server",
                "websockets client -> lfws asyncio server",
                lambda: lfws_server_round_trips(count),
            ),
            Contender("raw", "raw asyncio NDJSON (ceiling)", lambda: raw_round_trips(count)),
        ],
        ratios=[
            RatioSpec("websockets", "lfws-asyncio", "lfws asyncio speedup", at_least_2x),
            RatioSpec("websockets", "lfws-anyio", "lfws anyio speedup", at_least_08x),
            RatioSpec("websockets", "lfws-trio", "lfws trio speedup", at_least_08x),
            RatioSpec("websockets", "lfws-server", "lfws server speedup (same client)"),
            RatioSpec("raw", "lfws-asyncio", "lfws asyncio share of the ceiling"),
        ],
        note="Time per round trip; a ratio is the peer's time over lfws's (above 1: lfws faster).",
    )
