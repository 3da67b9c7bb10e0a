"""The anyio adapter over loopback, on both anyio backends."""

from __future__ import annotations

import json
import ssl
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

import anyio
import pytest
import trustme

from lfws_adapters import anyio as lfws_anyio
from lfws_adapters.driver import ClientHost
from lfws_adapters.event_log import InMemoryEventLog, StoreClosed
from lfws_adapters.runtime import Link
from lfws_core.actions import ConnectionState
from lfws_core.client import ClientConfig, PushResult
from lfws_core.events import Operation, SyncEvent
from lfws_core.testing import MemoryReplica

pytestmark = pytest.mark.anyio

LIVE = ConnectionState.LIVE


async def eventually(predicate: Callable[[], object], timeout: float = 2.0) -> None:
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.005)


class Host(ClientHost):
    """A client's store in memory, recording what the driver reports."""

    def __init__(self) -> None:
        self.replica = MemoryReplica()
        self.states: list[ConnectionState] = []
        self.reasons: list[str] = []

    async def apply_events(self, repository: str, events: tuple[SyncEvent, ...]) -> None:
        self.replica.apply_remote(repository, events)

    async def sync_completed(
        self, repository: str, events: tuple[SyncEvent, ...], cursor: int | None
    ) -> None:
        self.replica.advance_cursor(repository, cursor)

    async def mark_synced(self, repositories: Mapping[str, tuple[str, ...]]) -> None:
        self.replica.mark_synced(i for ids in repositories.values() for i in ids)

    def state_changed(self, state: ConnectionState, reason: str) -> None:
        self.states.append(state)
        self.reasons.append(reason)


def make_event(data_id: str, title: str) -> SyncEvent:
    return SyncEvent(
        event_id=f"0190a1b2-c3d4-7e5f-8a9b-{data_id.encode().hex():0>12}",
        operation=Operation.INSERT,
        data_id=data_id,
        created_at=datetime(2024, 7, 1, tzinfo=UTC),
        data={"title": title},
    )


def config(url: str, reconnect_delay: float = 3.0) -> ClientConfig:
    return ClientConfig(url=url, repositories=("todos",), reconnect_delay=reconnect_delay)


async def test_a_push_is_stored_acked_and_broadcast() -> None:
    log = InMemoryEventLog()
    alice, bob = Host(), Host()
    async with (
        lfws_anyio.serve(event_log=log, port=0) as server,
        lfws_anyio.connect(config(server.url), alice) as a,
        lfws_anyio.connect(config(server.url), bob) as b,
    ):
        assert server.url == f"ws://127.0.0.1:{server.port}/sync"
        await a.wait_for_state(LIVE)
        await b.wait_for_state(LIVE)
        event = make_event("t1", "milk")
        alice.replica.record_local("todos", event)
        assert a.push("todos", event) is PushResult.SENT

        await eventually(lambda: not alice.replica.outbox() and bob.replica.knows(event.event_id))
        assert bob.replica.documents("todos") == {"t1": {"title": "milk"}}
        assert [e.server_sequence for e in log.log.events("todos")] == [1]
        assert a.health().pending == 0
        assert len(server.hub.peers) == 2


async def test_a_late_client_catches_up_from_its_cursor() -> None:
    log = InMemoryEventLog()
    async with lfws_anyio.serve(event_log=log, port=0) as server:
        async with lfws_anyio.connect(config(server.url)) as a:
            await a.wait_for_state(LIVE)
            for n in range(3):
                a.push("todos", make_event(f"t{n}", f"item {n}"))
            await eventually(lambda: len(log.log.events("todos")) == 3)
        late = Host()
        async with lfws_anyio.connect(config(server.url), late, cursors={"todos": 1}) as b:
            await b.wait_for_state(LIVE)
            await eventually(lambda: late.replica.cursors.get("todos") == 3)
        assert sorted(late.replica.documents("todos")) == ["t1", "t2"]


async def test_wss_with_a_trusted_certificate() -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    alice, bob = Host(), Host()
    async with (
        lfws_anyio.serve(event_log=InMemoryEventLog(), port=0, ssl=server_context) as server,
        lfws_anyio.connect(config(server.url), alice, ssl=client_context) as a,
        lfws_anyio.connect(config(server.url), bob, ssl=client_context) as b,
    ):
        assert server.url.startswith("wss://127.0.0.1:")
        await a.wait_for_state(LIVE)
        await b.wait_for_state(LIVE)
        event = make_event("t1", "tls")
        a.push("todos", event)
        await eventually(lambda: bob.replica.knows(event.event_id))


