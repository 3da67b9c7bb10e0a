"""wss:// end to end, with certificates from a throwaway test CA."""

from __future__ import annotations

import ssl

import pytest
import trustme

from .helpers import REPOSITORY, EventLogs, client_config, eventually, live
from .hosts import RecordingHost
from .runtimes import Runtime

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


async def test_sync_works_over_tls(runtime: Runtime, logs: EventLogs, ca: trustme.CA) -> None:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)

    alice, bob = RecordingHost("alice"), RecordingHost("bob")
    serving = runtime.module.serve(event_log=logs.open(), port=0, ssl=server_context)
    async with serving as server:
        assert server.url == f"wss://127.0.0.1:{server.port}/sync"
        config = client_config(server.url)
        async with (
            runtime.module.connect(config, alice, ssl=client_context) as a,
            runtime.module.connect(config, bob, ssl=client_context) as b,
        ):
            await live(a, b)
            events = [alice.edit(a, REPOSITORY, f"doc{n}", n=n) for n in range(20)]
            await eventually(alice.all_synced)
            await eventually(lambda: bob.knows(events))
            assert bob.replica.documents(REPOSITORY) == alice.replica.documents(REPOSITORY)


async def test_a_client_refuses_a_certificate_it_does_not_trust(
    runtime: Runtime, logs: EventLogs, ca: trustme.CA
) -> None:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    untrusting = ssl.create_default_context()
    untrusting.load_verify_locations(cadata=trustme.CA().cert_pem.bytes().decode())

    host = RecordingHost()
    async with runtime.module.serve(event_log=logs.open(), port=0, ssl=server_context) as server:
        async with runtime.module.connect(client_config(server.url), host, ssl=untrusting):
            await eventually(
                lambda: any("CERTIFICATE_VERIFY_FAILED" in reason for _, reason in host.states)
            )
        assert not server.hub.peers
