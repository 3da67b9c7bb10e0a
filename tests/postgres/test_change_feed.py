"""ChangeFeed: a node hears what other nodes stored, and catches up after losing LISTEN."""

from __future__ import annotations

import itertools
import logging
from collections.abc import AsyncIterator, Iterator

import anyio
import pytest

from lfws_adapters.event_log import StoreError
from lfws_adapters.postgres_change_feed import Change, ChangeFeed
from lfws_adapters.postgres_event_log import PostgresEventLog
from lfws_core.errors import LocalProtocolError
from tests.adapters.test_event_log import event, ids
from tests.e2e.helpers import eventually

from .server import Database, fresh_schema

TIMEOUT = 5.0


@pytest.fixture
def database() -> Iterator[Database]:
    with fresh_schema() as database:
        yield database


@pytest.fixture
async def nodes(database: Database) -> AsyncIterator[tuple[PostgresEventLog, PostgresEventLog]]:
    """Two server nodes' event logs, each on its own pool."""
    first = PostgresEventLog(database.dsn, channel=database.channel, pool_size=2)
    second = PostgresEventLog(database.dsn, channel=database.channel, pool_size=2)
    yield first, second
    await first.aclose()
    await second.aclose()


def feed_of(database: Database, **options: object) -> ChangeFeed:
    options.setdefault("reconnect_delay", 0.02)
    return ChangeFeed(database.dsn, channel=database.channel, **options)  # type: ignore[arg-type]


async def next_change(feed: ChangeFeed) -> Change:
    with anyio.fail_after(TIMEOUT):
        return await anext(feed)


def change(repository: str, after: int, up_to: int) -> Change:
    return Change(repository=repository, after_sequence=after, up_to_sequence=up_to)


