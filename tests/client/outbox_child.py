"""A child process for the outbox test.

``python outbox_child.py record DB URL``: record two events offline, start the
strategy (which sends them, and three more recorded once connected), print
``ready`` and the five ids, then wait to be killed.

``python outbox_child.py sync DB URL``: start, wait until the outbox is empty,
print ``synced``, dispose and exit.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable

from lfws_adapters import (
    LocalFirstClient,
    Repository,
    SqliteLocalFirstStorage,
    WebSocketSyncStrategy,
)


async def until(condition: Callable[[], Awaitable[bool]]) -> None:
    async with asyncio.timeout(10.0):
        while not await condition():
            await asyncio.sleep(0.005)


async def main(mode: str, db: str, url: str) -> None:
    todos = Repository("todos")
    storage = SqliteLocalFirstStorage(db)
    ws = WebSocketSyncStrategy(url, reconnect_delay=0.05, max_reconnect_delay=0.2)
    client = LocalFirstClient(repositories=[todos], local_storage=storage, sync_strategies=[ws])
    await client.initialize()

    async def connected() -> bool:
        return ws.latest_connection_state

    async def sent() -> bool:
        return not await storage.outbox()

    if mode == "record":
        ids = [(await todos.upsert({"id": f"offline{n}"})).event_id for n in range(2)]
        await ws.start()
        await until(connected)
        ids += [(await todos.upsert({"id": f"online{n}"})).event_id for n in range(3)]
        print("ready", json.dumps(ids), flush=True)
        await asyncio.Event().wait()  # until killed
    await ws.start()
    await until(sent)
    print("synced", flush=True)
    await client.dispose()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
