"""Token authentication, and the plain HTTP endpoints next to the WebSocket one."""

from __future__ import annotations

import json
from contextlib import suppress

import anyio
import pytest

from lfws_adapters.auth import token_authenticator
from lfws_adapters.event_log import InMemoryEventLog
from lfws_core.actions import ConnectionState

from .helpers import (
    REPOSITORY,
    TIMEOUT,
    GatedEventLog,
    client_config,
    eventually,
    http_get,
    live,
)
from .hosts import RecordingHost
from .runtimes import Runtime

pytestmark = pytest.mark.anyio


async def test_a_known_token_is_accepted(runtime: Runtime) -> None:
    host = RecordingHost()
    authenticator = token_authenticator(["s3cret"])
    async with (
        runtime.module.serve(
            event_log=InMemoryEventLog(), port=0, authenticator=authenticator
        ) as server,
        runtime.module.connect(client_config(server.url, token="s3cret"), host) as c,
    ):
        await live(c)
        host.edit(c, REPOSITORY, "doc", title="hello")
        await eventually(host.all_synced)
    assert host.credential_requests == []


async def test_a_refused_client_needs_credentials_until_it_gets_good_ones(
    runtime: Runtime,
) -> None:
    host = RecordingHost()
    authenticator = token_authenticator(["s3cret"])
    async with (
        runtime.module.serve(
            event_log=InMemoryEventLog(), port=0, authenticator=authenticator
        ) as server,
        runtime.module.connect(client_config(server.url, token="wrong"), host) as c,
    ):
        await c.wait_for_state(ConnectionState.NEEDS_CREDENTIALS, TIMEOUT)
        await eventually(lambda: len(host.credential_requests) == 1)
        assert "invalid or missing token" in host.credential_requests[0]

        c.update_credentials("s3cret")
        await live(c)
        assert c.health().connected


async def test_healthz_reports_the_server_and_other_paths_are_not_found(
    runtime: Runtime,
) -> None:
    host = RecordingHost()
    async with (
        runtime.module.serve(event_log=InMemoryEventLog(), port=0) as server,
        runtime.module.connect(client_config(server.url), host) as c,
    ):
        await live(c)
        host.edit(c, REPOSITORY, "doc", title="hello")
        await eventually(host.all_synced)

        status, body = await http_get(server.port, "/healthz")
        assert status == 200
        # The probe's own connection is one of the two.
        assert json.loads(body) == {
            "status": "ok",
            "connections": 2,
            "repositories": {REPOSITORY: 1},
        }

        status, body = await http_get(server.port, "/metrics")
        assert status == 404
        assert b"/sync" in body


async def test_a_client_that_half_closes_after_its_request_still_gets_the_answer(
    runtime: Runtime,
) -> None:
    log = GatedEventLog(InMemoryEventLog(), "stats")  # the answer waits for the EOF
    async with runtime.module.serve(event_log=log, port=0) as server:
        async with await anyio.connect_tcp("127.0.0.1", server.port) as stream:
            await stream.send(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            await eventually(lambda: log.waiting == 1)
            (peer,) = server.hub.peers
            reads: list[bytes] = []
            feed = peer.data_received

            def spy(data: bytes) -> None:
                reads.append(data)
                feed(data)

            peer.data_received = spy  # type: ignore[method-assign]
            await stream.send_eof()  # shutdown(SHUT_WR): no more requests
            # Whatever the runtime makes of the EOF happens before the answer.
            await eventually(lambda: b"" in reads or peer.closed)
            log.open()
            response = b""
            with anyio.fail_after(TIMEOUT), suppress(anyio.EndOfStream):
                while True:
                    response += await stream.receive()
        head, _, body = response.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ")
        assert json.loads(body)["status"] == "ok"
        await eventually(lambda: not server.hub.peers)
