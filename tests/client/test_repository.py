"""Repositories and the client without a server: local writes, reads, queries and watchers."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from lfws_adapters import (
    InMemoryLocalFirstStorage,
    LocalFirstClient,
    Repository,
    SqliteLocalFirstStorage,
    SyncStatus,
    WebSocketSyncStrategy,
)
from lfws_adapters.local_storage import LocalFirstStorage
from lfws_core.client import PushResult
from lfws_core.errors import LocalProtocolError
from lfws_core.events import Operation, SyncEvent

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["memory", "sqlite"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> LocalFirstStorage:
    if request.param == "sqlite":
        return SqliteLocalFirstStorage(tmp_path / "app.db")
    return InMemoryLocalFirstStorage()


@pytest.fixture
async def todos(storage: LocalFirstStorage) -> AsyncIterator[Repository]:
    repository = Repository("todos")
    async with LocalFirstClient(repositories=[repository], local_storage=storage):
        yield repository


async def test_upsert_inserts_then_updates_the_whole_document(
    todos: Repository, storage: LocalFirstStorage
) -> None:
    first = await todos.upsert({"id": "a1", "title": "buy milk", "tags": ["shop"]})
    second = await todos.upsert({"id": "a1", "title": "buy oat milk"})

    assert (first.operation, second.operation) == (Operation.INSERT, Operation.UPDATE)
    assert second.data == {"id": "a1", "title": "buy oat milk"}
    assert first.event_id < second.event_id  # UUIDv7: ordered by creation
    assert first.created_at < second.created_at
    assert await todos.get("a1") == {"id": "a1", "title": "buy oat milk"}
    assert [e.event_id for _, e in await storage.outbox()] == [first.event_id, second.event_id]
    assert await storage.status_of(first.event_id) is SyncStatus.PENDING


async def test_reads_are_copies(todos: Repository) -> None:
    await todos.upsert({"id": "a1", "tags": ["x"]})
    document = await todos.get("a1")
    assert document is not None
    document["tags"] = []
    assert await todos.get("a1") == {"id": "a1", "tags": ["x"]}


async def test_delete_leaves_a_tombstone(todos: Repository) -> None:
    assert await todos.delete("missing") is None
    await todos.upsert({"id": "a1"})
    await todos.upsert({"id": "b2"})
    event = await todos.delete("a1")
    assert event is not None
    assert (event.operation, event.data_id, event.data) == (Operation.DELETE, "a1", None)
    assert await todos.get("a1") is None
    assert await todos.all() == [{"id": "b2"}]
    again = await todos.upsert({"id": "a1", "back": True})
    assert again.operation is Operation.INSERT
    assert await todos.get("a1") == {"id": "a1", "back": True}


async def test_query_by_fields(todos: Repository) -> None:
    await todos.upsert({"id": "a", "done": True, "n": 1})
    await todos.upsert({"id": "b", "done": False, "n": 1})
    await todos.upsert({"id": "c", "done": 1, "n": 2})
    await todos.upsert({"id": "d", "where": "home"})

    assert [d["id"] for d in await todos.query(done=True)] == ["a"]  # JSON: true is not 1
    assert [d["id"] for d in await todos.query(where={"n": 1})] == ["a", "b"]
    assert [d["id"] for d in await todos.query({"n": 1}, done=False)] == ["b"]
    assert [d["id"] for d in await todos.query(where={"where": "home"})] == ["d"]
    assert len(await todos.query()) == 4


async def test_a_custom_id_field(storage: LocalFirstStorage) -> None:
    users = Repository("users", id_field="uid")
    async with LocalFirstClient(repositories=[users], local_storage=storage):
        event = await users.upsert({"uid": "u1", "name": "Ada"})
        assert event.data_id == "u1"
        assert await users.get("u1") == {"uid": "u1", "name": "Ada"}
        with pytest.raises(LocalProtocolError, match="'uid' must be a non-empty string"):
            await users.upsert({"id": "u2"})


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"title": "no id"}, "'id' must be a non-empty string"),
        ({"id": 7}, "'id' must be a non-empty string"),
        ({"id": ""}, "'id' must be a non-empty string"),
        ({"id": "a1", "when": object()}, "cannot store"),
        ({"id": "a1", "x": float("nan")}, "cannot store"),
        (["id", "a1"], "must be a mapping"),
    ],
)
async def test_bad_documents_are_refused_and_store_nothing(
    todos: Repository, storage: LocalFirstStorage, document: Any, message: str
) -> None:
    with pytest.raises(LocalProtocolError, match=message):
        await todos.upsert(document)
    assert await storage.outbox() == []
    assert await todos.all() == []


async def test_a_repository_is_used_through_an_initialized_client() -> None:
    todos = Repository("todos")
    with pytest.raises(LocalProtocolError, match="not in use yet"):
        await todos.upsert({"id": "a1"})
    client = LocalFirstClient(repositories=[todos], local_storage=InMemoryLocalFirstStorage())
    await client.initialize()
    await client.initialize()  # idempotent
    assert client.repository("todos") is todos
    with pytest.raises(LocalProtocolError, match="another LocalFirstClient"):
        await LocalFirstClient(
            repositories=[todos], local_storage=InMemoryLocalFirstStorage()
        ).initialize()
    await client.dispose()
    with pytest.raises(LocalProtocolError, match="disposed"):
        await client.initialize()


def test_names_are_checked() -> None:
    with pytest.raises(LocalProtocolError, match="repository name"):
        Repository("")
    with pytest.raises(LocalProtocolError, match="id_field"):
        Repository("todos", id_field="")
    with pytest.raises(LocalProtocolError, match="same name"):
        LocalFirstClient(
            repositories=[Repository("todos"), Repository("todos")],
            local_storage=InMemoryLocalFirstStorage(),
        )


# --- watchers ----------------------------------------------------------------------


async def test_watch_sees_local_and_remote_changes(storage: LocalFirstStorage) -> None:
    todos = Repository("todos")
    async with (
        LocalFirstClient(repositories=[todos], local_storage=storage) as client,
        todos.watch() as changes,
    ):
        local = await todos.upsert({"id": "a1", "title": "mine"})
        remote = client.new_event(Operation.INSERT, "b2", {"id": "b2", "title": "theirs"})
        await client.apply_remote("todos", [remote.with_sequence(1)])
        await client.apply_remote("todos", [remote.with_sequence(1)])  # known: no change
        deleted = await todos.delete("a1")

        seen = [await anext(changes) for _ in range(3)]
    assert [(c.id, c.origin, c.event.event_id) for c in seen] == [
        ("a1", "local", local.event_id),
        ("b2", "remote", remote.event_id),
        ("a1", "local", deleted.event_id if deleted else None),
    ]
    assert seen[0].document == {"id": "a1", "title": "mine"}
    assert seen[2].document is None


async def test_watchers_end_when_the_client_is_disposed() -> None:
    todos = Repository("todos")
    early = todos.watch()  # before the client exists: fine
    async with LocalFirstClient(repositories=[todos], local_storage=InMemoryLocalFirstStorage()):
        watcher = todos.watch()
        await todos.upsert({"id": "a1"})
    assert [c.id async for c in early] == ["a1"]  # what was buffered, then the end
    assert [c.id async for c in watcher] == ["a1"]
    assert [c async for c in todos.watch()] == []  # after dispose: ends at once


async def test_a_slow_watcher_loses_its_oldest_changes_and_blocks_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    todos = Repository("todos")
    async with LocalFirstClient(repositories=[todos], local_storage=InMemoryLocalFirstStorage()):
        slow = todos.watch(buffer=2)
        for n in range(5):
            await todos.upsert({"id": f"d{n}"})
        assert slow.dropped == 3
        assert [(await anext(slow)).id for _ in range(2)] == ["d3", "d4"]
        await slow.aclose()
        await todos.upsert({"id": "after"})  # a closed watcher is skipped
    assert any("falls behind" in r.getMessage() for r in caplog.records)
    with pytest.raises(LocalProtocolError, match="buffer"):
        todos.watch(buffer=0)


async def test_an_abandoned_watcher_is_released() -> None:
    todos = Repository("todos")
    async with LocalFirstClient(repositories=[todos], local_storage=InMemoryLocalFirstStorage()):
        todos.watch()  # never read nor closed: no unclosed-stream warning
        gc.collect()
        await todos.upsert({"id": "a1"})


# --- strategies as the client sees them ------------------------------------------------


class BrokenStrategy:
    def __init__(self) -> None:
        self.disposed = 0

    def attach(self, client: LocalFirstClient) -> None:
        pass

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def push(self, repository: str, event: SyncEvent) -> PushResult:
        raise RuntimeError("strategy bug")

    async def dispose(self) -> None:
        self.disposed += 1
        raise RuntimeError("dispose bug")


async def test_a_failing_strategy_loses_no_local_write(caplog: pytest.LogCaptureFixture) -> None:
    todos = Repository("todos")
    broken = BrokenStrategy()
    storage = InMemoryLocalFirstStorage()
    async with LocalFirstClient(
        repositories=[todos], local_storage=storage, sync_strategies=[broken]
    ):
        event = await todos.upsert({"id": "a1"})
        assert await storage.status_of(event.event_id) is SyncStatus.PENDING  # in the outbox
    assert broken.disposed == 1
    assert any("failed to take event" in r.getMessage() for r in caplog.records)
    assert any("disposing of" in r.getMessage() for r in caplog.records)


async def test_a_strategy_that_is_not_started_keeps_events_in_the_outbox() -> None:
    todos = Repository("todos")
    queued = WebSocketSyncStrategy("ws://127.0.0.1:9/sync")
    unqueued = WebSocketSyncStrategy("ws://127.0.0.1:9/sync", enable_pending_queue=False)
    storage = InMemoryLocalFirstStorage()
    async with LocalFirstClient(
        repositories=[todos], local_storage=storage, sync_strategies=[queued, unqueued]
    ) as client:
        event = client.new_event(Operation.INSERT, "a1", {"id": "a1"})
        await storage.record_local("todos", event)
        assert await queued.push("todos", event) is PushResult.QUEUED
        assert await unqueued.push("todos", event) is PushResult.FAILED
        assert await storage.status_of(event.event_id) is SyncStatus.FAILED
        assert [e.event_id for _, e in await storage.outbox()] == [event.event_id]
        health = queued.health()
        assert (health.state.value, health.pending, health.connected) == ("idle", 0, False)


def test_strategy_settings_are_checked_at_once() -> None:
    ws = WebSocketSyncStrategy(
        "ws://localhost:8080/sync",
        reconnect_delay=timedelta(seconds=90),  # above the default ceiling: the ceiling follows
        heartbeat_interval=timedelta(seconds=5),
        pong_timeout=2.0,
    )
    assert ws.websocket_url == "ws://localhost:8080/sync"
    assert ws.auth_token is None and ws.headers == {}
    with pytest.raises(LocalProtocolError, match="starts with ws:// or wss://"):
        WebSocketSyncStrategy("http://localhost/sync")
    with pytest.raises(LocalProtocolError, match="url cannot be set"):
        WebSocketSyncStrategy("ws://localhost/sync", url="ws://elsewhere/")  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError, match="unexpected keyword"):
        WebSocketSyncStrategy("ws://localhost/sync", colour=1.0)
    with pytest.raises(LocalProtocolError, match="runtime"):
        WebSocketSyncStrategy("ws://localhost/sync", runtime="curio")  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError, match="header"):
        WebSocketSyncStrategy("ws://localhost/sync", headers={"bad name": "x"})
    with pytest.raises(LocalProtocolError, match="token"):
        ws.update_auth_token("")
    assert ws.auth_token is None  # a refused update changes nothing


async def test_a_strategy_is_used_through_a_client() -> None:
    ws = WebSocketSyncStrategy("ws://127.0.0.1:9/sync")
    with pytest.raises(LocalProtocolError, match="not attached"):
        await ws.start()
    with pytest.raises(LocalProtocolError, match="another LocalFirstClient"):
        async with LocalFirstClient(
            repositories=[], local_storage=InMemoryLocalFirstStorage(), sync_strategies=[ws]
        ):
            ws.attach(LocalFirstClient(repositories=[], local_storage=InMemoryLocalFirstStorage()))


async def test_a_client_outlives_an_error_in_its_block(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    todos = Repository("todos")
    storage = InMemoryLocalFirstStorage()
    with pytest.raises(ZeroDivisionError):
        async with LocalFirstClient(repositories=[todos], local_storage=storage):
            await todos.upsert({"id": "a1"})
            _ = 1 / 0
    with pytest.raises(Exception, match="closed"):
        await storage.outbox()  # disposed on the way out
