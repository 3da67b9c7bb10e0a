"""Token authentication, and the plain HTTP endpoints next to the WebSocket one."""

from __future__ import annotations

import json

import pytest

from lfws_adapters.auth import token_authenticator
from lfws_adapters.event_log import InMemoryEventLog
from lfws_core.actions import ConnectionState

from .helpers import REPOSITORY, TIMEOUT, client_config, eventually, http_get, live
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
