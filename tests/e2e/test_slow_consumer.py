"""A client that stops reading is dropped; the others never wait for it; catch-up is paced."""

from __future__ import annotations

from datetime import UTC, datetime

import anyio
import pytest

from lfws_adapters.event_log import InMemoryEventLog
from lfws_adapters.hub import ServerOptions
from lfws_core.close_codes import CloseCode
from lfws_core.codec import encode_message
from lfws_core.events import Operation, SyncEvent
from lfws_core.messages import RequestEvents, SyncComplete

from .helpers import (
    REPOSITORY,
    EventLogs,
    RawClient,
    authenticated,
    client_config,
    eventually,
    live,
    peer_named,
)
from .hosts import RecordingHost
from .runtimes import Runtime

pytestmark = pytest.mark.anyio

LIMIT = 256 * 1024
PAYLOAD = "x" * 8 * 1024
BURST = 8  # events a normal client receives at once: 64 KiB, well below LIMIT
# The server queues a 1013 close frame behind what the client has not read;
# when the client still reads nothing within the close timeout, the server
# drops the connection with that frame unsent, and the client sees 1006.
DROPPED = (CloseCode.TRY_AGAIN_LATER, CloseCode.ABNORMAL)


async def test_a_stalled_consumer_is_dropped_and_resumes_from_its_cursor(
    runtime: Runtime, logs: EventLogs
) -> None:
    # Catch-up pages of 16 events stay far below the 1 MiB message limit.
    options = ServerOptions(send_buffer_limit=LIMIT, close_timeout=0.2, page_size=16)
    writer, reader, resumed = RecordingHost("writer"), RecordingHost("reader"), RecordingHost()
    async with runtime.module.serve(event_log=logs.open(), port=0, options=options) as server:
        stalled = RawClient(server.port, receive_buffer=4096)
        await anyio.to_thread.run_sync(stalled.authenticate)
        config = client_config(server.url)
        async with (
            runtime.module.connect(config, writer) as w,
            runtime.module.connect(config, reader) as r,
        ):
            await live(w, r)
            # Flood until the server gives up on the stalled client (it closes
            # with 1013, then drops it); every burst is synced meanwhile.
            while authenticated(server, stalled.name):
                assert len(writer.pushed) < 2000, "the stalled client was never dropped"
                for _ in range(BURST):
                    writer.edit(w, REPOSITORY, f"doc{len(writer.pushed)}", text=PAYLOAD)
                await eventually(writer.all_synced)
            await eventually(lambda: not peer_named(server, stalled.name))
            # Sync goes on without it.
            for _ in range(BURST):
                writer.edit(w, REPOSITORY, f"doc{len(writer.pushed)}", text="after")
            await eventually(writer.all_synced)
            await eventually(lambda: reader.knows(writer.pushed))
            assert [e.server_sequence for e in reader.applied] == list(
                range(1, len(writer.pushed) + 1)
            )

        # What the stalled client got before being cut off ends with a close (1013).
        await anyio.to_thread.run_sync(stalled.read_to_end)
        assert stalled.close_code in DROPPED
        received = [e.server_sequence for e in stalled.events()]
        cursor = len(received)
        assert received == list(range(1, cursor + 1))
        assert cursor <= len(writer.pushed) - BURST

        async with runtime.module.connect(config, resumed, cursors={REPOSITORY: cursor}) as c:
            await live(c)
            await eventually(lambda: resumed.knows(writer.pushed[cursor:]))
            assert [e.server_sequence for e in resumed.applied] == list(
                range(cursor + 1, len(writer.pushed) + 1)
            )


BACKLOG = 5000


def backlog_event(n: int) -> SyncEvent:
    return SyncEvent(
        event_id=f"backlog-{n}",
        operation=Operation.INSERT,
        data_id=f"doc{n}",
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        data={"text": "y" * 1000},
    )


async def test_a_slow_reader_far_behind_is_paced_not_dropped(runtime: Runtime) -> None:
    # About 5 MB of backlog, more than the OS buffers take, against a 64 KiB
    # send buffer: sent at once, it gets the client dropped (1013); paced,
    # it goes a page (about 35 KB) at a time.
    log = InMemoryEventLog()
    await log.store(REPOSITORY, [backlog_event(n) for n in range(1, BACKLOG + 1)])
    options = ServerOptions(send_buffer_limit=64 * 1024, page_size=32)
    async with runtime.module.serve(event_log=log, port=0, options=options) as server:
        with RawClient(server.port, receive_buffer=4096, pause=0.0002) as slow:
            await anyio.to_thread.run_sync(slow.authenticate)
            request = encode_message(RequestEvents(repository=REPOSITORY, after_sequence=0))
            await anyio.to_thread.run_sync(slow.send_texts, request)
            await anyio.to_thread.run_sync(
                slow.read_until,
                lambda: (
                    slow.close_code is not None
                    or any(isinstance(m, SyncComplete) for m in slow.messages)
                ),
            )
            assert slow.close_code is None
            assert [e.server_sequence for e in slow.events()] == list(range(1, BACKLOG + 1))
            assert authenticated(server, slow.name)


FLOW = 10_000
FLOW_BURST = 500


async def test_a_client_that_never_reads_ten_thousand_events_is_dropped_at_the_cap(
    runtime: Runtime,
) -> None:
    # 10,000 events of about 1 KB (10 MB) flow while one client never reads:
    # its queue grows to the 1 MiB cap, it is closed (1013) and dropped;
    # the writer and a reader see every event in order all along, and the
    # dropped client then catches up from its own cursor with no gap.
    options = ServerOptions(send_buffer_limit=1024 * 1024, close_timeout=0.2, page_size=256)
    writer, reader, resumed = RecordingHost("writer"), RecordingHost("reader"), RecordingHost()
    async with runtime.module.serve(
        event_log=InMemoryEventLog(), port=0, options=options
    ) as server:
        stalled = RawClient(server.port, receive_buffer=4096)
        await anyio.to_thread.run_sync(stalled.authenticate)
        config = client_config(server.url)
        async with (
            runtime.module.connect(config, writer) as w,
            runtime.module.connect(config, reader) as r,
        ):
            await live(w, r)
            while len(writer.pushed) < FLOW:
                for _ in range(FLOW_BURST):
                    writer.edit(w, REPOSITORY, f"doc{len(writer.pushed)}", text="z" * 1000)
                await eventually(writer.all_synced)
            await eventually(lambda: reader.knows(writer.pushed))
            assert [e.server_sequence for e in reader.applied] == list(range(1, FLOW + 1))
            assert not peer_named(server, stalled.name)

        await anyio.to_thread.run_sync(stalled.read_to_end)
        assert stalled.close_code in DROPPED
        received = [e.server_sequence for e in stalled.events()]
        cursor = len(received)
        assert received == list(range(1, cursor + 1))
        assert cursor < FLOW // 2  # dropped at the cap, long before the flow ended

        async with runtime.module.connect(config, resumed, cursors={REPOSITORY: cursor}) as c:
            await live(c)
            await eventually(lambda: resumed.knows(writer.pushed[cursor:]))
            assert [e.server_sequence for e in resumed.applied] == list(range(cursor + 1, FLOW + 1))
