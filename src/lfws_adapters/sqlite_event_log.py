"""The embedded event log: one SQLite file in WAL mode, the server's default store."""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Literal

from lfws_core.errors import LocalProtocolError
from lfws_core.events import SyncEvent, format_timestamp

from ._sqlite import ensure_schema, transaction, use_wal
from ._stored_events import decode_payload, encode_payload, fetch_bounds
from .event_log import StoreClosed, StoreError, StoreResult, check_fetch_limit

__all__ = ["SCHEMA_VERSION", "SqliteEventLog"]

SCHEMA_VERSION = 1
"""The ``PRAGMA user_version`` of the files this lfws writes."""

_logger = logging.getLogger("lfws.store.sqlite")

_SCHEMA = (
    # The primary key is the index that serves fetch by (repository, sequence).
    """
    CREATE TABLE events (
        repository TEXT NOT NULL,
        sequence INTEGER NOT NULL,
        event_id TEXT NOT NULL,
        created_at TEXT NOT NULL,
        payload TEXT NOT NULL,
        PRIMARY KEY (repository, sequence),
        UNIQUE (repository, event_id)
    )
    """,
    # One counter row per repository: the next sequence is a point lookup and,
    # because sequences have no gaps, last_sequence is also the event count.
    """
    CREATE TABLE repositories (
        repository TEXT PRIMARY KEY,
        last_sequence INTEGER NOT NULL
    ) WITHOUT ROWID
    """,
    f"PRAGMA user_version = {SCHEMA_VERSION}",
)

_INSERT = """
    INSERT INTO events (repository, sequence, event_id, created_at, payload)
    VALUES (?, ?, ?, ?, ?)
    ON CONFLICT (repository, event_id) DO NOTHING
"""

_ADVANCE = """
    INSERT INTO repositories (repository, last_sequence) VALUES (?, ?)
    ON CONFLICT (repository) DO UPDATE SET last_sequence = excluded.last_sequence
"""


class SqliteEventLog:
    """An :class:`~lfws_adapters.event_log.EventLog` in one SQLite file.

    The file is created when missing (its directory must exist) and put in
    WAL mode; the schema is created on first open and versioned with
    ``PRAGMA user_version``: opening a file written by a newer lfws, or a
    database that is not an lfws event log, raises
    :class:`~lfws_adapters.event_log.IncompatibleSchema`.

    Durability: every :meth:`store` call is one ``BEGIN IMMEDIATE ... COMMIT``
    transaction and returns only after ``COMMIT``. With WAL and
    ``synchronous="NORMAL"`` (the default) a committed event survives the
    process being killed (even ``kill -9``), but the last transactions may be
    lost if the machine loses power or the OS crashes. ``synchronous="FULL"``
    syncs the WAL to disk on every commit and survives power loss too, at the
    cost of one fsync per store call.

    The async methods run the SQLite calls directly on the event loop thread,
    so they work under asyncio and trio alike: these transactions are tiny,
    and a store with ``"FULL"`` blocks the loop for one fsync. Several
    processes may share a file: ``BEGIN IMMEDIATE`` serialises the writers,
    so sequences stay gap-free. A SQLite failure surfaces as
    :class:`~lfws_adapters.event_log.StoreError` and stores nothing.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
    ) -> None:
        if synchronous not in ("NORMAL", "FULL"):
            raise LocalProtocolError(f"synchronous must be 'NORMAL' or 'FULL', not {synchronous!r}")
        self._path = os.fspath(path)
        try:
            connection = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open {self._path}: {exc}") from exc
        self._connection: sqlite3.Connection | None = connection
        try:
            with self._errors_as_store_error():
                self._configure(synchronous)
                self._migrate()
        except BaseException:
            connection.close()
            self._connection = None
            raise

    @property
    def path(self) -> str:
        """The database file."""
        return self._path

    # --- opening ----------------------------------------------------------

    def _configure(self, synchronous: str) -> None:
        use_wal(self._open_connection(), self._path, synchronous)

    def _migrate(self) -> None:
        with self._transaction() as connection:
            ensure_schema(
                connection,
                path=self._path,
                kind="event log",
                version=SCHEMA_VERSION,
                statements=_SCHEMA,
            )

    # --- plumbing ---------------------------------------------------------

    def _open_connection(self) -> sqlite3.Connection:
        if self._connection is None:
            raise StoreClosed(f"the event log {self._path} is closed")
        return self._connection

    @contextmanager
    def _errors_as_store_error(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise StoreError(f"{self._path}: {exc}") from exc

    def _transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        return transaction(self._open_connection())

    # --- the EventLog -----------------------------------------------------

    async def store(self, repository: str, events: Sequence[SyncEvent]) -> StoreResult:
        """Append the new ``events`` to ``repository`` in one transaction.

        Returns after ``COMMIT``; see :meth:`lfws_adapters.event_log.EventLog.store`.
        """
        return self.store_now(repository, events)

    # The synchronous body of store: the hub calls it directly (see
    # ImmediateEventLog), so an embedded store costs no task.

    def store_now(self, repository: str, events: Sequence[SyncEvent]) -> StoreResult:
        """Do what :meth:`store` does, synchronously."""
        self._open_connection()
        if not events:
            return StoreResult(stored=(), duplicates=())
        # Encoded before BEGIN: the write lock is held for SQL only.
        rows = [
            (event, format_timestamp(event.created_at), encode_payload(event)) for event in events
        ]
        stored: list[SyncEvent] = []
        duplicates: list[str] = []
        with self._errors_as_store_error(), self._transaction() as connection:
            row = connection.execute(
                "SELECT last_sequence FROM repositories WHERE repository = ?", (repository,)
            ).fetchone()
            last = 0 if row is None else row[0]
            for event, created_at, payload in rows:
                cursor = connection.execute(
                    _INSERT, (repository, last + 1, event.event_id, created_at, payload)
                )
                # The unique (repository, event_id) index also catches repeats within this call.
                if cursor.rowcount:
                    last += 1
                    stored.append(event.with_sequence(last))
                else:
                    duplicates.append(event.event_id)
            if stored:
                connection.execute(_ADVANCE, (repository, last))
        return StoreResult(stored=tuple(stored), duplicates=tuple(duplicates))

    async def fetch(self, repository: str, after_sequence: int, limit: int) -> list[SyncEvent]:
        """Return at most ``limit`` events with a sequence above ``after_sequence``, ascending."""
        connection = self._open_connection()
        check_fetch_limit(limit)
        bounds = fetch_bounds(after_sequence, limit)
        with self._errors_as_store_error():
            rows = connection.execute(
                "SELECT sequence, payload FROM events"
                " WHERE repository = ? AND sequence > ? ORDER BY sequence LIMIT ?",
                (repository, *bounds),
            ).fetchall()
        return [decode_payload(sequence, payload) for sequence, payload in rows]

    async def repositories(self) -> list[str]:
        """Return the repositories holding at least one event, sorted."""
        return list(await self.stats())

    async def stats(self) -> Mapping[str, int]:
        """Return the number of events per repository, in repository order."""
        connection = self._open_connection()
        with self._errors_as_store_error():
            rows = connection.execute(
                "SELECT repository, last_sequence FROM repositories ORDER BY repository"
            ).fetchall()
        return dict(rows)

    async def aclose(self) -> None:
        """Close the database; idempotent."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None
