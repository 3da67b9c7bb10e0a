"""Two apps through one server: live changes, concurrent offline edits, runtimes."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
import sniffio

from lfws_adapters import (
    InMemoryLocalFirstStorage,
    LocalFirstClient,
    Repository,
    SqliteLocalFirstStorage,
    WebSocketSyncStrategy,
)
from lfws_adapters.local_storage import Change
from lfws_core.errors import LocalProtocolError

from .harness import REPOSITORY, TIMEOUT, App, Server, app, until

pytestmark = pytest.mark.anyio


async def agree(a: App, b: App, documents: int) -> None:
    async def same() -> bool:
        mine = await a.todos.all()
        return len(mine) == documents and mine == await b.todos.all()

    await until(same)


async def test_watch_sees_local_and_remote_changes() -> None:
    async with Server() as server, app(server.url) as a, app(server.url) as b:
        await a.live()
        await b.live()
        async with a.todos.watch() as changes:
            mine = await a.todos.upsert({"id": "milk", "title": "buy milk"})
            theirs = await b.todos.upsert({"id": "bread", "title": "buy bread"})
            gone = await b.todos.delete("bread")
            seen: list[Change] = []
            with anyio.fail_after(TIMEOUT):
                async for change in changes:
                    seen.append(change)
                    if len(seen) == 3:
                        break
    assert gone is not None
    assert [(c.origin, c.event.event_id, c.document) for c in seen] == [
        ("local", mine.event_id, {"id": "milk", "title": "buy milk"}),
        ("remote", theirs.event_id, {"id": "bread", "title": "buy bread"}),
        ("remote", gone.event_id, None),
    ]


async def test_two_apps_converge_after_concurrent_offline_edits(tmp_path: Path) -> None:
    async with (
        Server() as server,
        app(server.url, storage=SqliteLocalFirstStorage(tmp_path / "a.db")) as a,
        app(server.url, storage=SqliteLocalFirstStorage(tmp_path / "b.db")) as b,
    ):
        await a.todos.upsert({"id": "milk", "title": "buy milk"})
        await a.todos.upsert({"id": "bread", "title": "buy bread"})
        await agree(a, b, 2)

        await a.ws.stop()
        await b.ws.stop()
        await a.todos.upsert({"id": "milk", "title": "buy oat milk"})
        await b.todos.upsert({"id": "milk", "title": "buy soy milk"})  # later: it wins
        await a.todos.upsert({"id": "eggs", "title": "buy eggs"})
        await b.todos.delete("bread")
        await a.ws.start()
        await b.ws.start()

        await a.synced()
        await b.synced()
        await agree(a, b, 2)
        assert await a.todos.all() == [
            {"id": "eggs", "title": "buy eggs"},
            {"id": "milk", "title": "buy soy milk"},
        ]
        assert len(server.log.ids()) == 6  # every event once


async def test_the_anyio_runtime_can_be_chosen() -> None:
    async with (
        Server() as server,
        app(server.url, runtime="anyio") as a,
        app(server.url, runtime="anyio") as b,
    ):
        await a.todos.upsert({"id": "milk"})
        await agree(a, b, 1)


async def test_a_runtime_of_another_library_is_refused() -> None:
    other = "trio" if sniffio.current_async_library() == "asyncio" else "asyncio"
    async with app("ws://127.0.0.1:9/sync", runtime=other, start=False) as a:
        with pytest.raises(LocalProtocolError, match=f"runtime='{other}' cannot run on"):
            await a.ws.start()
        assert a.ws.state.value == "idle"


async def test_start_without_a_task_group() -> None:
    """The seed's form, ``initialize()`` then ``start()``: trio needs ``async with`` instead."""
    async with Server() as server:
        todos = Repository(REPOSITORY)
        ws = WebSocketSyncStrategy(server.url)
        client = LocalFirstClient(
            repositories=[todos],
            local_storage=InMemoryLocalFirstStorage(),
            sync_strategies=[ws],
        )
        await client.initialize()
        if sniffio.current_async_library() == "trio":
            with pytest.raises(LocalProtocolError, match="async with LocalFirstClient"):
                await ws.start()
        else:
            await ws.start()
            await todos.upsert({"id": "milk"})

            async def sent() -> bool:
                return not await client.local_storage.outbox()

            await until(sent)
            assert server.log.ids() != []
            await ws.stop()
        await client.dispose()
