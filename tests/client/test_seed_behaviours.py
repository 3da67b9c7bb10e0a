"""The Dart ``WebSocketSyncStrategy``'s behaviours, against a real server over loopback.

Every test runs on both anyio backends; the strategy picks the adapter of the
running one, and the server (see :mod:`.harness`) runs on the same.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import anyio
import pytest

from lfws_adapters import AuthCredentials, SyncStatus
from lfws_adapters.hub import Peer
from lfws_core.actions import ConnectionState, FetchEvents
from lfws_core.client import PushResult
from lfws_core.events import JsonValue, Operation, SyncEvent

from .harness import REPOSITORY, App, Server, app, eventually, recording_authenticator, until

pytestmark = pytest.mark.anyio


async def recorded(a: App, data_id: str) -> SyncEvent:
    """Record a local event in the store only (as a repository does before pushing)."""
    event = a.client.new_event(Operation.INSERT, data_id, {"id": data_id})
    await a.storage.record_local(REPOSITORY, event)
    return event


async def statuses(a: App, events: list[SyncEvent]) -> list[SyncStatus | None]:
    return [await a.storage.status_of(event.event_id) for event in events]


async def status_is(a: App, event: SyncEvent, status: SyncStatus) -> None:
    async def reached() -> bool:
        return await a.storage.status_of(event.event_id) is status

    await until(reached)


# --- the pending queue ----------------------------------------------------------------


async def test_events_queued_while_disconnected_are_flushed_as_one_batch() -> None:
    async with Server() as server, app(server.url) as a:
        await a.connected()
        await server.stop()
        await a.disconnected()
        events = [await a.todos.upsert({"id": f"doc{n}", "n": n}) for n in range(3)]
        health = a.ws.health()
        assert not health.connected
        assert health.next_retry_at is not None or health.state is ConnectionState.CONNECTING
        assert health.pending == 3
        assert await statuses(a, events) == [SyncStatus.PENDING] * 3

        await server.start()
        await a.synced()
        ids = [event.event_id for event in events]
        # One push_events_batch: one store call with the three, in order.
        assert server.log.stores == [(REPOSITORY, ids)]
        assert server.log.ids() == ids
        assert await statuses(a, events) == [SyncStatus.OK] * 3


@pytest.mark.parametrize("enable_pending_queue", [True, False])
async def test_push_results(enable_pending_queue: bool) -> None:
    async with (
        Server() as server,
        app(server.url, enable_pending_queue=enable_pending_queue, start=False) as a,
    ):
        stopped = await recorded(a, "while-stopped")
        offline = PushResult.QUEUED if enable_pending_queue else PushResult.FAILED
        assert await a.ws.push(REPOSITORY, stopped) is offline

        await a.ws.start()
        await a.connected()
        live = await recorded(a, "live")
        assert await a.ws.push(REPOSITORY, live) is PushResult.SENT
        await status_is(a, live, SyncStatus.OK)

        await server.stop()
        await a.disconnected()
        disconnected = await recorded(a, "while-disconnected")
        assert await a.ws.push(REPOSITORY, disconnected) is offline
        expected = SyncStatus.PENDING if enable_pending_queue else SyncStatus.FAILED
        await status_is(a, disconnected, expected)
        assert await a.storage.status_of(stopped.event_id) is SyncStatus.OK
        assert a.ws.health().pending == (1 if enable_pending_queue else 0)

        # Failed is not lost: every connection offers the outbox again.
        await server.start()
        await a.synced()
        assert sorted(server.log.ids()) == sorted(e.event_id for e in (stopped, live, disconnected))
        assert await statuses(a, [stopped, live, disconnected]) == [SyncStatus.OK] * 3


# --- credentials ------------------------------------------------------------------------


async def test_new_credentials_while_connected_reauthenticate_without_reconnecting() -> None:
    authenticator, seen = recording_authenticator(["t1", "t2"])
    async with Server(authenticator=authenticator) as server, app(server.url, auth_token="t1") as a:
        changes = a.ws.connection_changes
        await a.connected()
        a.ws.update_auth_token("t2")
        await eventually(lambda: len(seen) == 2)
        a.ws.update_headers({"X-Device": "phone"})
        await eventually(lambda: len(seen) == 3)
        a.ws.update_credentials(auth_token="t1")  # None keeps the headers
        await eventually(lambda: len(seen) == 4)

        assert [(c.token, dict(c.headers)) for c in seen] == [
            ("t1", {}),
            ("t2", {}),
            ("t2", {"X-Device": "phone"}),
            ("t1", {"X-Device": "phone"}),
        ]
        assert a.ws.auth_token == "t1"
        assert a.ws.headers == {"X-Device": "phone"}
        assert len(server.running.hub.peers) == 1  # one connection throughout
        assert a.ws.state is ConnectionState.LIVE
        await a.ws.dispose()
        assert [connected async for connected in changes] == [True, False]  # no reconnect


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_on_authentication_failed_supplies_the_credentials_used_next(kind: str) -> None:
    authenticator, seen = recording_authenticator(["good"])
    calls: list[str] = []

    def refresh() -> AuthCredentials:
        calls.append("called")
        return AuthCredentials(auth_token="good")

    async def refresh_async() -> AuthCredentials:
        await anyio.sleep(0)
        return refresh()

    callback = refresh if kind == "sync" else refresh_async
    async with (
        Server(authenticator=authenticator) as server,
        app(
            server.url,
            auth_token="bad",
            headers={"X-App": "demo"},
            on_authentication_failed=callback,
        ) as a,
    ):
        await a.connected()
        assert calls == ["called"]
        assert [(c.token, dict(c.headers)) for c in seen] == [
            ("bad", {"X-App": "demo"}),
            ("good", {"X-App": "demo"}),  # headers left out (None) are kept
        ]
        assert a.ws.auth_token == "good"
        await a.todos.upsert({"id": "doc"})
        await a.synced()


async def test_without_on_authentication_failed_the_strategy_waits_for_new_credentials() -> None:
    authenticator, seen = recording_authenticator(["good"])
    async with (
        Server(authenticator=authenticator) as server,
        app(server.url, auth_token="bad") as a,
    ):
        await eventually(lambda: a.ws.state is ConnectionState.NEEDS_CREDENTIALS)
        assert "authentication refused" in a.ws.health().reason
        a.ws.update_auth_token("good")
        await a.connected()
        assert [c.token for c in seen] == ["bad", "good"]


# --- connection state ---------------------------------------------------------------


async def test_connection_changes_follow_the_connection() -> None:
    async with Server() as server, app(server.url, start=False) as a:
        first, second = a.ws.connection_changes, a.ws.connection_changes
        assert a.ws.latest_connection_state is False
        assert a.ws.state is ConnectionState.IDLE
        await a.ws.start()
        await a.connected()
        await server.stop()
        await a.disconnected()
        await server.start()
        await a.connected()
        third = a.ws.connection_changes  # sees only what comes next
        await a.ws.stop()
        assert a.ws.latest_connection_state is False
        assert a.ws.state is ConnectionState.CLOSED
        await a.ws.dispose()  # ends every iterator

        assert [c async for c in first] == [True, False, True, False]
        assert [c async for c in second] == [True, False, True, False]
        assert [c async for c in third] == [False]


# --- catch-up filters and sync completion ---------------------------------------------


async def test_on_build_sync_filter_runs_on_every_connection_and_its_fields_are_sent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sent: list[Mapping[str, JsonValue]] = []
    fetch = Peer._fetch

    async def spy(peer: Peer, action: FetchEvents) -> None:
        sent.append(dict(action.filter))
        await fetch(peer, action)

    monkeypatch.setattr(Peer, "_fetch", spy)
    asked: list[str] = []

    async def build(repository: str) -> Mapping[str, JsonValue] | None:
        asked.append(repository)
        return {"since": "2024-05-01T00:00:00.000Z", "afterSequence": 0}

    async with Server() as server:
        async with app(server.url) as writer:
            await writer.todos.upsert({"id": "doc", "n": 1})
            await writer.synced()
        async with app(server.url, on_build_sync_filter=build) as a:
            await eventually(lambda: len(sent) == 2)  # the writer's catch-up, then a's
            await server.stop()
            await a.disconnected()
            await server.start()
            await eventually(lambda: len(sent) == 3)
            assert asked == [REPOSITORY, REPOSITORY]
            assert sent[1:] == [{"since": "2024-05-01T00:00:00.000Z"}] * 2
            assert server.log.fetches[1:] == [(REPOSITORY, 0), (REPOSITORY, 0)]
            await until(lambda: a.todos.get("doc"))
            assert await a.todos.get("doc") == {"id": "doc", "n": 1}


async def test_without_a_filter_the_stored_cursor_is_used() -> None:
    async with Server() as server:
        async with app(server.url) as writer:
            for n in range(3):
                await writer.todos.upsert({"id": f"doc{n}"})
            await writer.synced()
        async with app(server.url, on_build_sync_filter=lambda repository: None) as a:
            await until(lambda: a.storage.get_cursor(REPOSITORY))
            assert await a.storage.get_cursor(REPOSITORY) == 3
            await a.ws.stop()
            await a.ws.start()
            await eventually(lambda: len(server.log.fetches) == 3)
            assert server.log.fetches == [(REPOSITORY, 0), (REPOSITORY, 0), (REPOSITORY, 3)]


async def test_on_sync_completed_runs_after_the_events_are_applied() -> None:
    completed: list[tuple[str, list[dict[str, JsonValue]], object]] = []
    async with Server() as server, app(server.url) as a:

        async def sync_completed(repository: str, events: list[dict[str, JsonValue]]) -> None:
            completed.append((repository, events, await b.todos.get("milk")))

        async with app(server.url, on_sync_completed=sync_completed) as b:
            await a.live()
            await b.live()  # caught up: the event comes once, live
            event = await a.todos.upsert({"id": "milk", "title": "buy milk"})
            await eventually(lambda: any(events for _, events, _ in completed))

    [(repository, events, document), *_] = [c for c in completed if c[1]]
    assert repository == REPOSITORY
    assert events == [
        {
            "_event_id": event.event_id,
            "_operation": 0,
            "_created_at": events[0]["_created_at"],
            "_data_id": "milk",
            "_data": {"id": "milk", "title": "buy milk"},
            "serverSequence": 1,
        }
    ]
    assert document == {"id": "milk", "title": "buy milk"}  # applied before the callback


# --- callbacks that fail ---------------------------------------------------------------


async def test_callback_exceptions_are_logged_and_never_stop_sync(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(*args: Any) -> None:
        raise RuntimeError("app bug")

    async def broken_async(*args: Any) -> None:
        raise RuntimeError("async app bug")

    async with (
        Server() as server,
        app(server.url) as a,
        app(server.url, on_build_sync_filter=broken, on_sync_completed=broken_async) as b,
    ):
        await b.connected()
        await a.todos.upsert({"id": "milk"})
        await eventually(lambda: b.ws.health().cursors.get(REPOSITORY) == 1)
        await until(lambda: b.storage.get_cursor(REPOSITORY))
        assert await b.todos.get("milk") == {"id": "milk"}
    messages = [record.getMessage() for record in caplog.records]
    assert any("on_sync_completed failed" in m for m in messages)
    assert any("on_build_sync_filter('todos') failed" in m for m in messages)


@pytest.mark.parametrize(
    "answer", [{"limit": 5}, "not a mapping"], ids=["forbidden-field", "not-a-mapping"]
)
async def test_an_unusable_sync_filter_falls_back_to_the_cursor(
    answer: object, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    async with Server() as server, app(server.url, on_build_sync_filter=lambda r: answer) as a:
        await eventually(lambda: a.ws.state is ConnectionState.LIVE)
        await a.todos.upsert({"id": "doc"})
        await a.synced()
    assert any("sync filter" in record.getMessage() for record in caplog.records)


async def test_a_failing_on_authentication_failed_leaves_the_strategy_waiting(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken() -> AuthCredentials:
        raise RuntimeError("token service down")

    authenticator, _ = recording_authenticator(["good"])
    async with (
        Server(authenticator=authenticator) as server,
        app(server.url, auth_token="bad", on_authentication_failed=broken) as a,
    ):
        await eventually(lambda: a.ws.state is ConnectionState.NEEDS_CREDENTIALS)
        a.ws.update_auth_token("good")
        await a.connected()
    assert any("on_authentication_failed failed" in r.getMessage() for r in caplog.records)


# --- lifecycle ------------------------------------------------------------------------


async def test_stop_and_dispose_are_idempotent() -> None:
    async with Server() as server, app(server.url, start=False) as a:
        await a.ws.stop()  # never started: nothing to do
        await a.ws.start()
        await a.ws.start()  # started already: nothing to do
        await a.connected()
        await a.ws.stop()
        await a.ws.stop()
        assert a.ws.state is ConnectionState.CLOSED
        await a.ws.start()  # a stopped strategy starts again
        await a.connected()
        await a.todos.upsert({"id": "doc"})
        await a.synced()
        await a.ws.dispose()
        await a.ws.dispose()
        await a.client.dispose()
        await a.client.dispose()
        with pytest.raises(Exception, match="disposed"):
            await a.ws.start()
        assert server.log.ids() != []