async def test_an_untrusted_certificate_means_reconnecting(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trustme.CA().issue_cert("127.0.0.1").configure_cert(server_context)
    host = Host()
    async with (
        lfws_anyio.serve(event_log=InMemoryEventLog(), port=0, ssl=server_context) as server,
        lfws_anyio.connect(config(server.url), host, ssl=ssl.create_default_context()) as a,
    ):
        await a.wait_for_state(ConnectionState.WAITING_TO_RECONNECT)
        assert "certificate" in host.reasons[-1].lower()
        assert not server.hub.peers


async def test_nothing_listening_means_reconnecting() -> None:
    async with lfws_anyio.serve_peers(_EchoFactory(), port=0) as listener:
        port = listener.port  # a port nobody listens on once the block ends
    async with lfws_anyio.connect(config(f"ws://127.0.0.1:{port}/sync")) as a:
        await a.wait_for_state(ConnectionState.WAITING_TO_RECONNECT)
        assert a.health().reconnect_attempt == 1


async def test_leaving_serve_closes_clients_with_going_away_and_closes_the_log() -> None:
    log = InMemoryEventLog()
    host = Host()
    stop, stopped = anyio.Event(), anyio.Event()

    async def run_server(*, task_status: anyio.abc.TaskStatus[str]) -> None:
        async with lfws_anyio.serve(event_log=log, port=0) as server:
            task_status.started(server.url)
            await stop.wait()
        stopped.set()

    async with anyio.create_task_group() as tasks:
        url = await tasks.start(run_server)
        async with lfws_anyio.connect(config(url, reconnect_delay=60.0), host) as a:
            await a.wait_for_state(LIVE)
            stop.set()
            with anyio.fail_after(1.0):  # the client answers the close frame at once
                await stopped.wait()
            await a.wait_for_state(ConnectionState.WAITING_TO_RECONNECT)
            assert "1001" in host.reasons[-1]
    with pytest.raises(StoreClosed):
        await log.stats()


async def test_an_error_in_the_block_comes_out_as_itself() -> None:
    with pytest.raises(LookupError, match="boom"):
        async with lfws_anyio.serve(event_log=InMemoryEventLog(), port=0):
            raise LookupError("boom")
    with pytest.raises(LookupError, match="boom"):
        async with lfws_anyio.connect(config("ws://127.0.0.1:9/sync")):
            raise LookupError("boom")


async def test_healthz_over_plain_http() -> None:
    async with (
        lfws_anyio.serve(event_log=InMemoryEventLog(), port=0) as server,
        await anyio.connect_tcp("127.0.0.1", server.port) as stream,
    ):
        await stream.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        response = b""
        with anyio.fail_after(2):
            while b"}" not in response:
                response += await stream.receive()
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert json.loads(body)["status"] == "ok"


# --- serve_peers: the bare transport server ------------------------------------


class _EchoPeer:
    def __init__(self, link: Link) -> None:
        self.link = link
        self.lost: str | None = None

    def data_received(self, data: bytes) -> None:
        self.link.write(data)
        if not data:  # the end of input: nothing more to answer
            self.link.close()

    def connection_lost(self, reason: str = "connection lost") -> None:
        self.lost = reason


class _EchoFactory:
    def __init__(self) -> None:
        self.peers: list[_EchoPeer] = []
        self.names: list[str] = []

    def connect(self, link: Link, name: str) -> _EchoPeer:
        self.peers.append(peer := _EchoPeer(link))
        self.names.append(name)
        return peer


async def test_serve_peers_feeds_reads_and_reports_the_end() -> None:
    factory = _EchoFactory()
    async with lfws_anyio.serve_peers(factory, port=0) as listener:
        async with await anyio.connect_tcp("127.0.0.1", listener.port) as stream:
            await stream.send(b"hello")
            assert await stream.receive() == b"hello"
            assert factory.names[0].startswith("127.0.0.1:")
        await listener.drain(2.0)
        assert factory.peers[0].lost is not None
    # Each backend's own transports (asyncio's Protocols, trio's streams) say it their way.
    assert factory.peers[0].lost.startswith("connection closed")


async def test_timers_fire_in_order_and_can_be_cancelled(anyio_backend: str) -> None:
    fired: list[str] = []

    def fail() -> None:
        raise RuntimeError("a broken timer callback")

    async with lfws_anyio._open_loop() as (loop, _):
        now = loop.time()
        loop.call_at(now + 0.06, lambda: fired.append("late"))
        loop.call_at(now + 0.04, lambda: fired.append("cancelled")).cancel()
        loop.call_at(now + 0.02, lambda: fired.append("early"))  # wakes a timer task early
        if anyio_backend == "trio":  # on asyncio, the event loop's handler reports it
            loop.call_at(now + 0.01, fail)  # logged, and the others still fire
        await eventually(lambda: len(fired) == 2)
    assert fired == ["early", "late"]


async def test_tasks_left_running_are_cancelled_when_the_block_ends() -> None:
    started, cancelled = anyio.Event(), anyio.Event()

    async def forever() -> None:
        try:
            started.set()
            await anyio.sleep_forever()
        finally:
            cancelled.set()

    async with lfws_anyio._open_loop() as (loop, _):
        loop.spawn(forever)
        await started.wait()
    assert cancelled.is_set()
