"""Sync over loopback: push, ack, broadcast and catch-up, on every runtime and event log."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

import anyio
import pytest

from lfws_adapters.event_log import InMemoryEventLog
from lfws_core.actions import ConnectionState
from lfws_core.codec import encode_message
from lfws_core.events import Operation, SyncEvent
from lfws_core.messages import PushEvent

from .helpers import (
    REPOSITORY,
    EventLogs,
    GatedEventLog,
    RawClient,
    client_config,
    documents,
    eventually,
    live,
)
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


async def test_a_store_that_commits_after_its_client_left_is_still_broadcast(
    runtime: Runtime,
) -> None:
    log = GatedEventLog(InMemoryEventLog(), "store")
    writer, reader = RecordingHost("writer"), RecordingHost("reader")
    async with runtime.module.serve(event_log=log, port=0) as server:
        config = client_config(server.url)
        async with runtime.module.connect(config, reader) as r:
            async with runtime.module.connect(config, writer) as w:
                await live(r, w)
                event = writer.edit(w, REPOSITORY, "doc", title="late commit")
                await eventually(lambda: log.waiting == 1)
            await eventually(lambda: len(server.hub.peers) == 1)  # the writer is gone

            log.open()  # the store commits now, with nobody left to ack
            await eventually(lambda: reader.knows([event]))
            assert [e.server_sequence for e in reader.applied] == [1]
            # Live, not by a later catch-up: the reader never reconnected.
            assert [s for s, _ in reader.states].count(ConnectionState.LIVE) == 1


def big_event(n: int) -> SyncEvent:
    return SyncEvent(
        event_id=f"big-{n}",
        operation=Operation.INSERT,
        data_id=f"doc{n}",
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        data={"text": "z" * 64 * 1024},
    )


async def test_pages_and_broadcasts_over_the_message_limit_arrive_in_messages_that_fit(
    runtime: Runtime,
) -> None:
    # 40 events of 64 KiB: a page of them (2.6 MB) is far over the 1 MiB the
    # client accepts; in one message it would be refused (1009) forever.
    log = InMemoryEventLog()
    await log.store(REPOSITORY, [big_event(n) for n in range(1, 41)])
    host = RecordingHost()
    async with (
        runtime.module.serve(event_log=log, port=0) as server,
        runtime.module.connect(client_config(server.url), host) as client,
    ):
        await live(client)
        await eventually(lambda: len(host.applied) == 40)
        stored = await log.store(REPOSITORY, [big_event(n) for n in range(41, 81)])
        server.hub.broadcast(None, REPOSITORY, stored.stored)
        await eventually(lambda: len(host.applied) == 80)
        assert [e.server_sequence for e in host.applied] == list(range(1, 81))
        assert [s for s, _ in host.states].count(ConnectionState.LIVE) == 1


async def test_a_push_that_arrives_with_the_close_frame_is_still_stored(
    runtime: Runtime, logs: EventLogs
) -> None:
    event = SyncEvent(
        event_id="0190a000-0000-7000-8000-0000000000aa",
        operation=Operation.INSERT,
        data_id="last-words",
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        data={"id": "last-words"},
    )
    async with runtime.module.serve(event_log=logs.open(), port=0) as server:
        raw = RawClient(server.port)
        with raw:
            await anyio.to_thread.run_sync(raw.authenticate)
            # The push and the close frame leave in one write: usually one read.
            raw.ws.send_text(encode_message(PushEvent(repository=REPOSITORY, event=event)))
            raw.ws.close(1000, "bye")
            raw.send_texts()
            await anyio.to_thread.run_sync(raw.read_to_end)
        await eventually(lambda: not server.hub.peers)
    assert [e.event_id for e in await logs.stored()] == [event.event_id]


class FailingToMarkOnce(RecordingHost):
    """Its first ``mark_synced`` raises; the later ones record."""

    def __init__(self) -> None:
        super().__init__()
        self.failures = 0

    async def mark_synced(self, repositories: Mapping[str, tuple[str, ...]]) -> None:
        if not self.failures:
            self.failures += 1
            raise OSError("disk full")
        await super().mark_synced(repositories)


async def test_a_host_method_that_fails_is_logged_and_the_later_ones_still_run(
    runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    host = FailingToMarkOnce()
    async with (
        runtime.module.serve(event_log=InMemoryEventLog(), port=0) as server,
        runtime.module.connect(client_config(server.url), host) as client,
    ):
        await live(client)
        host.edit(client, REPOSITORY, "milk", title="buy milk")
        await eventually(lambda: host.failures == 1)
        second = host.edit(client, REPOSITORY, "eggs", title="buy eggs")
        await eventually(lambda: second.event_id in host.synced)
    assert "the local store failed" in caplog.text
