"""Several ``lfws serve --database`` nodes on one PostgreSQL behave as one server.

The big test runs three nodes (two on asyncio, one on trio) behind a
round-robin load balancer, with lfws clients (the asyncio adapter) spread
across them, all writing at once into two repositories. Midway one node is
SIGKILLed: its clients reconnect through the balancer to the others and
resend what was not acknowledged. At the end every replica holds every
event, the database holds each event once with gap-free sequences, every
client's cursor is the repository's last sequence, and the clients that
never lost their connection got every other node's events live.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect

from lfws_adapters.asyncio import connect
from lfws_adapters.driver import ClientHost
from lfws_core.actions import ConnectionState
from lfws_core.client import ClientConfig, PushResult
from lfws_core.events import SyncEvent, event_from_json

from .nodes import Balancer, Node, fresh_database

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:websockets")

REPOSITORIES = ("todos", "notes")
CLIENTS = 6
EVENTS_PER_CLIENT = 40
PUSH_PAUSE = 0.02
CONVERGE_TIMEOUT = 30.0


def event(event_id: str, **data: Any) -> SyncEvent:
    return event_from_json(
        {
            "_event_id": event_id,
            "_operation": 0,
            "_created_at": "2026-01-01T00:00:00.000Z",
            "_data_id": event_id,
            "_data": data,
        }
    )


class Replica(ClientHost):
    """A client's local store: the events it holds per repository, and what it saw."""

    def __init__(self) -> None:
        self.events: dict[str, dict[str, dict[str, Any]]] = {r: {} for r in REPOSITORIES}
        self.drops = 0
        self.cursors: dict[str, int | None] = {}

    async def apply_events(self, repository: str, events: tuple[SyncEvent, ...]) -> None:
        for e in events:
            self.events[repository][e.event_id] = dict(e.data or {})

    async def sync_completed(
        self, repository: str, events: tuple[SyncEvent, ...], cursor: int | None
    ) -> None:
        self.cursors[repository] = cursor

    def state_changed(self, state: ConnectionState, reason: str) -> None:
        if state is ConnectionState.WAITING_TO_RECONNECT:
            self.drops += 1


def client_config(url: str) -> ClientConfig:
    return ClientConfig(
        url=url,
        repositories=REPOSITORIES,
        reconnect_delay=0.1,
        max_reconnect_delay=0.5,
        heartbeat_interval=1.0,
        pong_timeout=5.0,  # generous: a loaded 2-core CI machine; kills reset at once
    )


async def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def stored_rows(database: str) -> list[tuple[str, int, str]]:
    import psycopg

    with psycopg.connect(database) as connection:
        rows = connection.execute(
            "SELECT repository, sequence, event_id FROM lfws_events ORDER BY repository, sequence"
        ).fetchall()
    return [(r, s, i) for r, s, i in rows]


async def three_nodes_one_killed(database: str, tmp_path: Path) -> dict[str, Any]:
    nodes = [
        Node(database, tmp_path / f"node-{i}.log", runtime=runtime)
        for i, runtime in enumerate(("asyncio", "trio", "asyncio"))
    ]
    # One first, so the others find the schema (they would wait on its lock anyway).
    await nodes[0].start()
    await asyncio.gather(*(node.start() for node in nodes[1:]))
    try:
        async with Balancer(nodes) as balancer, AsyncExitStack() as stack:
            replicas = [Replica() for _ in range(CLIENTS)]
            clients = []
            for replica in replicas:
                client = await stack.enter_async_context(
                    connect(client_config(balancer.url), replica)
                )
                await client.wait_for_state(ConnectionState.LIVE)
                clients.append(client)
            first_node = list(balancer.connections)  # round robin: client i on node i % 3

            pushed: dict[str, dict[str, dict[str, Any]]] = {r: {} for r in REPOSITORIES}

            async def write(number: int) -> None:
                for k in range(EVENTS_PER_CLIENT):
                    repository = REPOSITORIES[k % len(REPOSITORIES)]
                    # A NUL, which PostgreSQL's jsonb and text refuse, is fine in data.
                    data = {"client": number, "k": k, "text": "nul \u0000"}
                    e = event(f"c{number}-{k}", **data)
                    pushed[repository][e.event_id] = data
                    replicas[number].events[repository][e.event_id] = data
                    assert clients[number].push(repository, e) is not PushResult.FAILED
                    await asyncio.sleep(PUSH_PAUSE)

            writers = asyncio.gather(*(write(n) for n in range(CLIENTS)))
            await asyncio.sleep(EVENTS_PER_CLIENT * PUSH_PAUSE / 2)
            await nodes[0].kill()
            killed_at = time.monotonic()
            await writers

            def converged() -> bool:
                return all(
                    client.health().pending == 0 and replica.events == pushed
                    for client, replica in zip(clients, replicas, strict=True)
                )

            await wait_until(converged, CONVERGE_TIMEOUT, "every replica to converge")
            converged_after = time.monotonic() - killed_at
            rows = stored_rows(database)
            last = {
                r: max((s for repo, s, _ in rows if repo == r), default=0) for r in REPOSITORIES
            }
            cursors = [dict(client.health().cursors) for client in clients]
            return {
                "pushed": pushed,
                "replicas": replicas,
                "first_node": first_node,
                "rows": rows,
                "last": last,
                "cursors": cursors,
                "converged_after": converged_after,
                "reconnections": balancer.connections[len(first_node) :],
            }
    finally:
        for node in nodes:
            await node.stop()


