"""The relay on a shared log: every event broadcast once, in sequence order (no database).

A fake shared log (the in-memory log plus a feed the test drives) and a
fake hub that records broadcasts stand in for PostgreSQL and the server.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from types import TracebackType

import anyio
import pytest

from lfws_adapters import _relay
from lfws_adapters._relay import Relay
from lfws_adapters.auth import Credentials
from lfws_adapters.event_log import InMemoryEventLog, StoreError
from lfws_adapters.postgres_change_feed import Change
from lfws_adapters.shared_event_log import SharedEventLog
from lfws_core.events import SyncEvent
from tests.adapters.test_event_log import event
from tests.e2e.helpers import eventually

pytestmark = pytest.mark.anyio

REPOSITORY = "todos"


class FakeFeed:
    """A change feed the test feeds by hand."""

    def __init__(self, cursors: Mapping[str, int], *, fail: bool = False) -> None:
        self.cursors = dict(cursors)
        self.fail = fail
        self.entered = self.exited = False
        self.send, self._receive = anyio.create_memory_object_stream[Change](100)

    async def __aenter__(self) -> FakeFeed:
        if self.fail:
            self.send.close()
            self._receive.close()
            raise StoreError("the database is down")
        self.entered = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.exited = True
        self.send.close()
        self._receive.close()

    def __aiter__(self) -> AsyncIterator[Change]:
        return self._receive


class SharedLog(InMemoryEventLog):
    """The in-memory log, shared: each feed starts where the log stands."""

    def __init__(self, *, failing_feeds: int = 0, failing_fetches: int = 0) -> None:
        super().__init__()
        self.feeds: list[FakeFeed] = []
        self.fetches: list[tuple[int, int]] = []
        self._failing_feeds = failing_feeds
        self._failing_fetches = failing_fetches
        self.waits = 0
        self.store_in_progress = anyio.Event()
        self.store_in_progress.set()  # none by default

    async def stores_returned(self, repository: str) -> None:
        self.waits += 1
        await self.store_in_progress.wait()

    def change_feed(self) -> FakeFeed:
        cursors = {r: len(self.log.events(r)) for r in self.log.repositories()}
        feed = FakeFeed(cursors, fail=len(self.feeds) < self._failing_feeds)
        self.feeds.append(feed)
        return feed

    async def fetch(self, repository: str, after_sequence: int, limit: int) -> list[SyncEvent]:
        self.fetches.append((after_sequence, limit))
        if self._failing_fetches:
            self._failing_fetches -= 1
            raise StoreError("connection lost")
        return await super().fetch(repository, after_sequence, limit)

    async def announce(self, repository: str = REPOSITORY) -> None:
        """What another node's commit does: a pointer on the feed."""
        up_to = len(self.log.events(repository))
        await self.feeds[-1].send.send(
            Change(repository=repository, after_sequence=0, up_to_sequence=up_to)
        )


class Hub:
    """Records every broadcast: (origin, repository, sequences)."""

    def __init__(self, log: SharedLog) -> None:
        self.event_log = log
        self.sent: list[tuple[object, str, list[int | None]]] = []

    def broadcast(self, origin: object, repository: str, events: tuple[SyncEvent, ...]) -> None:
        self.sent.append((origin, repository, [e.server_sequence for e in events]))


async def store(log: SharedLog, *event_ids: str) -> tuple[SyncEvent, ...]:
    """Store as some node does; return the events with their sequences."""
    return (await log.store(REPOSITORY, [event(i) for i in event_ids])).stored


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_relay, "_RETRY_DELAY", 0.01)


async def start(relay: Relay, tasks: anyio.abc.TaskGroup) -> None:
    tasks.start_soon(relay.run)
    authenticate = relay.gate(lambda credentials: "alice")
    credentials = Credentials(token="t", headers={}, handshake_headers=())
    assert await authenticate(credentials) == "alice"  # returns once the relay is ready


def test_a_log_with_a_change_feed_is_a_shared_log() -> None:
    assert isinstance(SharedLog(), SharedEventLog)
    assert not isinstance(InMemoryEventLog(), SharedEventLog)


async def test_events_go_out_in_sequence_order_each_once() -> None:
    log = SharedLog()
    hub = Hub(log)
    relay = Relay(hub, log, page_size=100)
    async with anyio.create_task_group() as tasks:
        await start(relay, tasks)
        first, second = (await store(log, "e1")), (await store(log, "e2"))
        # The second store's result comes back first: its event waits for 1,
        # which is committed already, so the relay fetches just that.
        relay.stored("B", REPOSITORY, second)
        await eventually(lambda: len(hub.sent) == 2)
        assert hub.sent == [(None, REPOSITORY, [1]), ("B", REPOSITORY, [2])]
        assert log.fetches == [(0, 1)]
        # The first store's result, late: broadcast already, not again.
        relay.stored("A", REPOSITORY, first)
        # Another node stores 3 and 4: the pointer brings them.
        await store(log, "e3", "e4")
        await log.announce()
        await eventually(lambda: len(hub.sent) == 3)
        assert hub.sent[2] == (None, REPOSITORY, [3, 4])
        # The pointer for our own store finds it broadcast: no fetch.
        relay.stored("A", REPOSITORY, await store(log, "e5"))
        await log.announce()
        await anyio.wait_all_tasks_blocked()
        assert hub.sent[3:] == [("A", REPOSITORY, [5])]
        assert log.fetches == [(0, 1), (2, 2)]
        tasks.cancel_scope.cancel()
    assert log.feeds[-1].exited


