"""Server lifecycle: graceful shutdown, the handshake timeout."""

from __future__ import annotations

import anyio
import pytest

from lfws_adapters.event_log import InMemoryEventLog
from lfws_adapters.hub import ServerOptions
from lfws_core.actions import ConnectionState

from .helpers import REPOSITORY, TIMEOUT, client_config, eventually, live
from .hosts import RecordingHost
from .runtimes import Runtime

pytestmark = pytest.mark.anyio


async def test_shutdown_closes_clients_with_1001_and_they_come_back(
    runtime: Runtime, free_tcp_port: int
) -> None:
    port = free_tcp_port  # the client outlives the first server: the port is known up front
    host = RecordingHost()
    async with runtime.module.connect(client_config(f"ws://127.0.0.1:{port}/sync"), host) as c:
        async with runtime.module.serve(event_log=InMemoryEventLog(), port=port):
            await live(c)
        await eventually(lambda: c.state is not ConnectionState.LIVE)
        went_live = host.states.index((ConnectionState.LIVE, "caught up"))
        assert host.states[went_live + 1] == (
            ConnectionState.WAITING_TO_RECONNECT,
            "connection lost: server shutting down (1001)",
        )

        # While the server is away, a push waits in the queue.
        event = host.edit(c, REPOSITORY, "doc", title="offline edit")
        async with runtime.module.serve(event_log=InMemoryEventLog(), port=port) as server:
            await live(c)
            await eventually(host.all_synced)
            stored = await server.hub.event_log.fetch(REPOSITORY, 0, 10)
            assert [e.event_id for e in stored] == [event.event_id]


async def test_a_silent_tcp_client_is_dropped_after_the_handshake_timeout(
    runtime: Runtime,
) -> None:
    options = ServerOptions(handshake_timeout=0.1)
    async with runtime.module.serve(event_log=InMemoryEventLog(), port=0, options=options) as s:
        async with await anyio.connect_tcp("127.0.0.1", s.port) as stream:
            started = anyio.current_time()
            with anyio.fail_after(TIMEOUT), pytest.raises(anyio.EndOfStream):
                await stream.receive()
            assert anyio.current_time() - started >= 0.09
        await eventually(lambda: not s.hub.peers)
