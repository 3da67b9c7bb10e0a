"""The native trio adapter over loopback: sync, TLS, graceful shutdown."""

from __future__ import annotations

import contextlib
import gc
import os
import socket
import ssl
import struct

import pytest
import trio
import trio.testing
import trustme
from tests.e2e.helpers import eventually
from tests.e2e.hosts import RecordingHost
from trio.testing import MockClock

from lfws_adapters import trio as lfws_trio
from lfws_adapters._streams import WriteBatch
from lfws_adapters.event_log import InMemoryEventLog, StoreClosed
from lfws_adapters.trio import _StreamLink
from lfws_core.actions import ConnectionState
from lfws_core.client import ClientConfig

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "trio"


def config(url: str) -> ClientConfig:
    return ClientConfig(url=url, repositories=("notes",), reconnect_delay=60.0)


async def test_a_push_is_acked_and_broadcast_to_the_other_client() -> None:
    async with lfws_trio.serve(event_log=InMemoryEventLog(), port=0) as server:
        assert server.url == f"ws://127.0.0.1:{server.port}/sync"
        alice, bob = RecordingHost("alice"), RecordingHost("bob")
        async with (
            lfws_trio.connect(config(server.url), alice) as a,
            lfws_trio.connect(config(server.url), bob) as b,
        ):
            await a.wait_for_state(ConnectionState.LIVE, 2.0)
            await b.wait_for_state(ConnectionState.LIVE, 2.0)
            event = alice.edit(a, "notes", "n1", title="hello")

            await eventually(alice.all_synced)  # acknowledged
            await eventually(lambda: bob.knows([event]))
            assert bob.replica.documents("notes") == {"n1": {"id": "n1", "title": "hello"}}
            assert bob.replica.cursors == {"notes": 1}
            assert len(server.hub.peers) == 2
        await eventually(lambda: not server.hub.peers)


async def test_wss_with_a_trusted_certificate() -> None:
    authority = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    authority.configure_trust(client_context)

    async with lfws_trio.serve(event_log=InMemoryEventLog(), port=0, ssl=server_context) as server:
        assert server.url.startswith("wss://")
        async with lfws_trio.connect(config(server.url), ssl=client_context) as client:
            await client.wait_for_state(ConnectionState.LIVE, 2.0)
            assert client.health().connected


async def test_an_untrusted_certificate_fails_the_connection() -> None:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trustme.CA().issue_cert("127.0.0.1").configure_cert(server_context)
    host = RecordingHost()

    async with (
        lfws_trio.serve(event_log=InMemoryEventLog(), port=0, ssl=server_context) as server,
        lfws_trio.connect(config(server.url), host) as client,
    ):
        await client.wait_for_state(ConnectionState.WAITING_TO_RECONNECT, 2.0)
        assert "certificate verify failed" in host.states[-1][1]


@pytest.mark.parametrize("leave", ["return", "cancel"])
async def test_leaving_serve_closes_clients_with_1001(leave: str) -> None:
    log = InMemoryEventLog()
    done = trio.Event()

    async def run_server(*, task_status: trio.TaskStatus[tuple[str, trio.CancelScope]]) -> None:
        with trio.CancelScope() as scope:
            async with lfws_trio.serve(event_log=log, port=0) as server:
                task_status.started((server.url, scope))
                await done.wait()

    host = RecordingHost()
    async with trio.open_nursery() as nursery:
        url, scope = await nursery.start(run_server)
        async with lfws_trio.connect(config(url), host) as client:
            await client.wait_for_state(ConnectionState.LIVE, 2.0)
            # Cancelled or not, the server still tells its clients it is going.
            scope.cancel() if leave == "cancel" else done.set()
            await client.wait_for_state(ConnectionState.WAITING_TO_RECONNECT, 2.0)
    reasons = [r for state, r in host.states if state is ConnectionState.WAITING_TO_RECONNECT]
    assert reasons == ["connection lost: server shutting down (1001)"]
    with pytest.raises(StoreClosed):
        await log.stats()


async def test_a_wait_for_state_that_never_comes_times_out() -> None:
    async with lfws_trio.connect(config("ws://127.0.0.1:1/sync")) as client:
        with pytest.raises(TimeoutError):
            await client.wait_for_state(ConnectionState.LIVE, 0.05)


async def test_an_error_in_the_body_comes_out_unwrapped() -> None:
    with pytest.raises(KeyError):
        async with lfws_trio.serve(event_log=InMemoryEventLog(), port=0):
            raise KeyError("mine")


class Sink:
    def __init__(self) -> None:
        self.data = bytearray()
        self.lost: list[str] = []

    def data_received(self, data: bytes) -> None:
        self.data += data

    def connection_lost(self, reason: str) -> None:
        self.lost.append(reason)


async def test_a_link_counts_unsent_bytes_and_flushes_before_closing() -> None:
    ours, theirs = trio.testing.lockstep_stream_pair()
    link = _StreamLink(ours, WriteBatch())
    sink = Sink()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(link.run, lambda: sink)
        link.write(b"hello ")
        assert link.buffered() == 0  # the writer sends it on its next turn
        await trio.testing.wait_all_tasks_blocked()
        link.write(b"world")
        assert link.buffered() == 5  # queued behind a send the peer has not read
        await theirs.send_all(b"ping")
        link.close()
        link.close()
        link.write(b"too late")
        assert await theirs.receive_some() == b"hello "
        assert await theirs.receive_some() == b"world"
        assert await theirs.receive_some() == b""  # closed after the flush
    assert link.buffered() == 0
    assert sink.data == b"ping"
    assert sink.lost == ["connection closed"]


