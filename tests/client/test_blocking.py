"""``BlockingClient``: the client API for code without an event loop."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from anyio.from_thread import start_blocking_portal

from lfws_adapters import (
    BlockingClient,
    InMemoryLocalFirstStorage,
    Repository,
    WebSocketSyncStrategy,
)
from lfws_adapters.asyncio import serve
from lfws_adapters.event_log import InMemoryEventLog
from lfws_core.errors import LocalProtocolError

TIMEOUT = 5.0


def eventually(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, "not true in time"
        time.sleep(0.002)


@pytest.fixture
def url() -> Iterator[str]:
    with (
        start_blocking_portal() as portal,
        portal.wrap_async_context_manager(serve(event_log=InMemoryEventLog(), port=0)) as server,
    ):
        yield server.url


def blocking_client(url: str, backend: str = "asyncio") -> BlockingClient:
    ws = WebSocketSyncStrategy(url, reconnect_delay=0.02, max_reconnect_delay=0.1)
    return BlockingClient(
        repositories=[Repository("todos")],
        local_storage=InMemoryLocalFirstStorage(),
        sync_strategies=[ws],
        backend=backend,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_two_blocking_clients_sync(url: str, backend: str) -> None:
    with blocking_client(url, backend) as a, blocking_client(url, backend) as b:
        a.start()
        b.start()
        event = a.upsert("todos", {"id": "milk", "title": "buy milk", "done": False})
        eventually(lambda: b.get("todos", "milk") is not None)
        assert b.get("todos", "milk") == {"id": "milk", "title": "buy milk", "done": False}
        assert b.query("todos", done=False) == [b.get("todos", "milk")]
        assert b.query("todos", where={"done": True}) == []

        todos = b.client.repository("todos")
        deleted = b.delete(todos, "milk")
        assert deleted is not None and deleted.data_id == event.data_id
        eventually(lambda: a.all("todos") == [])
        b.stop()
        b.upsert("todos", {"id": "offline"})  # kept for the next start
        b.start()
        eventually(lambda: a.get("todos", "offline") is not None)


def test_open_and_close_are_idempotent(url: str) -> None:
    client = blocking_client(url)
    with pytest.raises(LocalProtocolError, match="not open"):
        client.all("todos")
    client.open()
    client.open()
    client.upsert("todos", {"id": "a1"})
    assert client.portal.call(client.client.repository("todos").all) == [{"id": "a1"}]
    client.close()
    client.close()
    with pytest.raises(LocalProtocolError, match="not open"):
        client.get("todos", "a1")
