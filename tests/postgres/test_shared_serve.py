"""``serve(event_log=PostgresEventLog(...))``: two nodes in one process, on both anyio backends.

The Python API needs nothing more than the shared log: the server sees it
has a change feed and follows it. Cross-node broadcasts go through the same
authorizer filtering as local ones.
"""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import pytest

from lfws_adapters.anyio import connect, serve
from lfws_adapters.auth import Access
from lfws_adapters.driver import ClientHost
from lfws_adapters.postgres_event_log import PostgresEventLog
from lfws_core.actions import ConnectionState
from lfws_core.events import SyncEvent
from tests.adapters.test_event_log import event
from tests.e2e.helpers import client_config, eventually

from .server import Database, fresh_schema

pytestmark = pytest.mark.anyio


@pytest.fixture
def database() -> Iterator[Database]:
    with fresh_schema() as database:
        yield database


class Received(ClientHost):
    def __init__(self) -> None:
        self.events: list[tuple[str, str, int | None]] = []

    async def apply_events(self, repository: str, events: tuple[SyncEvent, ...]) -> None:
        self.events.extend((repository, e.event_id, e.server_sequence) for e in events)


def no_secrets_for_guests(principal: object, repository: str, access: Access) -> bool:
    return principal != "guest" or repository != "secret"


async def test_a_node_relays_other_nodes_events_through_its_authorizer(
    database: Database,
) -> None:
    logs = [
        await PostgresEventLog.open(database.dsn, channel=database.channel, pool_size=2)
        for _ in range(2)
    ]
    alice_got, guest_got = Received(), Received()
    async with (
        serve(event_log=logs[0], port=0, authorizer=no_secrets_for_guests) as here,
        serve(event_log=logs[1], port=0, authorizer=no_secrets_for_guests) as there,
        connect(client_config(here.url, token="alice"), alice_got) as alice,
        connect(
            client_config(there.url, token="guest", repositories=("todos",)), guest_got
        ) as guest,
    ):
        await alice.wait_for_state(ConnectionState.LIVE)
        await guest.wait_for_state(ConnectionState.LIVE)
        alice.push("todos", event("t1"))
        alice.push("secret", event("s1"))
        alice.push("todos", event("t2"))
        await eventually(lambda: len(guest_got.events) == 2)
        await anyio.sleep(0.1)
        # In order, each once, and nothing the guest may not read.
        assert guest_got.events == [("todos", "t1", 1), ("todos", "t2", 2)]
        assert alice_got.events == []  # her own events are not echoed
