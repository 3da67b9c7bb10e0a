"""What other nodes stored: a feed of pointers from PostgreSQL's LISTEN/NOTIFY.

Every :meth:`~lfws_adapters.postgres_event_log.PostgresEventLog.store` that
stores something runs ``pg_notify`` in its transaction with a pointer, the
repository and its new highest sequence. A :class:`ChangeFeed` listens on a
dedicated connection and yields one :class:`Change` per repository that
moved: the range of sequences ``(after_sequence, up_to_sequence]`` that is
new since the previous change of that repository. The events themselves are
read by cursor (:meth:`~lfws_adapters.event_log.EventLog.fetch`), so a
pointer stays tiny, and pointers that pile up while the consumer is busy
coalesce into one change per repository.

NOTIFY is not a durable queue: nothing is delivered to a connection that is
down. So the feed never relies on it alone:

* on entering, it listens first and then reads every repository's highest
  sequence, so nothing committed in between is missed;
* when its connection drops (a server restart, a failover,
  ``pg_terminate_backend``), it reconnects with backoff, listens again and
  catches up by cursor: every repository that moved while it was away is
  yielded with the whole range it missed;
* a slow periodic scan (``poll_interval``) is the safety net for anything
  else (a pointer too long to send, a notification lost in an undetected
  half-open connection).

The scan reads one counter row per repository. Waiting for notifications
uses the runtime's own socket readiness (:func:`anyio.wait_readable`) and the
blocking statements run in worker threads, so the feed works under asyncio
and trio alike.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import anyio
import anyio.to_thread

from lfws_core.errors import LocalProtocolError

from ._postgres import (
    DEFAULT_CHANNEL,
    SCAN_REPOSITORIES,
    decode_pointer,
    describe,
    postgres_errors,
    psycopg,
)

__all__ = ["Change", "ChangeFeed"]

_logger = logging.getLogger("lfws.store.postgres.feed")

_Connection = psycopg.Connection[tuple[Any, ...]]
_Rows = list[tuple[Any, ...]]


@dataclass(frozen=True, kw_only=True, slots=True)
class Change:
    """``repository`` holds new events, sequences ``after_sequence + 1`` to ``up_to_sequence``.

    Every event in the range is committed and visible (sequence order is
    commit order), so fetching it by cursor cannot miss one.
    """

    repository: str
    after_sequence: int
    up_to_sequence: int


class ChangeFeed:
    """An async iterator of :class:`Change`, for one consumer.

    Use it as ``async with ChangeFeed(dsn) as feed: async for change in
    feed: ...``. Entering connects, listens and reads where every repository
    stands, raising :class:`~lfws_adapters.event_log.StoreError` when that
    fails (the event log must have created the schema). Later connection
    failures are logged and retried, never raised: the feed is meant to run
    for the life of a server node.

    ``cursors`` is where the consumer stands: without it (the default) the
    feed yields what commits after entering; with it, every repository is
    caught up from its cursor (a repository not named, from 0). ``channel``
    must be the event log's. ``poll_interval`` is the period of the safety
    scan, ``reconnect_delay`` the first pause before reconnecting (doubled on
    each failure up to ``max_reconnect_delay``).
    """

    def __init__(
        self,
        dsn: str,
        *,
        channel: str = DEFAULT_CHANNEL,
        cursors: Mapping[str, int] | None = None,
        poll_interval: float = 30.0,
        reconnect_delay: float = 0.5,
        max_reconnect_delay: float = 10.0,
    ) -> None:
        if not channel:
            raise LocalProtocolError("the NOTIFY channel must not be empty")
        if poll_interval <= 0 or reconnect_delay <= 0 or max_reconnect_delay < reconnect_delay:
            raise LocalProtocolError(
                "poll_interval and reconnect_delay must be positive,"
                " max_reconnect_delay at least reconnect_delay"
            )
        self._dsn = dsn
        self._name = describe(dsn)
        self._channel = channel
        self._poll_interval = poll_interval
        self._first_delay = reconnect_delay
        self._max_delay = max_reconnect_delay
        self._delay = reconnect_delay
        # The highest sequence yielded (or pending) per repository.
        self._known: dict[str, int] = dict(cursors) if cursors is not None else {}
        self._baseline = cursors is None
        # Not yet yielded: repository -> (after_sequence, up_to_sequence), in arrival order.
        self._pending: dict[str, tuple[int, int]] = {}
        self._connection: _Connection | None = None
        self._next_scan = 0.0
        self._entered = False
        self._closed = False

    @property
    def backend_pid(self) -> int | None:
        """The PostgreSQL process serving the LISTEN connection; ``None`` while disconnected."""
        return None if self._connection is None else self._connection.info.backend_pid

    @property
    def cursors(self) -> Mapping[str, int]:
        """The highest sequence yielded (or about to be) per repository."""
        return dict(self._known)

    # --- lifetime ---------------------------------------------------------

    async def __aenter__(self) -> ChangeFeed:
        if self._entered:
            raise LocalProtocolError("a ChangeFeed is entered once")
        self._entered = True
        await self._connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection and end the iteration; idempotent."""
        self._closed = True
        self._drop_connection()

    # --- iteration --------------------------------------------------------

    def __aiter__(self) -> ChangeFeed:
        return self

    async def __anext__(self) -> Change:
        if not self._entered:
            raise LocalProtocolError("enter the ChangeFeed (async with) before iterating")
        while not self._pending or self._closed:
            if self._closed:
                raise StopAsyncIteration
            if self._connection is None:
                await self._reconnect()
            else:
                await self._listen(self._connection)
        repository = next(iter(self._pending))
        after, up_to = self._pending.pop(repository)
        return Change(repository=repository, after_sequence=after, up_to_sequence=up_to)

    # --- the connection ---------------------------------------------------

    def _open(self) -> tuple[_Connection, _Rows]:
        connection = psycopg.connect(
            self._dsn,
            autocommit=True,
            application_name="lfws-change-feed",
            # An idle LISTEN connection behind a dead peer would otherwise
            # wait for notifications that never come until the next scan.
            keepalives=1,
            keepalives_idle=30,
            keepalives_interval=10,
            keepalives_count=3,
        )
        try:
            # Listen first, then scan: whatever commits in between is in both.
            connection.execute(
                psycopg.sql.SQL("LISTEN {}").format(psycopg.sql.Identifier(self._channel))
            )
            rows = connection.execute(SCAN_REPOSITORIES).fetchall()
        except BaseException:
            connection.close()
            raise
        return connection, rows

    async def _connect(self) -> None:
        with postgres_errors(f"change feed on {self._name}"):
            connection, rows = await anyio.to_thread.run_sync(self._open)
        if self._closed:
            connection.close()
            return
        self._connection = connection
        self._take_scan(rows)

    async def _reconnect(self) -> None:
        await anyio.sleep(self._delay)
        if self._closed:
            return
        try:
            await self._connect()
        except Exception as exc:
            self._delay = min(self._delay * 2, self._max_delay)
            _logger.warning("%s; retrying in %.1f s", exc, self._delay)
            return
        self._delay = self._first_delay
        _logger.info("change feed on %s reconnected and caught up by cursor", self._name)

    def _drop_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        if not connection.closed:
            # Another task may be waiting for this socket; it must hear of it first.
            anyio.notify_closing(connection.fileno())
        connection.close()

    def _lost(self, exc: BaseException) -> None:
        if not self._closed:
            _logger.warning(
                "change feed on %s lost its connection (%s); reconnecting", self._name, exc
            )
        self._drop_connection()

    async def _listen(self, connection: _Connection) -> None:
        """Wait for notifications until the next scan is due; take them or scan."""
        try:
            notifies = list(connection.notifies(timeout=0))  # received during the last scan
            if not notifies:
                wait = self._next_scan - anyio.current_time()
                if wait <= 0:
                    rows = await anyio.to_thread.run_sync(
                        lambda: connection.execute(SCAN_REPOSITORIES).fetchall()
                    )
                    self._take_scan(rows)
                    return
                with anyio.move_on_after(wait):
                    await anyio.wait_readable(connection.fileno())
                notifies = list(connection.notifies(timeout=0))
        except (psycopg.Error, OSError, anyio.ClosedResourceError) as exc:
            self._lost(exc)
            return
        for notify in notifies:
            if notify.channel != self._channel:
                continue
            pointer = decode_pointer(notify.payload)
            if pointer is None:
                self._next_scan = 0.0  # which repository is unknown: scan them all
            else:
                self._note(*pointer)

    def _take_scan(self, rows: _Rows) -> None:
        self._next_scan = anyio.current_time() + self._poll_interval
        for repository, sequence in sorted(rows):
            if self._baseline:
                self._known[repository] = max(sequence, self._known.get(repository, 0))
            else:
                self._note(repository, sequence)
        self._baseline = False

    def _note(self, repository: str, sequence: int) -> None:
        known = self._known.get(repository, 0)
        if sequence <= known:
            return  # already yielded: this pointer and the scan crossed
        after, _ = self._pending.get(repository, (known, known))
        self._pending[repository] = (after, sequence)
        self._known[repository] = sequence
