"""The embedded local store: one SQLite file in WAL mode, a client's default storage."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from typing import Any, Literal

from lfws_core.errors import LocalProtocolError
from lfws_core.events import JsonValue, SyncEvent, format_timestamp, parse_timestamp
from lfws_core.merge import document_state

from ._sqlite import ensure_schema, transaction, use_wal
from .local_storage import (
    Change,
    RejectedEvent,
    StoreError,
    SyncStatus,
    _apply,
    _check_cursor,
    _check_outbox_limit,
    _dumps,
    _Lifecycle,
    _load_event,
    _record,
    _StoredEvent,
    _timestamp,
    _unique_ids,
    _utc_now,
    matches,
)

__all__ = ["APPLICATION_ID", "SCHEMA_VERSION", "SqliteLocalFirstStorage"]

SCHEMA_VERSION = 1
"""The ``PRAGMA user_version`` of the local stores this lfws writes."""

APPLICATION_ID = 0x6C66_776C
"""The ``PRAGMA application_id`` that marks a file as an lfws local store ("lfwl")."""

_logger = logging.getLogger("lfws.local_store.sqlite")

_PENDING, _OK, _FAILED = SyncStatus.PENDING.value, SyncStatus.OK.value, SyncStatus.FAILED.value

_SCHEMA = (
    # Every event, local or remote: the rowid is the recording order (the
    # outbox order; rows are never deleted, so rowids only grow). A row with
    # rejected_at set is a dead letter.
    """
    CREATE TABLE events (
        seq INTEGER PRIMARY KEY,
        event_id TEXT NOT NULL UNIQUE,
        repository TEXT NOT NULL,
        status INTEGER NOT NULL,
        reason TEXT,
        rejected_at TEXT,
        payload TEXT NOT NULL
    )
    """,
    f"CREATE INDEX events_unsynced ON events (seq) WHERE status != {_OK}",
    # One row per document: the winner of its merge, and its data (NULL once
    # deleted) so that reads and queries never decode events.
    """
    CREATE TABLE documents (
        repository TEXT NOT NULL,
        id TEXT NOT NULL,
        event_id TEXT NOT NULL REFERENCES events (event_id),
        data TEXT,
        PRIMARY KEY (repository, id)
    ) WITHOUT ROWID
    """,
    "CREATE TABLE cursors (repository TEXT PRIMARY KEY, cursor INTEGER NOT NULL) WITHOUT ROWID",
    "CREATE TABLE config (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
    f"PRAGMA application_id = {APPLICATION_ID}",
    f"PRAGMA user_version = {SCHEMA_VERSION}",
)

_UNSYNCED = f"status != {_OK} AND rejected_at IS NULL"

_MARK_SYNCED = f"""
    UPDATE events SET status = {_OK}, reason = NULL, rejected_at = NULL
    WHERE event_id = ? AND status != {_OK}
"""

_SET_WINNER = """
    INSERT INTO documents (repository, id, event_id, data) VALUES (?, ?, ?, ?)
    ON CONFLICT (repository, id) DO UPDATE SET event_id = excluded.event_id, data = excluded.data
"""

_ADVANCE_CURSOR = """
    INSERT INTO cursors (repository, cursor) VALUES (?, ?)
    ON CONFLICT (repository) DO UPDATE SET cursor = max(cursor, excluded.cursor)
"""

_SET_CONFIG = """
    INSERT INTO config (key, value) VALUES (?, ?)
    ON CONFLICT (key) DO UPDATE SET value = excluded.value