@pytest.mark.parametrize("anyio_backend", [("trio", {"clock": MockClock(autojump_threshold=0)})])
async def test_a_closing_link_gives_up_on_a_peer_that_never_reads() -> None:
    ours, _ = trio.testing.lockstep_stream_pair()
    link = _StreamLink(ours, WriteBatch())
    async with trio.open_nursery() as nursery:
        nursery.start_soon(link.run, Sink)
        link.write(b"x" * 1000)
        link.close()
        await link.finished.wait()
    assert trio.current_time() == pytest.approx(5.0)


async def test_drained_waits_until_the_writer_takes_what_is_queued() -> None:
    ours, theirs = trio.testing.lockstep_stream_pair()
    link = _StreamLink(ours, WriteBatch())
    drained: list[bytes] = []

    async def wait_drained() -> None:
        await link.drained()
        drained.append(bytes(link.buffered()))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(link.run, Sink)
        link.write(b"first")
        await link.drained()  # the writer is idle: nothing waits behind a send
        await trio.testing.wait_all_tasks_blocked()  # "first" is being sent
        link.write(b"second")
        nursery.start_soon(wait_drained)
        await trio.testing.wait_all_tasks_blocked()
        assert drained == []
        assert await theirs.receive_some() == b"first"
        await trio.testing.wait_all_tasks_blocked()  # the writer took "second"
        assert drained == [b""]
        link.close()
        assert await theirs.receive_some() == b"second"


def socket_link(*, full: bool = False) -> tuple[_StreamLink, socket.socket]:
    """A link over one end of a connected socket pair (its buffers ``full``), and the other end."""
    ours, theirs = socket.socketpair()
    if full:
        ours.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            while True:
                ours.send(b"-" * 65536)
    stream = trio.SocketStream(trio.socket.from_stdlib_socket(ours))
    return _StreamLink(stream, WriteBatch()), theirs


async def test_a_write_the_socket_refuses_waits_for_the_writer_task() -> None:
    link, theirs = socket_link(full=True)
    with theirs:
        link.write(b"first")  # refused: the buffers are full
        assert link.buffered() == 5
        link.write(b" then")  # behind what was refused, never before it
        assert link.buffered() == 10
        sink = Sink()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(link.run, lambda: sink)
            theirs.sendall(b"ping")
            received = bytearray()
            while not received.endswith(b"first then"):
                await trio.lowlevel.wait_readable(theirs)
                received += theirs.recv(1 << 20)
            assert received.strip(b"-") == b"first then"
            await trio.testing.wait_all_tasks_blocked()  # the writer's send returned
            assert link.buffered() == 0
            link.write(b"!")  # the kernel takes it at once
            assert link.buffered() == 0
            assert theirs.recv(1) == b"!"
            await eventually(lambda: sink.data == b"ping")
            link.close()
        assert theirs.recv(1) == b""  # closed once flushed
    assert sink.lost == ["connection closed"]


async def test_a_socket_reset_is_a_lost_connection() -> None:
    link, theirs = socket_link()
    sink = Sink()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(link.run, lambda: sink)
        await trio.testing.wait_all_tasks_blocked()
        link.write(b"never read")
        theirs.close()  # with unread data: reset
        link.write(b"too late")  # refused: the writer task finds out why
        await link.finished.wait()
    # The reader's read or the writer's send, whichever ran first.
    assert len(sink.lost) == 1
    assert sink.lost[0] in (
        "connection lost: ConnectionResetError(104, 'Connection reset by peer')",
        "connection lost: BrokenPipeError(32, 'Broken pipe')",
    )


def open_descriptors() -> set[tuple[str, str]]:
    """Each open descriptor and what it refers to (``socket:[inode]``, a path, ...)."""
    gc.collect()  # sockets that earlier tests dropped close now, not during the test
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(FileNotFoundError):  # the listing's own descriptor
            found.add((fd, os.readlink(f"/proc/self/fd/{fd}")))
    return found


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc (Linux)")
async def test_connections_that_end_every_way_leave_no_descriptor_behind() -> None:
    before = open_descriptors()
    live, server_gone = trio.Event(), trio.Event()

    async def outlive_the_server(url: str) -> None:
        async with lfws_trio.connect(config(url)) as client:
            await client.wait_for_state(ConnectionState.LIVE, 2.0)
            live.set()
            await server_gone.wait()
            await client.wait_for_state(ConnectionState.WAITING_TO_RECONNECT, 2.0)

    async with trio.open_nursery() as nursery:
        async with lfws_trio.serve(event_log=InMemoryEventLog(), port=0) as server:
            for _ in range(5):  # clients that sync, then leave
                host = RecordingHost()
                async with lfws_trio.connect(config(server.url), host) as client:
                    await client.wait_for_state(ConnectionState.LIVE, 2.0)
                    host.edit(client, "notes", "n1", title="hello")
                    await eventually(host.all_synced)
            for attempt in range(6):  # peers that reset, mid-handshake or not
                peer = trio.socket.socket()
                await peer.connect(("127.0.0.1", server.port))
                if attempt % 2:
                    await peer.send(b"GET /sync HTTP/1.1\r\n")
                peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                peer.close()
            with trio.move_on_after(0.01):  # a client cancelled while connecting or connected
                async with lfws_trio.connect(config(server.url)):
                    await trio.sleep_forever()
            await eventually(lambda: not server.hub.peers)
            nursery.start_soon(outlive_the_server, server.url)
            await live.wait()
        server_gone.set()
    # Compared by what they refer to: a leaked socket is new even when it
    # reuses the number of a descriptor closed meanwhile.
    assert open_descriptors() - before == set()
