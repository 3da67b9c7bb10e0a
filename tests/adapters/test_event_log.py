"""The storage seam: every EventLog backend keeps the same promises."""

from __future__ import annotations

import json
import logging
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import ExitStack, asynccontextmanager
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.postgres.server import fresh_schema

from lfws_adapters import _stored_events
from lfws_adapters.event_log import (
    EventLog,
    IncompatibleSchema,
    InMemoryEventLog,
    StoreClosed,
    StoreError,
    StoreResult,
)
from lfws_adapters.sqlite_event_log import SCHEMA_VERSION, SqliteEventLog
from lfws_core.errors import LocalProtocolError
from lfws_core.events import Operation, SyncEvent, event_to_json
from lfws_core.testing import MemoryEventLog

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def event(event_id: str, data_id: str = "doc", **changes: object) -> SyncEvent:
    fields: dict[str, object] = {
        "event_id": event_id,
        "operation": Operation.UPDATE,
        "data_id": data_id,
        "created_at": T0,
        "data": {"id": data_id, "title": f"from {event_id}"},
    }
    fields.update(changes)
    return SyncEvent(**fields)  # type: ignore[arg-type]


def ids(events: list[SyncEvent] | tuple[SyncEvent, ...]) -> list[str]:
    return [e.event_id for e in events]


def sequences(events: list[SyncEvent] | tuple[SyncEvent, ...]) -> list[int | None]:
    return [e.server_sequence for e in events]


# Events that stress the stored form: each must come back equal.
AWKWARD_EVENTS = [
    event("unicode", data={"title": "naïve café ☕ 𝄞 日本語", "emoji": "👩‍💻"}),
    event(
        "nested",
        data={"a": [1, 2.5, -0.0, None, True, {"b": [[], {}]}], "deep": {"x": {"y": {"z": "w"}}}},
    ),
    event("extra", extra={"_user": "alice", "schemaVersion": 3, "meta": {"tags": ["a"]}}),
    event("micro", created_at=T0 + timedelta(microseconds=123456)),
    event("millis", created_at=T0 + timedelta(milliseconds=7)),
    event("offset", created_at=datetime(2026, 1, 1, 9, 30, tzinfo=timezone(timedelta(hours=2)))),
    event("delete", operation=Operation.DELETE, data=None),
    event("insert", operation=Operation.INSERT, data={}),
    event("huge-int", data={"n": 2**80, "m": -(2**70)}),  # beyond orjson's 64 bits
    event("surrogate", data={"s": "lone \ud800 surrogate"}),  # orjson refuses it too
    event("quotes", data_id='id "with" \\ and \n newline', data={"k\u0000": "nul \u0000"}),
]