"""


class _SqliteTables:
    """The rows of the merge rules (see :mod:`lfws_adapters.local_storage`) in SQL."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection

    def known(self, event_id: str) -> bool:
        row = self._connection.execute("SELECT 1 FROM events WHERE event_id = ?", (event_id,))
        return row.fetchone() is not None

    def add_event(self, repository: str, stored: _StoredEvent, status: SyncStatus) -> None:
        self._connection.execute(
            "INSERT INTO events (event_id, repository, status, payload) VALUES (?, ?, ?, ?)",
            (stored.event.event_id, repository, status.value, stored.payload),
        )

    def mark_synced(self, event_ids: Sequence[str]) -> None:
        self._connection.executemany(_MARK_SYNCED, ((event_id,) for event_id in event_ids))

    def winner(self, repository: str, data_id: str) -> SyncEvent | None:
        row = self._connection.execute(
            "SELECT events.payload FROM documents JOIN events USING (event_id)"
            " WHERE documents.repository = ? AND documents.id = ?",
            (repository, data_id),
        ).fetchone()
        return None if row is None else _load_event(row[0])

    def set_winner(self, repository: str, stored: _StoredEvent) -> None:
        document = document_state(stored.event)
        data = None if document is None else _dumps(document)
        self._connection.execute(
            _SET_WINNER, (repository, stored.event.data_id, stored.event.event_id, data)
        )


def _sql_text(value: str) -> bool:
    """Return whether SQLite compares ``value`` exactly (no NUL, no lone surrogate)."""
    if "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _prefilter(where: Mapping[str, JsonValue]) -> tuple[str, list[str]]:
    """Return SQL conditions that every document matching ``where`` meets.

    They let SQLite skip most non-matching documents; :func:`matches` has
    the last word, so a condition may only ever be looser than the rule:
    numbers, arrays and objects are left to it, and so is text SQLite
    cannot compare exactly.
    """
    conditions: list[str] = []
    parameters: list[str] = []
    for key, value in where.items():
        if not _sql_text(key):
            continue
        member = "key = ?"
        parameters.append(key)
        if value is None:
            member += " AND type = 'null'"
        elif isinstance(value, bool):
            member += f" AND type = '{'true' if value else 'false'}'"
        elif isinstance(value, str) and _sql_text(value):
            member += " AND type = 'text' AND value = ?"
            parameters.append(value)
        conditions.append(f" AND EXISTS (SELECT 1 FROM json_each(documents.data) WHERE {member})")
    return "".join(conditions), parameters


