"""The shared event log: PostgreSQL, for several server nodes behind a load balancer.

:class:`PostgresEventLog` keeps the promises of
:class:`~lfws_adapters.event_log.EventLog` when any number of processes, on
any number of machines, store into the same repositories at once.

Sequences
    A client that has fetched ``afterSequence = N`` never asks for anything
    at or below ``N`` again, so an event must never become visible with a
    sequence smaller than one already visible. A PostgreSQL ``SEQUENCE``
    breaks that: writer A draws 5, writer B draws 6 and commits first, a
    client reads 6 and moves its cursor past 5, then A commits 5 and the
    client never sees it. Here every repository has a counter row in
    ``lfws_repositories``; a store locks it with ``SELECT ... FOR UPDATE``,
    numbers its new events from it, inserts them, advances it and commits.
    Writers of one repository therefore run one after another (writers of
    different repositories do not wait for each other), and a sequence is
    taken only after the previous holder of the lock committed or rolled
    back. So, per repository, **sequence order is commit order**, sequences
    start at 1 and have **no gaps** (a rolled-back store leaves the counter
    where it was), and once sequence ``N`` is visible every sequence below
    it is visible too: reading by cursor can never skip an event. Gap-free
    sequences also let a client tell a missing live event from one that
    does not exist.

Dedupe
    Under the same lock the store looks up which incoming ids the repository
    already holds, so a replay is reported as a duplicate whichever node
    stored the original. The ``UNIQUE (repository, event_id)`` constraint is
    the backstop: were two writers ever to bypass the lock, the second
    insert would fail (and store nothing) rather than store an event twice.
    :meth:`PostgresEventLog.store` returns only after ``COMMIT``, so an
    ``ack`` never names an event a crash can lose (given PostgreSQL's
    ``fsync`` and ``synchronous_commit``, which are the server's to set).

Fan-out
    The same transaction runs ``pg_notify`` with a small pointer, the
    repository and its new highest sequence (see
    :mod:`lfws_adapters.postgres_change_feed`). PostgreSQL delivers it only
    if, and once, the transaction commits.

Runtimes
    psycopg's async API runs on asyncio only, so the blocking API runs in
    worker threads (:func:`anyio.to_thread.run_sync`) over a connection pool:
    this works under asyncio and trio alike. A store that has started is not
    abandoned when the caller is cancelled: it commits or rolls back in its
    thread, and a client that did not hear the ``ack`` sends the events
    again, which dedupe absorbs.

Schema
    Three tables whose names start with ``lfws_``, created on first open in
    the connection's ``search_path``; ``lfws_schema`` holds the version.
    Opening a database written by a newer lfws raises
    :class:`~lfws_adapters.event_log.IncompatibleSchema`; so does one that
    has an ``lfws_events`` table without the version table.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any, TypeVar

import anyio.to_thread

from lfws_core.errors import LocalProtocolError
from lfws_core.events import SyncEvent, format_timestamp

from ._postgres import (
    DEFAULT_CHANNEL,
    SCAN_REPOSITORIES,
    describe,
    encode_pointer,
    postgres_errors,
    psycopg,
)
from ._stored_events import decode_payload, encode_payload, fetch_bounds
from .event_log import IncompatibleSchema, StoreClosed, StoreError, StoreResult, check_fetch_limit
from .postgres_change_feed import ChangeFeed

try:
    from psycopg_pool import ConnectionPool
except ImportError as exc:  # pragma: no cover - the optional "postgres" extra
    raise ImportError(
        "the PostgreSQL event log needs psycopg-pool: pip install 'lfws[postgres]'"
    ) from exc

__all__ = ["SCHEMA_VERSION", "PostgresEventLog"]

SCHEMA_VERSION = 1
"""The version in ``lfws_schema`` of the databases this lfws writes."""

_logger = logging.getLogger("lfws.store.postgres")

_T = TypeVar("_T")
_Connection = psycopg.Connection[tuple[Any, ...]]

# Two nodes starting at once must not both create the schema: the first to
# take this transaction-level advisory lock does, the other then sees it.
_MIGRATION_LOCK = 0x6C667773  # "lfws"

_SCHEMA = (
    "CREATE TABLE lfws_schema (version integer NOT NULL)",
    f"INSERT INTO lfws_schema (version) VALUES ({SCHEMA_VERSION})",
    # One counter row per repository: the lock every writer of the repository
    # takes, the next sequence and, since sequences have no gaps, the count.
    """
    CREATE TABLE lfws_repositories (
        repository text PRIMARY KEY,
        last_sequence bigint NOT NULL
    )
    """,
    # The primary key is the index that serves fetch by (repository, sequence);
    # the unique index serves the duplicate lookup.
    """
    CREATE TABLE lfws_events (
        repository text NOT NULL,
        sequence bigint NOT NULL,
        event_id text NOT NULL,
        created_at timestamptz NOT NULL,
        stored_at timestamptz NOT NULL DEFAULT now(),
        payload text NOT NULL,
        PRIMARY KEY (repository, sequence),
        UNIQUE (repository, event_id)
    )
    """,
)

_LOCK_COUNTER = "SELECT last_sequence FROM lfws_repositories WHERE repository = %s FOR UPDATE"
_CREATE_COUNTER = (
    "INSERT INTO lfws_repositories (repository, last_sequence) VALUES (%s, 0)"
    " ON CONFLICT (repository) DO NOTHING"
)
_FIND_EXISTING = (
    "SELECT event_id FROM lfws_events WHERE repository = %s AND event_id = ANY(%s::text[])"
)
_INSERT = """
    INSERT INTO lfws_events (repository, sequence, event_id, created_at, payload)
    SELECT %s, sequence, event_id, created_at::timestamptz, payload
    FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[])
        AS new (sequence, event_id, created_at, payload)
