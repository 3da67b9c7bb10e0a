"""Interop: the lfws client against an independent server built on `websockets`.

The server below speaks the raw Dart protocol with nothing from lfws: plain
JSON over the `websockets` library, answering like the Dart reference server
(`auth_success`, one `ack` per push, `events` then a bare `sync_complete`
for `request_all_events`, `pong` for `ping`). The lfws client must connect,
authenticate, catch up, push, and apply what the server sends it live.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve

from lfws_adapters.asyncio import connect
from lfws_core.actions import ConnectionState
from lfws_core.client import ClientConfig
from tests.e2e.helpers import eventually
from tests.e2e.hosts import RecordingHost

pytestmark = pytest.mark.anyio

STORED_EARLIER = {
    "_event_id": "0190a000-0000-7000-8000-000000000001",
    "_operation": 0,
    "_created_at": "2024-05-01T12:34:56.789Z",
    "_data": {"id": "a1", "title": "from the server"},
    "_data_id": "a1",
    "serverSequence": 1,
}


class DartLikeServer:
    """A Dart-reference-style server over `websockets`, recording what it received."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.connections: list[ServerConnection] = []
        self.sequence = 1

    async def handler(self, websocket: ServerConnection) -> None:
        self.connections.append(websocket)
        async for raw in websocket:
            message = json.loads(raw)
            self.received.append(message)
            kind = message["type"]
            if kind == "auth":
                await websocket.send(json.dumps({"type": "auth_success"}))
            elif kind == "request_all_events":
                await websocket.send(
                    json.dumps(
                        {"type": "events", "repository": "todos", "events": [STORED_EARLIER]}
                    )
                )
                await websocket.send(json.dumps({"type": "sync_complete"}))
            elif kind == "request_events":
                await websocket.send(
                    json.dumps({"type": "sync_complete", "repository": message["repository"]})
                )
            elif kind == "push_event":
                event_id = message["event"]["_event_id"]
                ack = {"eventIds": [event_id], "repositories": {message["repository"]: [event_id]}}
                await websocket.send(json.dumps({"type": "ack", **ack}))
            elif kind == "ping":
                await websocket.send(json.dumps({"type": "pong"}))

    async def broadcast(self, event: dict[str, Any]) -> None:
        self.sequence += 1
        message = {
            "type": "events",
            "repository": "todos",
            "events": [{**event, "serverSequence": self.sequence}],
        }
        for websocket in self.connections:
            await websocket.send(json.dumps(message))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the peer is an asyncio library


@pytest.fixture
async def dart_server() -> AsyncIterator[tuple[DartLikeServer, str]]:
    server = DartLikeServer()
    async with serve(server.handler, "127.0.0.1", 0) as ws_server:
        port = next(iter(ws_server.sockets)).getsockname()[1]
        yield server, f"ws://127.0.0.1:{port}/sync"


async def test_lfws_client_syncs_with_a_websockets_server(
    dart_server: tuple[DartLikeServer, str],
) -> None:
    server, url = dart_server
    host = RecordingHost()
    config = ClientConfig(url=url, token="secret", headers={"X-App": "interop"})
    async with connect(config, host) as client:
        await client.wait_for_state(ConnectionState.LIVE)
        # Authenticated with the Dart shape: token and headers spread at the top level.
        assert server.received[0] == {"type": "auth", "token": "secret", "X-App": "interop"}
        assert server.received[1] == {"type": "request_all_events"}
        assert host.replica.documents("todos") == {"a1": {"id": "a1", "title": "from the server"}}

        pushed = host.edit(client, "todos", "b2", title="from lfws")
        await eventually(host.all_synced)
        push = next(m for m in server.received if m["type"] == "push_event")
        assert push["repository"] == "todos"
        assert push["event"]["_event_id"] == pushed.event_id
        assert push["event"]["_data"] == {"id": "b2", "title": "from lfws"}
        assert push["event"]["_created_at"].endswith("Z")

        live = {
            "_event_id": "0190a000-0000-7000-8000-000000000002",
            "_operation": "update",  # the operation by name, as the Dart side accepts
            "_created_at": int(datetime(2030, 1, 1, tzinfo=UTC).timestamp() * 1000),
            "_data": {"id": "a1", "title": "changed live"},
            "_data_id": "a1",
        }
        await server.broadcast(live)
        await eventually(
            lambda: host.replica.documents("todos").get("a1", {}).get("title") == "changed live"
        )
        # The client confirmed what it applied, as the Dart client does.
        await eventually(lambda: any(m["type"] == "events_received" for m in server.received))