class SqliteLocalFirstStorage:
    """A :class:`~lfws_adapters.local_storage.LocalFirstStorage` in one SQLite file.

    :meth:`open` creates the file when missing (its directory must exist),
    puts it in WAL mode, and creates the schema, versioned with ``PRAGMA
    user_version`` and marked with ``PRAGMA application_id``: a file written
    by a newer lfws, or a database that is not an lfws local store (the
    server's event log included), raises
    :class:`~lfws_adapters.local_storage.IncompatibleSchema`.

    Durability: every write is one ``BEGIN IMMEDIATE ... COMMIT`` transaction
    and returns only after ``COMMIT``. With WAL and ``synchronous="NORMAL"``
    (the default) a recorded event survives the process being killed (even
    ``kill -9``), but the last transactions may be lost if the machine loses
    power or the OS crashes; ``synchronous="FULL"`` survives those too, at
    the cost of one fsync per write.

    The async methods run SQLite directly on the event loop thread, so they
    work under asyncio and trio alike: the transactions are small. A SQLite
    failure raises :class:`~lfws_adapters.local_storage.StoreError` and
    stores nothing. Strings holding a lone surrogate cannot be stored in
    SQLite's UTF-8 columns (ids, repository names, config keys): they raise
    :class:`~lfws_core.errors.LocalProtocolError`. ``clock`` dates
    rejections (UTC now by default).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        if synchronous not in ("NORMAL", "FULL"):
            raise LocalProtocolError(f"synchronous must be 'NORMAL' or 'FULL', not {synchronous!r}")
        self._path = os.fspath(path)
        self._synchronous = synchronous
        self._clock = clock
        self._state = _Lifecycle.NEW
        self._connection: sqlite3.Connection | None = None

    @property
    def path(self) -> str:
        """The database file."""
        return self._path

    # --- opening and closing ------------------------------------------------

    async def open(self) -> None:
        """Open the file, creating it and its schema if needed; idempotent while open."""
        if not self._state.check_can_open(self._path):
            return
        try:
            connection = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open {self._path}: {exc}") from exc
        try:
            with self._errors():
                self._configure(connection)
                with self._transaction(connection):
                    self._migrate(connection)
        except BaseException:
            connection.close()
            raise
        self._connection = connection
        self._state = _Lifecycle.OPEN

    def _configure(self, connection: sqlite3.Connection) -> None:
        use_wal(connection, self._path, self._synchronous)

    def _migrate(self, connection: sqlite3.Connection) -> None:
        ensure_schema(
            connection,
            path=self._path,
            kind="local store",
            version=SCHEMA_VERSION,
            statements=_SCHEMA,
            application_id=APPLICATION_ID,
        )

    async def aclose(self) -> None:
        """Close the database for good; idempotent."""
        self._state = _Lifecycle.CLOSED
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    # --- plumbing -------------------------------------------------------------

    def _open_connection(self) -> sqlite3.Connection:
        self._state.check_open(self._path)
        assert self._connection is not None  # open() sets both
        return self._connection

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise StoreError(f"{self._path}: {exc}") from exc
        except UnicodeEncodeError as exc:
            raise LocalProtocolError(
                f"{self._path}: SQLite cannot store a lone surrogate: {exc.object[:40]!r}"
            ) from None

    @staticmethod
    def _transaction(connection: sqlite3.Connection) -> AbstractContextManager[sqlite3.Connection]:
        return transaction(connection)

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        connection = self._open_connection()
        with self._errors(), self._transaction(connection):
            yield connection

    def _read(self, sql: str, parameters: Sequence[Any] = ()) -> list[Any]:
        connection = self._open_connection()
        with self._errors():
            return connection.execute(sql, parameters).fetchall()

    # --- the event log and the documents --------------------------------------

    async def record_local(self, repository: str, event: SyncEvent) -> Change | None:
        """Log a local event and merge it; see the ``LocalFirstStorage`` protocol."""
        self._open_connection()
        # Encoded before BEGIN: the write lock is held for SQL only.
        stored = _StoredEvent.of(event)
        with self._write() as connection:
            return _record(_SqliteTables(connection), repository, stored)

    async def apply_remote(self, repository: str, events: Sequence[SyncEvent]) -> list[Change]:
        """Log and merge new remote events; see the ``LocalFirstStorage`` protocol."""
        self._open_connection()
        batch = [_StoredEvent.of(event) for event in events]
        if not batch:
            return []
        with self._write() as connection:
            return _apply(_SqliteTables(connection), repository, batch)

    def _update_each(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        self._open_connection()
        if not rows:
            return 0
        with self._write() as connection:
            return connection.executemany(sql, rows).rowcount

    async def mark_synced(self, event_ids: Iterable[str]) -> None:
        """Mark local events ``OK``; see the ``LocalFirstStorage`` protocol."""
        self._update_each(_MARK_SYNCED, [(event_id,) for event_id in _unique_ids(event_ids)])

    async def mark_failed(self, event_ids: Iterable[str], reason: str) -> None:
        """Mark unsynced local events ``FAILED``; see the ``LocalFirstStorage`` protocol."""
        self._update_each(
            f"UPDATE events SET status = {_FAILED}, reason = ? WHERE event_id = ? AND {_UNSYNCED}",
            [(reason, event_id) for event_id in _unique_ids(event_ids)],
        )

    async def reject(self, event_ids: Iterable[str], reason: str) -> None:
        """Set unsynced local events aside; see the ``LocalFirstStorage`` protocol."""
        rejected_at = format_timestamp(_timestamp(self._clock))
        self._update_each(
            f"UPDATE events SET status = {_FAILED}, reason = ?, rejected_at = ?"
            f" WHERE event_id = ? AND {_UNSYNCED}",
            [(reason, rejected_at, event_id) for event_id in _unique_ids(event_ids)],
        )

    async def rejected(self) -> list[RejectedEvent]:
        """Return the dead letters, oldest recorded first."""
        rows = self._read(
            "SELECT repository, payload, reason, rejected_at FROM events"
            " WHERE rejected_at IS NOT NULL ORDER BY seq"
        )
        return [
            RejectedEvent(
                repository=repository,
                event=_load_event(payload),
                reason=reason,
                rejected_at=parse_timestamp(rejected_at),
            )
            for repository, payload, reason, rejected_at in rows
        ]

    async def retry_rejected(self, event_ids: Iterable[str] | None = None) -> int:
        """Put dead letters back in the outbox; see the ``LocalFirstStorage`` protocol."""
        retry = f"UPDATE events SET status = {_PENDING}, reason = NULL, rejected_at = NULL"
        if event_ids is None:
            return self._update_each(f"{retry} WHERE rejected_at IS NOT NULL", [()])
        return self._update_each(
            f"{retry} WHERE event_id = ? AND rejected_at IS NOT NULL",
            [(event_id,) for event_id in _unique_ids(event_ids)],
        )

    async def outbox(self, limit: int | None = None) -> list[tuple[str, SyncEvent]]:
        """Return the unsynced local events, oldest first; see ``LocalFirstStorage``."""
        _check_outbox_limit(limit)
        rows = self._read(
            f"SELECT repository, payload FROM events WHERE {_UNSYNCED} ORDER BY seq LIMIT ?",
            # -1 is SQLite's "no limit"; a larger limit than rows is no limit either.
            (-1 if limit is None else min(limit, 2**63 - 1),),
        )
        return [(repository, _load_event(payload)) for repository, payload in rows]

    async def status_of(self, event_id: str) -> SyncStatus | None:
        """Return the status of a logged event, or ``None``."""
        rows = self._read("SELECT status FROM events WHERE event_id = ?", (event_id,))
        return SyncStatus(rows[0][0]) if rows else None

    async def get(self, repository: str, id: str) -> dict[str, JsonValue] | None:
        """Return a document, or ``None`` if absent or deleted."""
        rows = self._read(
            "SELECT data FROM documents WHERE repository = ? AND id = ? AND data IS NOT NULL",
            (repository, id),
        )
        return json.loads(rows[0][0]) if rows else None

    async def all(self, repository: str) -> list[dict[str, JsonValue]]:
        """Return the live documents of ``repository``, ordered by id."""
        return await self.query(repository, {})

    async def query(
        self, repository: str, where: Mapping[str, JsonValue]
    ) -> list[dict[str, JsonValue]]:
        """Return the live documents matching ``where`` (see ``local_storage.matches``)."""
        conditions, parameters = _prefilter(where)
        rows = self._read(
            "SELECT data FROM documents WHERE repository = ? AND data IS NOT NULL"
            f"{conditions} ORDER BY id",
            (repository, *parameters),
        )
        documents = (json.loads(data) for (data,) in rows)
        return [document for document in documents if matches(document, where)]

    # --- cursors and configuration --------------------------------------------

    async def get_cursor(self, repository: str) -> int | None:
        """Return the cursor of ``repository``, if any."""
        rows = self._read("SELECT cursor FROM cursors WHERE repository = ?", (repository,))
        return rows[0][0] if rows else None

    async def set_cursor(self, repository: str, cursor: int) -> None:
        """Advance the cursor of ``repository``; see the ``LocalFirstStorage`` protocol."""
        self._open_connection()
        _check_cursor(cursor)
        with self._write() as connection:
            connection.execute(_ADVANCE_CURSOR, (repository, cursor))

    async def cursors(self) -> dict[str, int]:
        """Return every cursor, by repository."""
        return dict(self._read("SELECT repository, cursor FROM cursors ORDER BY repository"))

    async def get_config(self, key: str) -> JsonValue | None:
        """Return the value stored under ``key``, or ``None``."""
        rows = self._read("SELECT value FROM config WHERE key = ?", (key,))
        return json.loads(rows[0][0]) if rows else None

    async def set_config(self, key: str, value: JsonValue) -> None:
        """Store ``value`` under ``key``; ``None`` removes it."""
        self._open_connection()
        text = None if value is None else _dumps(value)
        with self._write() as connection:
            if text is None:
                connection.execute("DELETE FROM config WHERE key = ?", (key,))
            else:
                connection.execute(_SET_CONFIG, (key, text))