"""
_ADVANCE = "UPDATE lfws_repositories SET last_sequence = %s WHERE repository = %s"
_NOTIFY = "SELECT pg_notify(%s, %s)"
_FETCH = (
    "SELECT sequence, payload FROM lfws_events"
    " WHERE repository = %s AND sequence > %s ORDER BY sequence LIMIT %s"
)


class _BrokenConnection(psycopg.OperationalError):
    """The connection died under a call (the pool discards it on return)."""


class PostgresEventLog:
    """An :class:`~lfws_adapters.event_log.EventLog` in a PostgreSQL database.

    ``dsn`` is a libpq connection string or URL
    (``postgresql://user:password@host:5432/dbname``). Opening connects once,
    checks the server encoding (UTF8 is required) and creates or checks the
    schema, so a wrong address or an incompatible database fails here with
    :class:`~lfws_adapters.event_log.StoreError`; the constructor blocks
    meanwhile, :meth:`open` does the same from async code.

    ``pool_size`` bounds the connections this log opens (one per concurrent
    call); a call waits up to ``timeout`` seconds for a free connection or a
    reachable server before failing with ``StoreError``. ``channel`` is the
    ``NOTIFY`` channel; every node on one database must use the same one
    (and two event logs in different schemas of one database, different
    ones). A call that finds its connection dead (the server restarted or
    failed over) discards every dead connection in the pool and is retried
    once; any other PostgreSQL failure surfaces as ``StoreError`` and
    stores nothing.
    """

    def __init__(
        self,
        dsn: str,
        *,
        pool_size: int = 10,
        timeout: float = 10.0,
        channel: str = DEFAULT_CHANNEL,
    ) -> None:
        if pool_size < 1:
            raise LocalProtocolError(f"pool_size must be at least 1, not {pool_size}")
        if not channel:
            raise LocalProtocolError("the NOTIFY channel must not be empty")
        self._dsn = dsn
        self._name = describe(dsn)
        self._channel = channel
        with postgres_errors(f"cannot open {self._name}"):
            with psycopg.connect(dsn, autocommit=True, connect_timeout=max(1, round(timeout))) as c:
                self._check_encoding(c)
                self._migrate(c)
            pool: ConnectionPool[_Connection] = ConnectionPool(
                dsn,
                min_size=1,
                max_size=pool_size,
                open=False,
                timeout=timeout,
                kwargs={"autocommit": True, "application_name": "lfws"},
                name="lfws",
            )
            pool.open()
        self._pool: ConnectionPool[_Connection] | None = pool
        # Per repository: one event per store call in progress, set when it returns.
        self._storing: dict[str, set[anyio.Event]] = {}

    @classmethod
    async def open(
        cls,
        dsn: str,
        *,
        pool_size: int = 10,
        timeout: float = 10.0,
        channel: str = DEFAULT_CHANNEL,
    ) -> PostgresEventLog:
        """Open the log without blocking the event loop; see the class."""
        opener = partial(cls, dsn, pool_size=pool_size, timeout=timeout, channel=channel)
        return await anyio.to_thread.run_sync(opener)

    @property
    def channel(self) -> str:
        """The ``NOTIFY`` channel every store announces its new events on."""
        return self._channel

    @property
    def dsn(self) -> str:
        """The connection string (it may hold a password: do not log it)."""
        return self._dsn

    def change_feed(
        self, *, cursors: Mapping[str, int] | None = None, poll_interval: float = 30.0
    ) -> ChangeFeed:
        """Return a :class:`~lfws_adapters.postgres_change_feed.ChangeFeed` for this log.

        It listens on this log's database and channel; see the feed for the options.
        """
        return ChangeFeed(
            self._dsn, channel=self._channel, cursors=cursors, poll_interval=poll_interval
        )

    # --- opening ----------------------------------------------------------

    def _check_encoding(self, connection: _Connection) -> None:
        encoding = connection.info.parameter_status("server_encoding")
        if encoding != "UTF8":
            raise StoreError(
                f"{self._name} uses the encoding {encoding}; lfws needs a UTF8 database"
            )

    def _migrate(self, connection: _Connection) -> None:
        with connection.transaction():
            connection.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            # The tables the unqualified names resolve to, through the search_path.
            found = connection.execute(
                "SELECT to_regclass('lfws_schema') IS NOT NULL,"
                " to_regclass('lfws_events') IS NOT NULL"
            ).fetchone()
            has_version, has_events = found if found is not None else (False, False)
            if has_version:
                row = connection.execute("SELECT max(version) FROM lfws_schema").fetchone()
                version = row[0] if row is not None else None
                if version is not None and version > SCHEMA_VERSION:
                    raise IncompatibleSchema(
                        f"{self._name} has event log schema version {version}; this lfws "
                        f"understands versions up to {SCHEMA_VERSION}: upgrade lfws"
                    )
                if version != SCHEMA_VERSION:
                    raise IncompatibleSchema(f"{self._name} has an unreadable lfws_schema table")
                return
            if has_events:
                raise IncompatibleSchema(
                    f"{self._name} has an lfws_events table that is not an lfws event log"
                )
            for statement in _SCHEMA:
                connection.execute(statement)
            _logger.info("%s: created event log schema version %d", self._name, SCHEMA_VERSION)

    # --- plumbing ---------------------------------------------------------

    def _open_pool(self) -> ConnectionPool[_Connection]:
        if self._pool is None:
            raise StoreClosed(f"the event log on {self._name} is closed")
        return self._pool

    async def _run(self, work: Callable[[_Connection], _T]) -> _T:
        pool = self._open_pool()

        def in_thread() -> _T:
            with postgres_errors(self._name):
                try:
                    return self._attempt(pool, work)
                except _BrokenConnection as exc:
                    _logger.warning("%s: lost a connection (%s); retrying", self._name, exc)
                # The server dropped its connections (a restart, a failover):
                # discard every dead one left in the pool and try once more.
                # Even a store that broke at COMMIT is safe to repeat: what
                # did commit comes back as duplicates.
                pool.check()
                return self._attempt(pool, work)

        return await anyio.to_thread.run_sync(in_thread)

    @staticmethod
    def _attempt(pool: ConnectionPool[_Connection], work: Callable[[_Connection], _T]) -> _T:
        with pool.connection() as connection:
            try:
                return work(connection)
            except psycopg.OperationalError as exc:
                if connection.broken:
                    raise _BrokenConnection(str(exc)) from exc
                raise

    # --- the EventLog -----------------------------------------------------

    async def store(self, repository: str, events: Sequence[SyncEvent]) -> StoreResult:
        """Append the new ``events`` to ``repository`` in one transaction.

        Returns after ``COMMIT``; see :meth:`lfws_adapters.event_log.EventLog.store`.
        """
        self._open_pool()
        if not events:
            return StoreResult(stored=(), duplicates=())
        # Encoded before the transaction: the repository lock is held for SQL only.
        encoded = [(format_timestamp(event.created_at), encode_payload(event)) for event in events]
        returned = anyio.Event()
        storing = self._storing.setdefault(repository, set())
        storing.add(returned)
        try:
            return await self._run(partial(self._store, repository, events, encoded))
        finally:
            storing.discard(returned)
            if not storing:
                del self._storing[repository]
            returned.set()

    async def stores_returned(self, repository: str) -> None:
        """Return once every :meth:`store` into ``repository`` started before this call returned.

        The server's relay waits for this before fetching what the change
        feed announced: an event this node stored then reaches the relay
        from the store's caller, which knows the connection that stored it
        (and skips it in the broadcast), instead of from a fetch.
        """
        for returned in list(self._storing.get(repository, ())):
            await returned.wait()

    def _store(
        self,
        repository: str,
        events: Sequence[SyncEvent],
        encoded: list[tuple[str, str]],
        connection: _Connection,
    ) -> StoreResult:
        ids = list({e.event_id for e in events})
        # Pipelined: BEGIN, the lock and the lookup go in one round trip, the
        # writes and COMMIT in another, so the lock is held for two round trips.
        with connection.pipeline(), connection.transaction():
            locked = connection.execute(_LOCK_COUNTER, (repository,))
            # A statement of its own, after the lock: its snapshot then holds
            # every event the previous writers of the repository committed.
            found = connection.execute(_FIND_EXISTING, (repository, ids))
            row = locked.fetchone()
            if row is None:
                # The first store of the repository: nothing was locked, so the
                # lookup proves nothing. A concurrent first store waits on this
                # insert, then finds the committed row and locks it.
                connection.execute(_CREATE_COUNTER, (repository,))
                locked = connection.execute(_LOCK_COUNTER, (repository,))
                found = connection.execute(_FIND_EXISTING, (repository, ids))
                row = locked.fetchone()
            assert row is not None  # the row exists now and rows are never deleted
            last = int(row[0])
            existing = {event_id for (event_id,) in found.fetchall()}
            stored: list[SyncEvent] = []
            duplicates: list[str] = []
            rows: list[tuple[int, str, str, str]] = []
            for event, (created_at, payload) in zip(events, encoded, strict=True):
                if event.event_id in existing:
                    duplicates.append(event.event_id)
                    continue
                existing.add(event.event_id)  # a repeat later in this call
                last += 1
                stored.append(event.with_sequence(last))
                rows.append((last, event.event_id, created_at, payload))
            if rows:
                sequences, new_ids, created, payloads = map(list, zip(*rows, strict=True))
                connection.execute(_INSERT, (repository, sequences, new_ids, created, payloads))
                connection.execute(_ADVANCE, (last, repository))
                connection.execute(_NOTIFY, (self._channel, encode_pointer(repository, last)))
        return StoreResult(stored=tuple(stored), duplicates=tuple(duplicates))

    async def fetch(self, repository: str, after_sequence: int, limit: int) -> list[SyncEvent]:
        """Return at most ``limit`` events with a sequence above ``after_sequence``, ascending."""
        self._open_pool()
        check_fetch_limit(limit)
        bounds = fetch_bounds(after_sequence, limit)
        rows = await self._run(
            lambda connection: connection.execute(_FETCH, (repository, *bounds)).fetchall()
        )
        return [decode_payload(sequence, payload) for sequence, payload in rows]

    async def repositories(self) -> list[str]:
        """Return the repositories holding at least one event, sorted."""
        return list(await self.stats())

    async def stats(self) -> Mapping[str, int]:
        """Return the number of events per repository, in repository order."""
        rows = await self._run(lambda connection: connection.execute(SCAN_REPOSITORIES).fetchall())
        # Sorted here, by code point: the database's collation may differ.
        return {repository: count for repository, count in sorted(rows)}

    async def aclose(self) -> None:
        """Close the connection pool; idempotent."""
        pool, self._pool = self._pool, None
        if pool is not None:
            await anyio.to_thread.run_sync(pool.close)
