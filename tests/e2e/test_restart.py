"""A server restart while clients keep pushing: nothing lost, nothing stored twice."""

from __future__ import annotations

from collections import Counter

import anyio
import pytest

from .helpers import REPOSITORY, EventLogs, client_config, documents, eventually, live
from .hosts import RecordingHost
from .runtimes import Runtime

pytestmark = pytest.mark.anyio

PUSHES = 40


async def push_steadily(host: RecordingHost, client: object) -> None:
    for n in range(PUSHES):
        host.edit(client, REPOSITORY, f"doc{n % 5}", by=host.name, n=n)
        await anyio.sleep(0.004)


async def test_a_restarted_server_loses_and_duplicates_nothing(
    runtime: Runtime, logs: EventLogs, free_tcp_port: int
) -> None:
    port = free_tcp_port  # the clients outlive the first server: the port is known up front
    config = client_config(f"ws://127.0.0.1:{port}/sync")
    hosts = [RecordingHost("alice"), RecordingHost("bob")]
    async with (
        runtime.module.connect(config, hosts[0]) as a,
        runtime.module.connect(config, hosts[1]) as b,
        anyio.create_task_group() as pushers,
    ):
        async with runtime.module.serve(event_log=logs.open(), port=port):
            await live(a, b)
            for host, client in zip(hosts, (a, b), strict=True):
                pushers.start_soon(push_steadily, host, client)
            await eventually(lambda: sum(len(h.pushed) for h in hosts) >= PUSHES // 2)

        stopped_at = sum(len(h.pushed) for h in hosts)
        async with runtime.module.serve(event_log=logs.open(), port=port) as server:
            await eventually(lambda: all(len(h.pushed) == PUSHES for h in hosts))
            await eventually(lambda: all(h.all_synced() for h in hosts))
            stored = await server.hub.event_log.fetch(REPOSITORY, 0, 1000)
            expected = documents(stored)
            await eventually(
                lambda: all(h.replica.documents(REPOSITORY) == expected for h in hosts)
            )

    ids = [event.event_id for event in stored]
    assert not [event_id for event_id, n in Counter(ids).items() if n > 1]
    assert set(ids) == {event.event_id for h in hosts for event in h.pushed}
    assert [event.server_sequence for event in stored] == list(range(1, 2 * PUSHES + 1))
    assert stopped_at < 2 * PUSHES  # some pushes really happened while the server was down
    assert all(h.failed == [] for h in hosts)
