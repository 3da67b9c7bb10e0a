"""What only the asyncio adapter promises: one write per read, the close linger, its tasks."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

import anyio
import pytest
from tests.e2e.helpers import (
    REPOSITORY,
    RawClient,
    authenticated,
    client_config,
    eventually,
    live,
    peer_named,
)
from tests.e2e.hosts import RecordingHost

from lfws_adapters import asyncio as adapter
from lfws_adapters.event_log import InMemoryEventLog
from lfws_adapters.hub import ServerOptions
from lfws_core.codec import encode_message
from lfws_core.events import Operation, SyncEvent
from lfws_core.messages import Ack, PushEvent

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def push(n: int) -> str:
    event = SyncEvent(
        event_id=f"e{n}",
        operation=Operation.INSERT,
        data_id=f"doc{n}",
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        data={"n": n},
    )
    return encode_message(PushEvent(repository="todos", event=event))


def acks(client: RawClient) -> list[str]:
    return [i for m in client.messages if isinstance(m, Ack) for i in m.event_ids]


async def test_everything_answered_to_one_read_leaves_in_one_write() -> None:
    async with adapter.serve(event_log=InMemoryEventLog(), port=0) as server:
        with RawClient(server.port) as client:
            await anyio.to_thread.run_sync(client.authenticate)
            (peer,) = server.hub.peers
            writes: list[bytes] = []
            transport = peer.link._transport
            real_write = transport.write
            transport.write = lambda data: (writes.append(data), real_write(data))[1]

            await anyio.to_thread.run_sync(client.send_texts, *[push(n) for n in range(5)])
            await anyio.to_thread.run_sync(client.read_until, lambda: len(acks(client)) == 5)

            assert acks(client) == [f"e{n}" for n in range(5)]
            assert len(writes) == 1  # five stores, five acks: one system call


async def test_a_peer_that_never_reads_is_cut_off_after_the_close(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(adapter, "CLOSE_TIMEOUT", 0.05)
    options = ServerOptions(send_buffer_limit=16 * 1024, close_timeout=0.05)
    async with adapter.serve(event_log=InMemoryEventLog(), port=0, options=options) as server:
        with RawClient(server.port, receive_buffer=4096) as stalled:
            await anyio.to_thread.run_sync(stalled.authenticate)
            (peer,) = server.hub.peers
            stream = peer.link
            sequence = 0
            while authenticated(server, stalled.name):
                sequence += 1
                server.hub.broadcast(None, "todos", (_event(sequence),))
                await anyio.sleep(0)
            await eventually(lambda: not peer_named(server, stalled.name))
            assert stream.buffered() > 0  # the close could not flush: the peer reads nothing
            await eventually(stream.gone.is_set)


def _event(sequence: int) -> SyncEvent:
    return SyncEvent(
        event_id=f"e{sequence}",
        operation=Operation.INSERT,
        data_id="doc",
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        data={"text": "x" * 8192},
        server_sequence=sequence,
    )


async def test_background_tasks_are_logged_and_cancelled(caplog: pytest.LogCaptureFixture) -> None:
    loop = adapter.AsyncioLoop()
    started = asyncio.Event()

    async def fail() -> None:
        raise RuntimeError("boom")

    async def forever() -> None:
        started.set()
        await asyncio.Event().wait()

    with caplog.at_level(logging.ERROR, logger="lfws.asyncio"):
        loop.spawn(fail)
        loop.spawn(forever)
        await started.wait()
        await loop.aclose()
    assert [r.exc_info[1].args for r in caplog.records if r.exc_info] == [("boom",)]
    assert not loop._tasks


async def test_serve_peers_hands_every_transport_to_the_factory() -> None:
    received: list[bytes] = []

    class Echo:
        def __init__(self, link: adapter.Link) -> None:
            self.link = link

        def data_received(self, data: bytes) -> None:
            received.append(data)
            self.link.write(data.upper())
            if not data:  # the end of input: nothing more to answer
                self.link.close()

        def connection_lost(self, reason: str = "") -> None:
            received.append(b"lost")

    class Factory:
        def connect(self, link: adapter.Link, name: str) -> Echo:
            assert name.startswith("127.0.0.1:")
            return Echo(link)

    async with adapter.serve_peers(Factory(), port=0) as listener:
        reader, writer = await asyncio.open_connection(listener.host, listener.port)
        writer.write(b"hello")
        assert await reader.readexactly(5) == b"HELLO"
        writer.close()
        await eventually(lambda: received == [b"hello", b"", b"lost"])


async def test_drained_waits_for_a_slow_reader_and_ends_with_the_connection() -> None:
    links: list[adapter.Link] = []

    class Silent:
        def data_received(self, data: bytes) -> None:
            pass

        def connection_lost(self, reason: str = "") -> None:
            pass

    class Factory:
        def connect(self, link: adapter.Link, name: str) -> Silent:
            links.append(link)
            return Silent()

    async with adapter.serve_peers(Factory(), port=0) as listener:
        with RawClient(listener.port, receive_buffer=4096) as reader:
            reader.sock.connect(("127.0.0.1", listener.port))
            await eventually(lambda: links)
            (link,) = links
            link.write(b"x" * (8 << 20))  # more than the OS buffers take
            waiter = asyncio.ensure_future(link.drained())
            await asyncio.sleep(0.05)
            assert not waiter.done()
            assert link.buffered() > 0

            def read_all() -> None:
                received = 0
                while received < 8 << 20:
                    received += len(reader.sock.recv(1 << 20))

            await anyio.to_thread.run_sync(read_all)
            await asyncio.wait_for(waiter, 5)
            assert link.buffered() == 0

            link.write(b"y" * (8 << 20))
            waiter = asyncio.ensure_future(link.drained())
            reader.sock.close()  # gone without reading: drained() returns too
            await asyncio.wait_for(waiter, 5)


async def test_pushes_in_a_row_leave_in_one_write_a_lone_push_at_once() -> None:
    host = RecordingHost()
    async with (
        adapter.serve(event_log=InMemoryEventLog(), port=0) as server,
        adapter.connect(client_config(server.url), host) as client,
    ):
        await live(client)
        writes: list[bytes] = []
        transport = client.driver._link._transport
        real_write = transport.write
        transport.write = lambda data: (writes.append(data), real_write(data))[1]

        for n in range(3):
            host.edit(client, REPOSITORY, f"doc{n}", n=n)
        assert len(writes) == 1  # the first at once: it may be alone
        await asyncio.sleep(0)
        assert len(writes) == 2  # the two that followed it, together
        await eventually(host.all_synced)

        host.edit(client, REPOSITORY, "doc3", n=3)
        assert len(writes) == 3  # after a read (the acks), a push leaves at once
        await eventually(host.all_synced)
