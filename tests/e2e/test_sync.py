"""Sync over loopback: push, ack, broadcast and catch-up, on every runtime and event log."""

from __future__ import annotations

import pytest

from .helpers import REPOSITORY, EventLogs, client_config, documents, eventually, live
from .hosts import RecordingHost
from .runtimes import Runtime

pytestmark = pytest.mark.anyio


async def test_a_push_is_acked_and_broadcast_to_the_other_client(
    runtime: Runtime, logs: EventLogs
) -> None:
    alice, bob = RecordingHost("alice"), RecordingHost("bob")
    async with runtime.module.serve(event_log=logs.open(), port=0) as server:
        assert server.url == f"ws://127.0.0.1:{server.port}/sync"
        config = client_config(server.url)
        async with (
            runtime.module.connect(config, alice) as a,
            runtime.module.connect(config, bob) as b,
        ):
            await live(a, b)
            event = alice.edit(a, REPOSITORY, "milk", title="buy milk")

            await eventually(alice.all_synced)
            await eventually(lambda: bob.knows([event]))

            assert [e.event_id for e in bob.applied] == [event.event_id]
            assert bob.applied[0].server_sequence == 1
            assert bob.replica.documents(REPOSITORY) == alice.replica.documents(REPOSITORY)
            assert alice.applied == []  # the server does not echo a push to its author
            assert a.health().pending == 0
    assert [e.event_id for e in await logs.stored()] == [event.event_id]


@pytest.mark.parametrize("repositories", [(REPOSITORY,), ()], ids=["request_events", "all"])
async def test_a_late_client_catches_up_to_the_server_log(
    runtime: Runtime, logs: EventLogs, repositories: tuple[str, ...]
) -> None:
    writer, late = RecordingHost("writer"), RecordingHost("late")
    async with runtime.module.serve(event_log=logs.open(), port=0) as server:
        async with runtime.module.connect(client_config(server.url), writer) as w:
            await live(w)
            for n in range(30):
                writer.edit(w, REPOSITORY, f"doc{n % 7}", n=n)
            await eventually(writer.all_synced)

        config = client_config(server.url, repositories=repositories)
        async with runtime.module.connect(config, late) as client:
            await live(client)
            await eventually(lambda: late.knows(writer.pushed))
            stored = await server.hub.event_log.fetch(REPOSITORY, 0, 1000)

            assert [e.event_id for e in late.applied] == [e.event_id for e in stored]
            assert [e.server_sequence for e in late.applied] == list(range(1, 31))
            assert late.replica.documents(REPOSITORY) == documents(stored)
            assert late.replica.documents(REPOSITORY) == writer.replica.documents(REPOSITORY)
            await eventually(lambda: client.health().cursors == {REPOSITORY: 30})


async def test_a_client_with_a_cursor_receives_only_what_came_after(
    runtime: Runtime, logs: EventLogs
) -> None:
    writer, resumed = RecordingHost("writer"), RecordingHost("resumed")
    async with runtime.module.serve(event_log=logs.open(), port=0) as server:
        async with runtime.module.connect(client_config(server.url), writer) as w:
            await live(w)
            for n in range(10):
                writer.edit(w, REPOSITORY, f"doc{n}", n=n)
            await eventually(writer.all_synced)

        config = client_config(server.url)
        async with runtime.module.connect(config, resumed, cursors={REPOSITORY: 6}) as client:
            await live(client)
            await eventually(lambda: resumed.knows(writer.pushed[6:]))
            assert [e.server_sequence for e in resumed.applied] == [7, 8, 9, 10]
            assert [e.event_id for e in resumed.applied] == [e.event_id for e in writer.pushed[6:]]