@asynccontextmanager
async def persistent_log(kind: str, directory: Path) -> AsyncIterator[EventLog]:
    """A fresh, empty log of a backend that stores for real."""
    backend: EventLog
    with ExitStack() as stack:
        if kind == "sqlite":
            backend = SqliteEventLog(directory / "events.db")
        else:
            from lfws_adapters.postgres_event_log import PostgresEventLog

            database = stack.enter_context(fresh_schema())
            backend = PostgresEventLog(database.dsn, channel=database.channel, pool_size=2)
        try:
            yield backend
        finally:
            await backend.aclose()


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def log(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[EventLog]:
    if request.param == "memory":
        backend = InMemoryEventLog()
        yield backend
        await backend.aclose()
        return
    async with persistent_log(request.param, tmp_path) as backend:
        yield backend


@pytest.mark.anyio
class TestContract:
    async def test_sequences_start_at_one_and_increase_per_repository(self, log: EventLog) -> None:
        first = await log.store("todos", [event("a"), event("b")])
        other = await log.store("notes", [event("c")])
        second = await log.store("todos", [event("d")])
        assert sequences(first.stored) == [1, 2]
        assert sequences(other.stored) == [1]
        assert sequences(second.stored) == [3]

    async def test_stored_events_keep_input_order_and_get_fresh_sequences(
        self, log: EventLog
    ) -> None:
        incoming = [event("z", server_sequence=99), event("a"), event("m")]
        result = await log.store("todos", incoming)
        assert result == StoreResult(
            stored=tuple(e.with_sequence(n) for n, e in enumerate(incoming, 1)), duplicates=()
        )

    async def test_duplicates_within_one_call_are_reported_not_stored(self, log: EventLog) -> None:
        result = await log.store("todos", [event("a"), event("b"), event("a"), event("b")])
        assert ids(result.stored) == ["a", "b"]
        assert result.duplicates == ("a", "b")
        assert ids(await log.fetch("todos", 0, 10)) == ["a", "b"]

    async def test_a_replay_is_reported_as_duplicate_and_stored_once(self, log: EventLog) -> None:
        await log.store("todos", [event("a"), event("b")])
        replay = await log.store("todos", [event("b"), event("c"), event("a")])
        assert ids(replay.stored) == ["c"]
        assert sequences(replay.stored) == [3]
        assert replay.duplicates == ("b", "a")
        assert ids(await log.fetch("todos", 0, 10)) == ["a", "b", "c"]
        again = await log.store("todos", [event("c"), event("a")])
        assert again == StoreResult(stored=(), duplicates=("c", "a"))
        assert sequences((await log.store("todos", [event("d")])).stored) == [4]

    async def test_the_same_id_in_another_repository_is_another_event(self, log: EventLog) -> None:
        await log.store("todos", [event("a")])
        result = await log.store("notes", [event("a")])
        assert sequences(result.stored) == [1]
        assert result.duplicates == ()

    async def test_fetch_pages_through_the_log_by_cursor(self, log: EventLog) -> None:
        await log.store("todos", [event(f"e{n}") for n in range(1, 8)])
        await log.store("notes", [event("other")])
        pages: list[list[str]] = []
        cursor = 0
        while page := await log.fetch("todos", cursor, 3):
            pages.append(ids(page))
            assert sequences(page) == list(range(cursor + 1, cursor + 1 + len(page)))
            cursor = page[-1].server_sequence or 0
        assert pages == [["e1", "e2", "e3"], ["e4", "e5", "e6"], ["e7"]]

    async def test_fetch_cursor_edges(self, log: EventLog) -> None:
        await log.store("todos", [event("a"), event("b")])
        assert ids(await log.fetch("todos", -5, 10)) == ["a", "b"]
        assert await log.fetch("todos", 2, 10) == []
        assert await log.fetch("todos", 2**70, 2**70) == []
        assert ids(await log.fetch("todos", 0, 2**70)) == ["a", "b"]
        assert await log.fetch("unknown", 0, 10) == []

    async def test_fetch_rejects_a_limit_below_one(self, log: EventLog) -> None:
        with pytest.raises(LocalProtocolError, match="at least 1"):
            await log.fetch("todos", 0, 0)

    async def test_repositories_and_stats_list_those_with_events(self, log: EventLog) -> None:
        assert await log.repositories() == []
        assert dict(await log.stats()) == {}
        await log.store("todos", [event("a"), event("b"), event("a")])
        await log.store("empty", [])
        await log.store("Notes", [event("c")])
        await log.store("notes", [event("d")])
        assert await log.repositories() == ["Notes", "notes", "todos"]
        assert dict(await log.stats()) == {"Notes": 1, "notes": 1, "todos": 2}

    async def test_storing_nothing_stores_nothing(self, log: EventLog) -> None:
        assert await log.store("todos", []) == StoreResult(stored=(), duplicates=())
        assert await log.repositories() == []

    async def test_events_round_trip_exactly(self, log: EventLog) -> None:
        result = await log.store("todos", AWKWARD_EVENTS)
        fetched = await log.fetch("todos", 0, 100)
        assert fetched == list(result.stored)
        assert fetched == [e.with_sequence(n) for n, e in enumerate(AWKWARD_EVENTS, 1)]
        assert [event_to_json(e) for e in fetched] == [event_to_json(e) for e in result.stored]

    async def test_a_closed_log_refuses_every_call(self, log: EventLog) -> None:
        await log.aclose()
        await log.aclose()
        with pytest.raises(StoreClosed, match="closed"):
            await log.store("todos", [event("a")])
        with pytest.raises(StoreClosed):
            await log.store("todos", [])
        with pytest.raises(StoreClosed):
            await log.fetch("todos", 0, 1)
        with pytest.raises(StoreClosed):
            await log.repositories()
        with pytest.raises(StoreClosed):
            await log.stats()
        assert issubclass(StoreClosed, LocalProtocolError)


# Store calls drawn from few ids and repositories, so replays and collisions abound.
store_calls = st.lists(
    st.tuples(st.sampled_from(["todos", "notes"]), st.lists(st.sampled_from("abcdef"), max_size=6)),
    max_size=8,
)


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
@settings(max_examples=50, deadline=None)
@given(calls=store_calls)
async def test_a_persistent_log_answers_like_the_reference_log(
    kind: str, calls: list[tuple[str, list[str]]]
) -> None:
    reference = InMemoryEventLog()
    with tempfile.TemporaryDirectory() as directory:
        async with persistent_log(kind, Path(directory)) as log:
            for number, (repository, batch) in enumerate(calls):
                events = [event(event_id, data={"call": number}) for event_id in batch]
                assert await log.store(repository, events) == await reference.store(
                    repository, events
                )
            for repository in ("todos", "notes"):
                for after in range(8):
                    expected = await reference.fetch(repository, after, 2)
                    assert await log.fetch(repository, after, 2) == expected
            assert await log.repositories() == await reference.repositories()
            assert await log.stats() == await reference.stats()


@pytest.mark.anyio
class TestInMemory:
    async def test_it_shares_the_log_it_was_given(self) -> None:
        memory = MemoryEventLog()
        log = InMemoryEventLog(memory)
        await log.store("todos", [event("a")])
        assert log.log is memory
        assert "a" in memory


@pytest.mark.anyio
class TestSqlite:
    async def test_events_persist_across_close_and_reopen(self, tmp_path: Path) -> None:
        path = tmp_path / "events.db"
        log = SqliteEventLog(path)
        await log.store("todos", [event("a"), event("b")])
        await log.aclose()
        log = SqliteEventLog(str(path))
        replay = await log.store("todos", [event("a"), event("c")])
        assert replay.duplicates == ("a",)
        assert sequences(replay.stored) == [3]
        assert ids(await log.fetch("todos", 0, 10)) == ["a", "b", "c"]
        assert dict(await log.stats()) == {"todos": 3}
        assert log.path == str(path)
        await log.aclose()

    async def test_the_file_is_in_wal_mode_with_the_schema_version(self, tmp_path: Path) -> None:
        path = tmp_path / "events.db"
        log = SqliteEventLog(path, synchronous="FULL")
        await log.store("todos", [event("a")])
        with sqlite3.connect(path) as other:
            assert other.execute("PRAGMA journal_mode").fetchone() == ("wal",)
            assert other.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        await log.aclose()

    async def test_the_stored_payload_is_the_compact_dart_json(self, tmp_path: Path) -> None:
        path = tmp_path / "events.db"
        log = SqliteEventLog(path)
        stored = (await log.store("todos", [event("a", server_sequence=7)])).stored[0]
        await log.aclose()
        with sqlite3.connect(path) as other:
            row = other.execute("SELECT sequence, event_id, created_at, payload FROM events")
            sequence, event_id, created_at, payload = row.fetchone()
        expected = event_to_json(stored)
        del expected["serverSequence"]
        assert (sequence, event_id, created_at) == (1, "a", "2026-01-01T00:00:00.000Z")
        assert json.loads(payload) == expected
        assert ": " not in payload and ", " not in payload

    async def test_events_round_trip_without_orjson(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(_stored_events, "_fast_dumps", None)
        log = SqliteEventLog(tmp_path / "events.db")
        stored = (await log.store("todos", AWKWARD_EVENTS)).stored
        assert await log.fetch("todos", 0, 100) == list(stored)
        await log.aclose()

    async def test_a_failed_store_stores_nothing(self, tmp_path: Path) -> None:
        path = tmp_path / "events.db"
        log = SqliteEventLog(path)
        await log.store("todos", [event("a")])
        with sqlite3.connect(path) as other:  # a stand-in for a disk failing mid-transaction
            other.execute(
                "CREATE TRIGGER boom BEFORE INSERT ON events WHEN NEW.event_id = 'boom'"
                " BEGIN SELECT RAISE(ABORT, 'disk on fire'); END"
            )
        with pytest.raises(StoreError, match="disk on fire"):
            await log.store("todos", [event("b"), event("boom")])
        assert ids(await log.fetch("todos", 0, 10)) == ["a"]
        assert dict(await log.stats()) == {"todos": 1}
        assert sequences((await log.store("todos", [event("b")])).stored) == [2]
        await log.aclose()

    async def test_a_newer_schema_is_refused(self, tmp_path: Path) -> None:
        path = tmp_path / "events.db"
        await SqliteEventLog(path).aclose()
        with sqlite3.connect(path) as other:
            other.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        with pytest.raises(IncompatibleSchema, match=f"version {SCHEMA_VERSION + 1}.*upgrade"):
            SqliteEventLog(path)

    async def test_a_foreign_database_is_refused(self, tmp_path: Path) -> None:
        path = tmp_path / "other.db"
        with sqlite3.connect(path) as other:
            other.execute("CREATE TABLE events (anything)")
        with pytest.raises(IncompatibleSchema, match="not an lfws event log"):
            SqliteEventLog(path)
        with sqlite3.connect(path) as other:
            assert other.execute("SELECT name FROM sqlite_master").fetchall() == [("events",)]

    async def test_opening_errors_are_store_errors(self, tmp_path: Path) -> None:
        with pytest.raises(StoreError, match="cannot open"):
            SqliteEventLog(tmp_path / "missing" / "events.db")
        (tmp_path / "garbage.db").write_bytes(b"not a database at all" * 100)
        with pytest.raises(StoreError, match=r"garbage\.db"):
            SqliteEventLog(tmp_path / "garbage.db")

    async def test_synchronous_must_be_normal_or_full(self, tmp_path: Path) -> None:
        with pytest.raises(LocalProtocolError, match="synchronous"):
            SqliteEventLog(tmp_path / "events.db", synchronous="OFF")  # type: ignore[arg-type]
        assert not (tmp_path / "events.db").exists()

    async def test_without_wal_it_warns_and_still_works(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        with caplog.at_level(logging.WARNING, logger="lfws.store.sqlite"):
            log = SqliteEventLog(":memory:")
        assert "WAL mode unavailable" in caplog.text
        assert sequences((await log.store("todos", [event("a")])).stored) == [1]
        await log.aclose()


_STORE_THEN_WAIT = """
import asyncio, json, sys
from lfws_core.events import event_from_json
from lfws_adapters import sqlite_event_log
from lfws_adapters.sqlite_event_log import SqliteEventLog

async def main():
    log = SqliteEventLog(sys.argv[1])
    await log.store("todos", [event_from_json(e) for e in json.loads(sys.argv[2])])
    print("stored", flush=True)
    sys.stdin.read()  # keep the connection open until the parent kills us

asyncio.run(main())
"""


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_an_acknowledged_store_survives_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    events = [event("a"), event("b", data={"n": 2**80})]
    with subprocess.Popen(
        [
            sys.executable,
            "-c",
            _STORE_THEN_WAIT,
            str(path),
            json.dumps(list(map(event_to_json, events))),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as child:
        line = child.stdout.readline() if child.stdout else ""
        child.kill()
        _, errors = child.communicate()
    assert line == "stored\n", errors
    assert child.returncode == -9
    # The commit is still in the write-ahead log: reopening must recover it.
    assert Path(f"{path}-wal").stat().st_size > 0

    async def reopen() -> list[SyncEvent]:
        log = SqliteEventLog(path)
        try:
            return await log.fetch("todos", 0, 10)
        finally:
            await log.aclose()

    assert anyio.run(reopen) == [e.with_sequence(n) for n, e in enumerate(events, 1)]