@pytest.mark.anyio
class TestChangeFeed:
    async def test_a_node_hears_what_another_node_stored(
        self, database: Database, nodes: tuple[PostgresEventLog, PostgresEventLog]
    ) -> None:
        here, there = nodes
        async with here.change_feed() as feed:  # on the log's database and channel
            await there.store("todos", [event("a"), event("b")])
            await there.store("notes", [event("n")])
            assert await next_change(feed) == change("todos", 0, 2)
            assert await next_change(feed) == change("notes", 0, 1)
            # The pointer says where to read; this node's own log has it all.
            assert ids(await here.fetch("todos", 0, 10)) == ["a", "b"]
            await there.store("todos", [event("c"), event("a")])
            assert await next_change(feed) == change("todos", 2, 3)
            assert feed.cursors == {"todos": 3, "notes": 1}

    async def test_a_feed_starts_where_the_database_stands_unless_given_cursors(
        self, database: Database, nodes: tuple[PostgresEventLog, PostgresEventLog]
    ) -> None:
        _, there = nodes
        await there.store("todos", [event("a"), event("b")])
        await there.store("notes", [event("n")])
        async with feed_of(database) as fresh, feed_of(database, cursors={"todos": 1}) as behind:
            assert fresh.cursors == {"todos": 2, "notes": 1}
            # Caught up from its cursors, in repository order; "notes" from 0.
            assert await next_change(behind) == change("notes", 0, 1)
            assert await next_change(behind) == change("todos", 1, 2)
            await there.store("todos", [event("c")])
            assert await next_change(fresh) == change("todos", 2, 3)
            assert await next_change(behind) == change("todos", 2, 3)

    async def test_pointers_that_pile_up_coalesce_per_repository(
        self, database: Database, nodes: tuple[PostgresEventLog, PostgresEventLog]
    ) -> None:
        here, there = nodes
        async with feed_of(database) as feed:
            for number in range(5):
                await (here if number % 2 else there).store("todos", [event(f"e{number}")])
            await there.store("notes", [event("n")])
            # Let every pointer arrive before reading one.
            await there.store("marker", [event("m")])
            changes = [await next_change(feed)]
            while changes[-1].repository != "marker":
                changes.append(await next_change(feed))
            todos = [c for c in changes if c.repository == "todos"]
            # Ranges chain without gaps or overlaps, whatever was coalesced.
            assert todos[0].after_sequence == 0 and todos[-1].up_to_sequence == 5
            for before, after in itertools.pairwise(todos):
                assert after.after_sequence == before.up_to_sequence

    async def test_a_killed_listen_connection_catches_up_by_cursor(
        self,
        database: Database,
        nodes: tuple[PostgresEventLog, PostgresEventLog],
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        _, there = nodes
        async with feed_of(database) as feed:
            await there.store("todos", [event("a")])
            assert await next_change(feed) == change("todos", 0, 1)
            killed = feed.backend_pid
            assert killed is not None
            assert database.execute("SELECT pg_terminate_backend(%s)", (killed,)) == [(True,)]
            await eventually(lambda: not backend_alive(database, killed))
            # Stored while the feed has no LISTEN connection: no NOTIFY reaches it.
            await there.store("todos", [event("b"), event("c")])
            await there.store("notes", [event("n")])
            with caplog.at_level(logging.INFO, logger="lfws.store.postgres.feed"):
                assert await next_change(feed) == change("notes", 0, 1)
                assert await next_change(feed) == change("todos", 1, 3)
            assert "lost its connection" in caplog.text
            assert "reconnected and caught up by cursor" in caplog.text
            assert feed.backend_pid not in (None, killed)
            # And it listens again.
            await there.store("todos", [event("d")])
            assert await next_change(feed) == change("todos", 3, 4)

    async def test_reconnecting_backs_off_until_it_succeeds(
        self,
        database: Database,
        nodes: tuple[PostgresEventLog, PostgresEventLog],
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        _, there = nodes
        async with feed_of(database, max_reconnect_delay=0.1) as feed:
            killed = feed.backend_pid
            # The catch-up scan fails while the table is away, so each
            # reconnection attempt fails until it is back.
            database.execute("ALTER TABLE lfws_repositories RENAME TO away")
            database.execute("SELECT pg_terminate_backend(%s)", (killed,))
            with caplog.at_level(logging.WARNING, logger="lfws.store.postgres.feed"):
                async with anyio.create_task_group() as group:
                    changes: list[Change] = []

                    async def read_one() -> None:
                        changes.append(await next_change(feed))

                    group.start_soon(read_one)
                    await eventually(lambda: caplog.text.count("retrying in") >= 3)
                    database.execute("ALTER TABLE away RENAME TO lfws_repositories")
                    await there.store("todos", [event("a")])
            assert changes == [change("todos", 0, 1)]
            assert "retrying in 0.1 s" in caplog.text

    async def test_the_periodic_scan_finds_what_no_pointer_announced(
        self, database: Database
    ) -> None:
        # A writer on another channel announces nothing to this feed.
        silent = PostgresEventLog(database.dsn, channel="elsewhere")
        try:
            async with feed_of(database, poll_interval=0.05) as feed:
                await silent.store("todos", [event("a")])
                assert await next_change(feed) == change("todos", 0, 1)
        finally:
            await silent.aclose()

    async def test_a_pointer_too_long_to_send_makes_the_feed_scan(
        self, database: Database, nodes: tuple[PostgresEventLog, PostgresEventLog]
    ) -> None:
        _, there = nodes
        long_name = "r" * 8000
        async with feed_of(database) as feed:
            await there.store(long_name, [event("a")])
            assert await next_change(feed) == change(long_name, 0, 1)

    async def test_closing_ends_the_iteration_even_from_another_task(
        self, database: Database, nodes: tuple[PostgresEventLog, PostgresEventLog]
    ) -> None:
        _, there = nodes
        seen: list[Change] = []
        async with feed_of(database) as feed:

            async def consume() -> None:
                async for item in feed:
                    seen.append(item)

            async with anyio.create_task_group() as group:
                group.start_soon(consume)
                await there.store("todos", [event("a")])
                await eventually(lambda: len(seen) == 1)
                with anyio.fail_after(TIMEOUT):
                    await feed.aclose()
            assert feed.backend_pid is None
        with pytest.raises(StopAsyncIteration):
            await anext(feed)
        assert seen == [change("todos", 0, 1)]

    async def test_entering_fails_clearly_without_the_schema(self, database: Database) -> None:
        with pytest.raises(StoreError, match=r"change feed on PostgreSQL.*lfws_repositories"):
            async with feed_of(database):
                pass

    async def test_misuse_is_refused(self, database: Database) -> None:
        await PostgresEventLog(database.dsn, channel=database.channel).aclose()
        feed = feed_of(database)
        with pytest.raises(LocalProtocolError, match="async with"):
            await anext(feed)
        async with feed:
            with pytest.raises(LocalProtocolError, match="entered once"):
                await feed.__aenter__()
        with pytest.raises(LocalProtocolError, match="channel"):
            ChangeFeed("", channel="")
        with pytest.raises(LocalProtocolError, match="positive"):
            ChangeFeed("", poll_interval=0)
        with pytest.raises(LocalProtocolError, match="positive"):
            ChangeFeed("", reconnect_delay=1, max_reconnect_delay=0.5)


def backend_alive(database: Database, pid: int) -> bool:
    rows = database.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,))
    return bool(rows[0][0])
