"""Pushes the server refuses for good are rejected once, never resent; the rest syncs."""

from __future__ import annotations

import pytest

from lfws_adapters.auth import Access
from lfws_adapters.driver import ClientHost
from lfws_adapters.event_log import InMemoryEventLog
from lfws_core.actions import ConnectionState
from lfws_core.close_codes import CloseCode

from .helpers import REPOSITORY, client_config, eventually, live
from .hosts import RecordingHost
from .runtimes import Runtime

pytestmark = pytest.mark.anyio

SECRET = "secret"


class WritesOutsideSecret:
    """An authorizer: anyone reads anything, nobody writes to ``secret``; counts the asks."""

    def __init__(self) -> None:
        self.secret_writes = 0

    def __call__(self, principal: object, repository: str, access: Access) -> bool:
        if repository == SECRET and access is Access.WRITE:
            self.secret_writes += 1
            return False
        return True


async def test_events_the_authorizer_refuses_are_rejected_once_and_never_resent(
    runtime: Runtime,
) -> None:
    host = RecordingHost()
    authorizer = WritesOutsideSecret()
    async with (
        runtime.module.serve(event_log=InMemoryEventLog(), port=0, authorizer=authorizer) as server,
        runtime.module.connect(client_config(server.url), host) as c,
    ):
        await live(c)
        refused = host.edit(c, SECRET, "s1", title="classified")
        host.edit(c, REPOSITORY, "doc", title="hello")
        await eventually(lambda: bool(host.rejected))
        await eventually(lambda: len(host.synced) == 1)
        assert host.rejected == [
            (SECRET, (refused.event_id,), f"Failed to push event: no write access to {SECRET}")
        ]
        assert host.failed == []
        assert c.health().pending == 0

        # A new connection flushes what is still pending: the refused event is not.
        for peer in server.hub.peers:
            peer.close(CloseCode.GOING_AWAY, "restarting")
        await eventually(lambda: [s for s, _ in host.states].count(ConnectionState.LIVE) == 2)
        host.edit(c, REPOSITORY, "doc", title="hello again")
        accepted = {event.event_id for event in host.pushed} - {refused.event_id}
        await eventually(lambda: host.synced == accepted)

    assert authorizer.secret_writes == 1
    assert len(host.rejected) == 1


async def test_a_host_without_push_rejected_hears_of_it_as_push_failed() -> None:
    class OldHost(ClientHost):
        def __init__(self) -> None:
            self.failed: list[tuple[str, tuple[str, ...], str]] = []

        async def push_failed(
            self, repository: str, event_ids: tuple[str, ...], reason: str
        ) -> None:
            self.failed.append((repository, event_ids, reason))

    host = OldHost()
    await host.push_rejected(SECRET, ("e1",), "no write access")
    assert host.failed == [(SECRET, ("e1",), "no write access")]