async def test_the_relay_starts_where_the_log_stood() -> None:
    log = SharedLog()
    await store(log, "old1", "old2")
    hub = Hub(log)
    relay = Relay(hub, log, page_size=100)
    async with anyio.create_task_group() as tasks:
        await start(relay, tasks)
        relay.stored("A", REPOSITORY, await store(log, "new"))
        relay.stored("A", "notes", (await log.store("notes", [event("n1")])).stored)
        assert hub.sent == [("A", REPOSITORY, [3]), ("A", "notes", [1])]
        assert log.fetches == []
        tasks.cancel_scope.cancel()


async def test_a_long_gap_is_fetched_by_pages_behind_held_events() -> None:
    log = SharedLog()
    hub = Hub(log)
    relay = Relay(hub, log, page_size=2)
    async with anyio.create_task_group() as tasks:
        await start(relay, tasks)
        await store(log, "e1", "e2", "e3", "e4", "e5")
        relay.stored("A", REPOSITORY, await store(log, "e6"))
        await eventually(lambda: len(hub.sent) == 4)
        assert hub.sent == [
            (None, REPOSITORY, [1, 2]),
            (None, REPOSITORY, [3, 4]),
            (None, REPOSITORY, [5]),
            ("A", REPOSITORY, [6]),
        ]
        assert log.fetches == [(0, 2), (2, 2), (4, 1)]
        tasks.cancel_scope.cancel()


async def test_failures_to_follow_or_fetch_are_retried(caplog: pytest.LogCaptureFixture) -> None:
    log = SharedLog(failing_feeds=2, failing_fetches=2)
    hub = Hub(log)
    relay = Relay(hub, log, page_size=100)
    async with anyio.create_task_group() as tasks:
        await start(relay, tasks)
        assert len(log.feeds) == 3 and log.feeds[-1].entered
        await store(log, "e1")
        await log.announce()
        await eventually(lambda: len(hub.sent) == 1)
        assert hub.sent == [(None, REPOSITORY, [1])]
        assert log.fetches == [(0, 1)] * 3
        tasks.cancel_scope.cancel()
    assert "cannot follow the shared event log" in caplog.text
    assert "cannot fetch todos after 0" in caplog.text


async def test_a_pointer_past_the_log_is_logged_not_looped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = SharedLog()
    hub = Hub(log)
    relay = Relay(hub, log, page_size=100)
    async with anyio.create_task_group() as tasks:
        await start(relay, tasks)
        await log.feeds[-1].send.send(
            Change(repository=REPOSITORY, after_sequence=0, up_to_sequence=3)
        )
        await eventually(lambda: "todos has no event after 0; expected up to 3" in caplog.text)
        assert hub.sent == []
        tasks.cancel_scope.cancel()


async def test_a_pointer_waits_for_this_nodes_store_so_its_writer_gets_no_echo() -> None:
    log = SharedLog()
    hub = Hub(log)
    relay = Relay(hub, log, page_size=100)
    async with anyio.create_task_group() as tasks:
        await start(relay, tasks)
        # This node's store committed and its pointer arrived before the
        # store call returned to the connection that made it.
        log.store_in_progress = anyio.Event()
        stored = await store(log, "e1")
        await log.announce()
        await eventually(lambda: log.waits == 1)
        relay.stored("A", REPOSITORY, stored)
        log.store_in_progress.set()
        await anyio.wait_all_tasks_blocked()
        assert hub.sent == [("A", REPOSITORY, [1])]
        assert log.fetches == []
        tasks.cancel_scope.cancel()


async def test_a_feed_that_ends_is_followed_anew_from_the_relays_cursors(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = SharedLog()
    hub = Hub(log)
    relay = Relay(hub, log, page_size=100)
    async with anyio.create_task_group() as tasks:
        await start(relay, tasks)
        relay.stored("A", REPOSITORY, await store(log, "e1"))
        # The feed ends; meanwhile another node stores 2 and 3, unannounced.
        log.feeds[-1].send.close()
        await store(log, "e2", "e3")
        await eventually(lambda: len(log.feeds) == 2)
        # The new feed starts at 3, but the relay's cursor stays at 2: it fetches.
        await eventually(lambda: len(hub.sent) == 2)
        assert hub.sent == [("A", REPOSITORY, [1]), (None, REPOSITORY, [2, 3])]
        assert log.fetches == [(1, 2)]
        relay.stored("B", REPOSITORY, await store(log, "e4"))
        assert hub.sent[2:] == [("B", REPOSITORY, [4])]
        tasks.cancel_scope.cancel()
    assert log.feeds[0].exited and log.feeds[1].exited
    assert "the change feed ended" in caplog.text


async def test_a_failure_in_the_relay_is_logged_and_the_feed_followed_anew(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Failing(SharedLog):
        failures = 1

        async def stores_returned(self, repository: str) -> None:
            if self.failures:
                self.failures -= 1
                raise RuntimeError("a bug")
            await super().stores_returned(repository)

    log = Failing()
    hub = Hub(log)
    relay = Relay(hub, log, page_size=100)
    async with anyio.create_task_group() as tasks:
        await start(relay, tasks)
        await store(log, "e1")
        await log.announce()
        await eventually(lambda: len(hub.sent) == 1)
        assert hub.sent == [(None, REPOSITORY, [1])]
        assert len(log.feeds) == 2
        tasks.cancel_scope.cancel()
    assert "the relay failed" in caplog.text
