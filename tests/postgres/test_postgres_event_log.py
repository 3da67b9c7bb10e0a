"""PostgresEventLog beyond the shared contract: schema, durability, errors, several nodes."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterator

import anyio
import psycopg
import pytest

from lfws_adapters.event_log import IncompatibleSchema, StoreClosed, StoreError
from lfws_adapters.postgres_event_log import SCHEMA_VERSION, PostgresEventLog
from lfws_core.errors import LocalProtocolError
from lfws_core.events import event_to_json
from tests.adapters.test_event_log import event, ids, sequences
from tests.e2e.helpers import eventually

from .server import Database, fresh_schema, server_dsn


@pytest.fixture
def database() -> Iterator[Database]:
    with fresh_schema() as database:
        yield database


@pytest.fixture
async def log(database: Database) -> AsyncIterator[PostgresEventLog]:
    log = PostgresEventLog(database.dsn, channel=database.channel, pool_size=2)
    yield log
    await log.aclose()


def waiting_for_a_lock(database: Database) -> int:
    rows = database.execute(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE application_name = 'lfws' AND wait_event_type = 'Lock'"
    )
    return int(rows[0][0])


def kill_connections(database: Database, application_name: str) -> int:
    rows = database.execute(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
        " WHERE application_name = %s AND pid <> pg_backend_pid()",
        (application_name,),
    )
    return int(rows[0][0])


@pytest.mark.anyio
class TestSchema:
    async def test_it_creates_versioned_tables_and_reopens_them(self, database: Database) -> None:
        log = PostgresEventLog(database.dsn)
        await log.store("todos", [event("a"), event("b")])
        await log.aclose()
        assert database.execute("SELECT version FROM lfws_schema") == [(SCHEMA_VERSION,)]
        tables = database.execute(
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = %s ORDER BY table_name",
            (database.schema,),
        )
        assert tables == [("lfws_events",), ("lfws_repositories",), ("lfws_schema",)]
        log = await PostgresEventLog.open(database.dsn)
        replay = await log.store("todos", [event("a"), event("c")])
        assert replay.duplicates == ("a",)
        assert sequences(replay.stored) == [3]
        assert dict(await log.stats()) == {"todos": 3}
        await log.aclose()

    async def test_the_stored_row_is_the_compact_dart_json(self, log: PostgresEventLog) -> None:
        stored = (await log.store("todos", [event("a", server_sequence=7)])).stored[0]
        expected = event_to_json(stored)
        del expected["serverSequence"]
        with psycopg.connect(log.dsn) as connection:
            row = connection.execute(
                "SELECT sequence, event_id, to_char(created_at AT TIME ZONE 'UTC',"
                " 'YYYY-MM-DD HH24:MI:SS'), payload FROM lfws_events"
            ).fetchone()
        assert row is not None
        sequence, event_id, created_at, payload = row
        assert (sequence, event_id, created_at) == (1, "a", "2026-01-01 00:00:00")
        assert json.loads(payload) == expected
        assert ": " not in payload and ", " not in payload

    async def test_a_newer_schema_is_refused(self, database: Database) -> None:
        await PostgresEventLog(database.dsn).aclose()
        database.execute("UPDATE lfws_schema SET version = %s", (SCHEMA_VERSION + 1,))
        with pytest.raises(IncompatibleSchema, match=f"version {SCHEMA_VERSION + 1}.*upgrade"):
            PostgresEventLog(database.dsn)

    async def test_an_unreadable_version_table_is_refused(self, database: Database) -> None:
        await PostgresEventLog(database.dsn).aclose()
        database.execute("DELETE FROM lfws_schema")
        with pytest.raises(IncompatibleSchema, match="unreadable lfws_schema"):
            PostgresEventLog(database.dsn)

    async def test_a_foreign_events_table_is_refused_and_left_alone(
        self, database: Database
    ) -> None:
        database.execute("CREATE TABLE lfws_events (anything text)")
        with pytest.raises(IncompatibleSchema, match="not an lfws event log"):
            PostgresEventLog(database.dsn)
        assert database.execute("SELECT to_regclass('lfws_schema') IS NULL") == [(True,)]

    async def test_nodes_opening_at_once_create_the_schema_once(self, database: Database) -> None:
        logs: list[PostgresEventLog] = []

        async def open_one() -> None:
            logs.append(await PostgresEventLog.open(database.dsn))

        async with anyio.create_task_group() as group:
            for _ in range(4):
                group.start_soon(open_one)
        assert database.execute("SELECT count(*) FROM lfws_schema") == [(1,)]
        for log in logs:
            await log.aclose()


@pytest.mark.anyio
class TestErrors:
    async def test_an_unreachable_server_fails_at_open_without_the_password(self) -> None:
        server_dsn()  # skip without PostgreSQL: the message format is libpq's
        dsn = "postgresql://lfws:s3cret@127.0.0.1:1/nowhere?connect_timeout=2"
        with pytest.raises(
            StoreError, match=r"cannot open PostgreSQL nowhere at 127\.0\.0\.1:1\b"
        ) as e:
            PostgresEventLog(dsn)
        assert "s3cret" not in str(e.value)

    async def test_a_malformed_dsn_is_a_store_error(self) -> None:
        server_dsn()
        with pytest.raises(StoreError, match="cannot open PostgreSQL"):
            PostgresEventLog("this is = not 'a dsn")

    async def test_a_database_that_is_not_utf8_is_refused(self, database: Database) -> None:
        name = database.schema + "_latin1"
        with psycopg.connect(database.server_dsn, autocommit=True) as admin:
            admin.execute(
                f"CREATE DATABASE {name} ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C'"
                " TEMPLATE template0"
            )
            try:
                dsn = psycopg.conninfo.make_conninfo(database.server_dsn, dbname=name)
                with pytest.raises(StoreError, match="encoding LATIN1; lfws needs a UTF8"):
                    PostgresEventLog(dsn)
            finally:
                admin.execute(f"DROP DATABASE {name}")

    async def test_bad_options_are_refused_at_once(self) -> None:
        with pytest.raises(LocalProtocolError, match="pool_size"):
            PostgresEventLog("", pool_size=0)
        with pytest.raises(LocalProtocolError, match="channel"):
            PostgresEventLog("", channel="")

    async def test_a_failed_store_stores_nothing_and_leaves_no_gap(
        self, database: Database, log: PostgresEventLog
    ) -> None:
        await log.store("todos", [event("a")])
        database.execute(
            "CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS $$"
            " BEGIN IF NEW.event_id = 'boom' THEN RAISE EXCEPTION 'disk on fire'; END IF;"
            " RETURN NEW; END $$"
        )
        database.execute(
            "CREATE TRIGGER boom BEFORE INSERT ON lfws_events FOR EACH ROW EXECUTE FUNCTION boom()"
        )
        with pytest.raises(StoreError, match="disk on fire"):
            await log.store("todos", [event("b"), event("boom")])
        assert ids(await log.fetch("todos", 0, 10)) == ["a"]
        assert dict(await log.stats()) == {"todos": 1}
        assert sequences((await log.store("todos", [event("b")])).stored) == [2]

    @pytest.mark.parametrize(
        ("repository", "event_id"),
        [("todos", "nul\x00id"), ("nul\x00repository", "a"), ("todos", "lone \ud800")],
    )
    async def test_names_postgresql_text_cannot_hold_are_store_errors(
        self, log: PostgresEventLog, repository: str, event_id: str
    ) -> None:
        with pytest.raises(StoreError, match=r"NUL|surrogates"):
            await log.store(repository, [event("fine"), event(event_id)])
        assert dict(await log.stats()) == {}
        with pytest.raises(StoreError, match=r"NUL"):
            await log.fetch("nul\x00repository", 0, 10)

    async def test_connections_the_server_dropped_are_replaced(
        self, database: Database, log: PostgresEventLog, caplog: pytest.LogCaptureFixture
    ) -> None:
        async with anyio.create_task_group() as group:  # both pooled connections in use
            group.start_soon(log.store, "todos", [event("a")])
            group.start_soon(log.store, "notes", [event("n")])
        assert kill_connections(database, "lfws") == 2
        # The first call on a dead connection drops every dead one and retries.
        with caplog.at_level(logging.WARNING, logger="lfws.store.postgres"):
            assert sequences((await log.store("todos", [event("b")])).stored) == [2]
            assert ids(await log.fetch("todos", 0, 10)) == ["a", "b"]
            assert dict(await log.stats()) == {"notes": 1, "todos": 2}
        assert caplog.text.count("lost a connection") == 1

    async def test_a_closed_log_keeps_saying_so(self, log: PostgresEventLog) -> None:
        await log.aclose()
        with pytest.raises(StoreClosed, match=r"PostgreSQL .* is closed"):
            await log.fetch("todos", 0, 1)


@pytest.mark.anyio
class TestSeveralNodes:
    async def test_a_replay_on_another_node_is_a_duplicate(self, database: Database) -> None:
        first = PostgresEventLog(database.dsn)
        second = PostgresEventLog(database.dsn)
        try:
            await first.store("todos", [event("a"), event("b")])
            replay = await second.store("todos", [event("b"), event("c"), event("a")])
            assert ids(replay.stored) == ["c"]
            assert sequences(replay.stored) == [3]
            assert replay.duplicates == ("b", "a")
            assert ids(await first.fetch("todos", 0, 10)) == ["a", "b", "c"]
        finally:
            await first.aclose()
            await second.aclose()

    async def test_a_store_waits_for_the_repository_lock_so_sequences_follow_commits(
        self, database: Database, log: PostgresEventLog
    ) -> None:
        await log.store("todos", [event("a")])
        await log.store("notes", [event("n")])
        # Another writer holds the repository's counter row, as a store in
        # flight on another node does between its first statement and COMMIT.
        with psycopg.connect(database.dsn) as writer:
            writer.execute(
                "SELECT last_sequence FROM lfws_repositories WHERE repository = 'todos' FOR UPDATE"
            )
            done = anyio.Event()
            results: list[list[int | None]] = []

            async def store_b() -> None:
                results.append(sequences((await log.store("todos", [event("b")])).stored))
                done.set()

            async with anyio.create_task_group() as group:
                group.start_soon(store_b)
                # Other repositories do not wait.
                with anyio.fail_after(5):
                    assert sequences((await log.store("notes", [event("m")])).stored) == [2]
                await eventually(lambda: waiting_for_a_lock(database) == 1)
                assert results == []
                assert ids(await log.fetch("todos", 0, 10)) == ["a"]
                writer.execute(
                    "INSERT INTO lfws_events (repository, sequence, event_id, created_at, payload)"
                    " VALUES ('todos', 2, 'other', now(), %s)",
                    (json.dumps(event_to_json(event("other"))),),
                )
                writer.execute(
                    "UPDATE lfws_repositories SET last_sequence = 2 WHERE repository = 'todos'"
                )
                writer.commit()
                with anyio.fail_after(5):
                    await done.wait()
        # The waiting store numbered its event after the one committed first.
        assert results == [[3]]
        assert ids(await log.fetch("todos", 0, 10)) == ["a", "other", "b"]
