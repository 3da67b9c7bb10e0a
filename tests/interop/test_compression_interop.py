"""Interop with compression on: lfws and the `websockets` library, both ways, over loopback.

`websockets` negotiates permessage-deflate by default (window 12 bits on
its server, ``memLevel`` 5), so each side here is a complete, independent
implementation of RFC 7692.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from websockets.asyncio.client import connect as websockets_connect
from websockets.asyncio.server import serve
from websockets.extensions.permessage_deflate import PerMessageDeflate as TheirDeflate

from lfws_adapters.asyncio import connect
from lfws_adapters.asyncio import serve as lfws_serve
from lfws_adapters.event_log import InMemoryEventLog
from lfws_adapters.hub import ServerOptions
from lfws_core.actions import ConnectionState
from lfws_core.client import ClientConfig
from tests.e2e.helpers import eventually
from tests.e2e.hosts import RecordingHost

from .test_websockets_server import DartLikeServer

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the peer is an asyncio library


@pytest.fixture
async def deflating_dart_server() -> AsyncIterator[tuple[DartLikeServer, str]]:
    server = DartLikeServer()
    async with serve(server.handler, "127.0.0.1", 0, compression="deflate") as ws_server:
        port = next(iter(ws_server.sockets)).getsockname()[1]
        yield server, f"ws://127.0.0.1:{port}/sync"


async def test_lfws_client_syncs_compressed_with_a_websockets_server(
    deflating_dart_server: tuple[DartLikeServer, str],
) -> None:
    server, url = deflating_dart_server
    host = RecordingHost()
    async with connect(ClientConfig(url=url, token="t", compression=True), host) as client:
        await client.wait_for_state(ConnectionState.LIVE)
        [theirs] = server.connections
        assert [type(e) for e in theirs.protocol.extensions] == [TheirDeflate]
        stored = {"a1": {"id": "a1", "title": "from the server"}}
        await eventually(lambda: host.replica.documents("todos") == stored)
        for n in range(20):
            host.edit(client, "todos", f"b{n}", title="compressed " * (1 + 500 * (n % 2)))
        await eventually(host.all_synced)
        pushes = [m for m in server.received if m["type"] == "push_event"]
        assert len(pushes) == 20
        live = {
            "_event_id": "0190a000-0000-7000-8000-000000000002",
            "_operation": "update",
            "_created_at": "2030-01-01T00:00:00.000Z",
            "_data": {"id": "a1", "title": "changed live " * 1000},
            "_data_id": "a1",
        }
        await server.broadcast(live)
        await eventually(
            lambda: host.replica.documents("todos")["a1"]["title"] == "changed live " * 1000
        )


async def test_websockets_client_syncs_compressed_with_the_lfws_server() -> None:
    options = ServerOptions(compression=True, ping_interval=None)
    async with (
        lfws_serve(event_log=InMemoryEventLog(), port=0, options=options) as server,
        websockets_connect(server.url, compression="deflate") as alice,
        websockets_connect(server.url, compression="deflate") as bob,
    ):
        for ws in (alice, bob):
            assert [type(e) for e in ws.protocol.extensions] == [TheirDeflate]
            await ws.send(json.dumps({"type": "auth", "token": "x"}))
            assert json.loads(await ws.recv()) == {"type": "auth_success"}
        event = {
            "_event_id": "0190a000-0000-7000-8000-000000000009",
            "_operation": 0,
            "_created_at": "2030-01-01T00:00:00.000Z",
            "_data": {"id": "a", "title": "fragmented and compressed " * 2000},
            "_data_id": "a",
        }
        text = json.dumps({"type": "push_event", "repository": "todos", "event": event})
        # A fragmented message: RSV1 on its first frame only.
        await alice.send([text[:1000], text[1000:30000], text[30000:]])
        ack = json.loads(await alice.recv())
        assert ack["type"] == "ack" and ack["eventIds"] == [event["_event_id"]]
        broadcast = json.loads(await bob.recv())
        assert broadcast["type"] == "events"
        assert broadcast["events"][0]["_data"] == event["_data"]
        for _ in range(10):  # context takeover across messages
            await alice.send(json.dumps({"type": "ping"}))
            assert json.loads(await alice.recv()) == {"type": "pong"}