def test_three_nodes_behind_a_balancer_converge_through_a_node_kill(tmp_path: Path) -> None:
    with fresh_database() as database:
        outcome = asyncio.run(three_nodes_one_killed(database, tmp_path))
    pushed = outcome["pushed"]
    total = sum(len(events) for events in pushed.values())
    assert total == CLIENTS * EVENTS_PER_CLIENT

    # The database: every event once (0 lost, 0 duplicated), sequences 1..N per repository.
    rows = outcome["rows"]
    assert len(rows) == total
    for repository in REPOSITORIES:
        ids = [i for r, _, i in rows if r == repository]
        assert sorted(ids) == sorted(pushed[repository])
        assert [s for r, s, _ in rows if r == repository] == list(range(1, len(ids) + 1))

    # A cursor never passes the log (a client's own last events do not move it).
    last = outcome["last"]
    for cursors in outcome["cursors"]:
        assert all(0 < cursors[r] <= last[r] for r in REPOSITORIES), (cursors, last)

    # The killed node's clients moved to the survivors; the others never dropped.
    first_node = outcome["first_node"]
    moved = [n for n, node in enumerate(first_node) if node == 0]
    stayed = [n for n, node in enumerate(first_node) if node != 0]
    assert moved and stayed
    replicas = outcome["replicas"]
    assert all(replicas[n].drops >= 1 for n in moved)
    assert 0 not in outcome["reconnections"]
    # Clients that never reconnected got every other node's events live: cross-node fan-out.
    assert [replicas[n].drops for n in stayed] == [0] * len(stayed)
    print(
        f"\n3 nodes, {CLIENTS} clients, {total} events, 1 node SIGKILLed, {len(moved)} clients"
        f" moved; converged {outcome['converged_after']:.2f} s after the kill"
    )


async def send(ws: ClientConnection, **message: Any) -> None:
    await ws.send(json.dumps(message))


async def receive(ws: ClientConnection) -> dict[str, Any]:
    message = json.loads(await asyncio.wait_for(ws.recv(), 10.0))
    assert isinstance(message, dict)
    return message


async def receive_ack(ws: ClientConnection) -> list[str]:
    """The ids of the next ``ack`` (broadcasts before it are skipped)."""
    while (message := await receive(ws))["type"] != "ack":
        assert message["type"] == "events"
    ids: list[str] = message["eventIds"]
    return ids


def wire_event(event_id: str) -> dict[str, Any]:
    return {
        "_event_id": event_id,
        "_operation": 0,
        "_created_at": "2026-01-01T00:00:00.000Z",
        "_data_id": event_id,
        "_data": {"title": event_id},
    }


async def resend_to_another_node(database: str, tmp_path: Path) -> None:
    nodes = [Node(database, tmp_path / f"node-{i}.log") for i in range(2)]
    await nodes[0].start()
    await nodes[1].start()
    try:
        async with (
            ws_connect(nodes[0].url) as writer_a,
            ws_connect(nodes[1].url) as writer_b,
            ws_connect(nodes[0].url) as watcher,
        ):
            for ws in (writer_a, writer_b, watcher):
                await send(ws, type="auth", token="t")
                assert await receive(ws) == {"type": "auth_success"}
            await send(writer_a, type="push_event", repository="todos", event=wire_event("e1"))
            assert await receive_ack(writer_a) == ["e1"]
            # The client lost the ack, say, and resends to another node: acked, not stored.
            await send(writer_b, type="push_event", repository="todos", event=wire_event("e1"))
            assert await receive_ack(writer_b) == ["e1"]
            await send(writer_b, type="push_event", repository="todos", event=wire_event("e2"))
            assert await receive_ack(writer_b) == ["e2"]
            # The watcher, on the node that stored e1, got it once, then e2 from the other node.
            first = await receive(watcher)
            second = await receive(watcher)
            got = [e["_event_id"] for m in (first, second) for e in m["events"]]
            assert got == ["e1", "e2"]
            assert [e["serverSequence"] for m in (first, second) for e in m["events"]] == [1, 2]
    finally:
        for node in nodes:
            await node.stop()
    assert [(s, i) for _, s, i in stored_rows(database)] == [(1, "e1"), (2, "e2")]


def test_a_resend_to_another_node_is_acked_not_duplicated(tmp_path: Path) -> None:
    with fresh_database() as database:
        asyncio.run(resend_to_another_node(database, tmp_path))
