"""Scenario 6: a client reconnecting behind many missed events, time until caught up.

The server's log already holds ``events`` events; a client whose cursor
is 0 connects, catches up page by page (500 events per ``events`` message,
both servers), confirms each page and is done when it has applied them all.

* ``lfws``: the lfws asyncio server (in-memory log) and client (a
  ClientHost counting ``apply_events``); the clock starts as ``connect``
  is entered, so the handshake and authentication are in.
* ``websockets``: the peer and a `websockets` client that sends
  ``request_events``, decodes each page, answers ``events_received`` and
  stops at ``sync_complete``.
"""

from __future__ import annotations

import asyncio
import time

from bench.codec import dumps_text, loads
from bench.fixtures import REPOSITORY, event_dicts, sync_events
from bench.lfws_side import lfws_pair
from bench.measure import Contender, RatioSpec, Scenario
from bench.peer import MemoryStore, peer_client, serve_peer
from bench.settings import Settings
from lfws_adapters.event_log import InMemoryEventLog
from lfws_core.actions import ConnectionState
from lfws_core.testing import MemoryEventLog


def lfws_catch_up(count: int) -> float:
    """Seconds from ``connect`` to every missed event applied."""
    log = MemoryEventLog()
    log.store(REPOSITORY, sync_events(count))

    async def main() -> float:
        start = time.perf_counter()
        pair = lfws_pair("asyncio", InMemoryEventLog(log), cursors={REPOSITORY: 0}, wait_live=False)
        async with pair as (client, host):
            await host.applied.until(count)
            await client.wait_for_state(ConnectionState.LIVE)
            return time.perf_counter() - start

    return asyncio.run(main())


def websockets_catch_up(count: int) -> float:
    store = MemoryStore()
    for event in event_dicts(count):
        store.store(REPOSITORY, event)

    async def main() -> float:
        async with serve_peer(store) as (_, port):
            start = time.perf_counter()
            async with peer_client(port) as websocket:
                request = {"type": "request_events", "repository": REPOSITORY, "afterSequence": 0}
                await websocket.send(dumps_text(request))
                applied = 0
                while (message := loads(await websocket.recv()))["type"] != "sync_complete":
                    applied += len(message["events"])
                    confirm = {"type": "events_received", "repository": REPOSITORY}
                    await websocket.send(dumps_text({**confirm, "count": len(message["events"])}))
                assert applied == count
                return time.perf_counter() - start

    return asyncio.run(main())


def scenario(settings: Settings) -> Scenario:
    count = settings.catchup_events
    return Scenario(
        name="catchup",
        title="Catch-up: reconnecting behind missed events",
        unit="s",
        better="lower",
        params={"missed_events": count, "page_size": 500, "store": "memory"},
        contenders=[
            Contender("lfws", "lfws asyncio client + server", lambda: lfws_catch_up(count)),
            Contender(
                "websockets", "websockets peer client + server", lambda: websockets_catch_up(count)
            ),
        ],
        ratios=[RatioSpec("websockets", "lfws", "lfws speedup")],
        note="Seconds until caught up; a ratio above 1 means lfws is faster.",
    )
