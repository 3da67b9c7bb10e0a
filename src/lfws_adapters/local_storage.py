"""The client's storage seam: documents, the event log and its outbox, cursors, config.

A local-first client keeps everything here. Every backend keeps the same
promises, checked by one shared contract test suite:

* every event, local or remote, is logged once by event id (the id alone:
  UUIDv7 ids are unique across repositories) and merged into its document by the
  core's last-writer-wins rule (:func:`lfws_core.merge.wins`), so the same
  events give the same documents in whatever order and mix they arrive;
* a local event is logged :attr:`SyncStatus.PENDING` in the same transaction
  that changes its document: the log is the durable outbox, and once
  :meth:`LocalFirstStorage.record_local` returns the event is sent sooner or
  later, even across a crash;
* a remote event already known by id (the server's echo of a local event, a
  replay after a reconnect) changes nothing, except that the echo of a local
  event marks it :attr:`SyncStatus.OK`, as the Dart ``local_first`` does;
* every write is one transaction: a call that fails stores nothing.

A document is the ``data`` of the event that won its merge, or absent when a
delete won (deletes are tombstones: an older edit arriving late does not
bring the document back). The rules live once, in ``_record`` and ``_apply``
below; a backend only provides the rows they read and write.

:class:`InMemoryLocalFirstStorage` is the reference implementation, for tests
and demos; :class:`~lfws_adapters.sqlite_local_storage.SqliteLocalFirstStorage`
is the embedded default.
"""

from __future__ import annotations

import copy
import enum
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, Protocol, TypeAlias

from lfws_core.errors import InvalidMessage, LocalProtocolError
from lfws_core.events import (
    JsonValue,
    SyncEvent,
    event_from_json,
    event_to_json,
    format_timestamp,
    parse_timestamp,
)
from lfws_core.merge import document_state, wins

from .event_log import IncompatibleSchema, StoreClosed, StoreError

__all__ = [
    "Change",
    "InMemoryLocalFirstStorage",
    "IncompatibleSchema",
    "LocalFirstStorage",
    "Origin",
    "RejectedEvent",
    "StoreClosed",
    "StoreError",
    "SyncStatus",
    "json_equal",
    "matches",
]

Origin: TypeAlias = Literal["local", "remote"]
"""Where a change came from: this replica, or the server."""

# SQLite integers are signed 64-bit; every backend holds cursors to that range.
_MAX_CURSOR = 2**63 - 1


class SyncStatus(enum.IntEnum):
    """Where a logged event stands with the server (the Dart ``SyncStatus`` values).

    Remote events are logged ``OK``. A local event is ``PENDING`` until the
    server acknowledges it; ``FAILED`` events are retried like pending ones,
    unless set aside as dead letters (see :meth:`LocalFirstStorage.reject`).
    """

    PENDING = 0
    OK = 1
    FAILED = 2


@dataclass(frozen=True, kw_only=True, slots=True)
class Change:
    """A change to one document, made by a local or a remote event.

    ``document`` is the document after the change (a copy the caller may
    keep), or ``None`` when the change deleted it.
    """

    repository: str
    id: str
    document: Mapping[str, JsonValue] | None
    origin: Origin
    event: SyncEvent


@dataclass(frozen=True, kw_only=True, slots=True)
class RejectedEvent:
    """A local event set aside for good (a dead letter), with why and when."""

    repository: str
    event: SyncEvent
    reason: str
    rejected_at: datetime


class LocalFirstStorage(Protocol):
    """What a local-first client needs from its local store.

    Call :meth:`open` first; every other call before it, or after
    :meth:`aclose`, raises :class:`StoreClosed`. Documents and configuration
    values come back as fresh copies. Misuse raises
    :class:`~lfws_core.errors.LocalProtocolError` and stores nothing; a
    backend failure raises :class:`StoreError` and stores nothing.
    """

    async def open(self) -> None:
        """Open the store (creating it if needed); idempotent while open."""
        ...

    async def aclose(self) -> None:
        """Release the store; idempotent. It cannot be opened again."""
        ...

    async def record_local(self, repository: str, event: SyncEvent) -> Change | None:
        """Log a local event as ``PENDING`` and merge it, in one transaction.

        Returns the change, or ``None`` when the event lost the merge to a
        newer one already stored (it is still logged and sent). Raises
        :class:`~lfws_core.errors.LocalProtocolError` if the event id is
        already known or the event cannot be stored as JSON.
        """
        ...

    async def apply_remote(self, repository: str, events: Sequence[SyncEvent]) -> list[Change]:
        """Log and merge the remote events not already known, in one transaction.

        A known event id is skipped; if it is a local event not yet ``OK``,
        the echo marks it ``OK``. Returns the changes made, in order.
        """
        ...

    async def mark_synced(self, event_ids: Iterable[str]) -> None:
        """Mark local events acknowledged: ``PENDING`` or ``FAILED`` (even rejected) -> ``OK``.

        Unknown ids are ignored.
        """
        ...

    async def mark_failed(self, event_ids: Iterable[str], reason: str) -> None:
        """Mark unsynced local events ``FAILED``; they stay in the outbox to be retried.

        ``OK``, rejected and unknown events are left as they are.
        """
        ...

    async def reject(self, event_ids: Iterable[str], reason: str) -> None:
        """Set unsynced local events aside for good: out of the outbox, into :meth:`rejected`.

        Their status reads ``FAILED``; the documents they changed stay as
        they are. ``OK``, already rejected and unknown events are left as they are.
        """
        ...

    async def rejected(self) -> list[RejectedEvent]:
        """Return the rejected events (dead letters), oldest recorded first."""
        ...

    async def retry_rejected(self, event_ids: Iterable[str] | None = None) -> int:
        """Put rejected events (all of them by default) back in the outbox as ``PENDING``.

        Returns how many were rejected and now are not.
        """
        ...

    async def outbox(self, limit: int | None = None) -> list[tuple[str, SyncEvent]]:
        """Return ``(repository, event)`` for the ``PENDING`` and ``FAILED`` events.

        Rejected events are left out. Oldest recorded first, at most
        ``limit`` of them (at least 1) when given.
        """
        ...

    async def get(self, repository: str, id: str) -> dict[str, JsonValue] | None:
        """Return a document, or ``None`` if it was never seen or is deleted."""
        ...

    async def all(self, repository: str) -> list[dict[str, JsonValue]]:
        """Return the live documents of ``repository``, ordered by id."""
        ...

    async def query(
        self, repository: str, where: Mapping[str, JsonValue]
    ) -> list[dict[str, JsonValue]]:
        """Return the live documents whose fields equal ``where``'s, ordered by id.

        Fields are top-level; values compare as JSON (see :func:`matches`).
        """
        ...

    async def get_cursor(self, repository: str) -> int | None:
        """Return the last server sequence applied for ``repository``, if any."""
        ...

    async def set_cursor(self, repository: str, cursor: int) -> None:
        """Advance the cursor of ``repository``; a smaller value is ignored.

        Raises :class:`~lfws_core.errors.LocalProtocolError` unless
        ``0 <= cursor < 2**63``.
        """
        ...

    async def cursors(self) -> dict[str, int]:
        """Return every cursor, by repository."""
        ...

    async def get_config(self, key: str) -> JsonValue | None:
        """Return the configuration value stored under ``key``, or ``None``."""
        ...

    async def set_config(self, key: str, value: JsonValue) -> None:
        """Store a JSON value under ``key``; ``None`` removes the key."""
        ...

    async def status_of(self, event_id: str) -> SyncStatus | None:
        """Return the status of a logged event, or ``None`` if it is unknown."""
        ...


# --- JSON equality: the query rule ----------------------------------------


def json_equal(left: JsonValue, right: JsonValue) -> bool:
    """Return whether two JSON values are equal as JSON values.

    Unlike Python's ``==``, booleans are not numbers (``true`` is not ``1``)
    anywhere in the values; numbers compare by value (``1`` equals ``1.0``).
    """
    if isinstance(left, bool) or isinstance(right, bool):
        return left is right
    if isinstance(left, int | float) and isinstance(right, int | float):
        return left == right
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(map(json_equal, left, right))
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(
            json_equal(value, right[key]) for key, value in left.items()
        )
    return type(left) is type(right) and left == right


def matches(document: Mapping[str, JsonValue], where: Mapping[str, JsonValue]) -> bool:
    """Return whether every field of ``where`` is in ``document``, :func:`json_equal` to it."""
    return all(key in document and json_equal(document[key], value) for key, value in where.items())


# --- helpers every backend shares -------------------------------------------


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _dumps(value: object) -> str:
    """Write ``value`` as the compact JSON text a store keeps.

    Non-ASCII is escaped, so the text holds even lone surrogates. Raises
    :class:`~lfws_core.errors.LocalProtocolError` for what is not JSON.
    """
    try:
        return json.dumps(value, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise LocalProtocolError(f"cannot store {type(value).__name__} as JSON: {exc}") from None


def _load_event(payload: str) -> SyncEvent:
    """Read an event back from its stored JSON text."""
    return event_from_json(json.loads(payload))


@dataclass(frozen=True, kw_only=True, slots=True)
class _StoredEvent:
    """An event in the form a store keeps: its Dart JSON text and the event read back from it.

    Stores keep the read-back copy, never the caller's object, whose ``data``
    the caller could still mutate.
    """

    payload: str
    event: SyncEvent

    @classmethod
    def of(cls, event: SyncEvent) -> _StoredEvent:
        """Encode ``event``; raise :class:`~lfws_core.errors.LocalProtocolError` if it cannot be.

        Reading the text back checks that the event is one the store can
        return (a non-empty id, data for an insert or update, ...).
        """
        payload = _dumps(event_to_json(event))
        try:
            return cls(payload=payload, event=_load_event(payload))
        except InvalidMessage as exc:
            raise LocalProtocolError(
                f"event {event.event_id!r} cannot be stored: {exc.reason}"
            ) from None


def _timestamp(clock: Callable[[], datetime]) -> datetime:
    """Read ``clock`` as the UTC instant, to the microsecond, that a store keeps."""
    return parse_timestamp(format_timestamp(clock()))


def _unique_ids(event_ids: Iterable[str]) -> list[str]:
    """Return ``event_ids`` without repeats, in order (a generator is read once)."""
    return list(dict.fromkeys(event_ids))


def _check_outbox_limit(limit: int | None) -> None:
    """Raise :class:`~lfws_core.errors.LocalProtocolError` unless ``limit`` is ``None`` or >= 1."""
    if limit is not None and limit < 1:
        raise LocalProtocolError(f"outbox limit must be at least 1, not {limit}")


def _check_cursor(cursor: int) -> None:
    """Raise :class:`~lfws_core.errors.LocalProtocolError` unless ``0 <= cursor < 2**63``."""
    if isinstance(cursor, bool) or not isinstance(cursor, int) or not 0 <= cursor <= _MAX_CURSOR:
        raise LocalProtocolError(f"a cursor must be an integer in [0, 2**63), not {cursor!r}")


class _Lifecycle(enum.Enum):
    """Where a store is in its life: opened once, closed for good."""

    NEW = "new"
    OPEN = "open"
    CLOSED = "closed"

    def check_open(self, name: str) -> None:
        """Raise :class:`StoreClosed` unless the store is open."""
        if self is _Lifecycle.NEW:
            raise StoreClosed(f"the local store {name} is not open: call open() first")
        if self is _Lifecycle.CLOSED:
            raise StoreClosed(f"the local store {name} is closed")

    def check_can_open(self, name: str) -> bool:
        """Return whether :meth:`open` has work to do; raise :class:`StoreClosed` once closed."""
        if self is _Lifecycle.CLOSED:
            raise StoreClosed(f"the local store {name} is closed and cannot be opened again")
        return self is _Lifecycle.NEW


# --- the rules, written once over the rows a backend provides ---------------


class _Tables(Protocol):
    """The rows the merge rules read and write, inside one transaction."""

    def known(self, event_id: str) -> bool:
        """Return whether ``event_id`` is logged."""
        ...

    def add_event(self, repository: str, stored: _StoredEvent, status: SyncStatus) -> None:
        """Log a new event with ``status``, after every event logged so far."""
        ...

    def mark_synced(self, event_ids: Sequence[str]) -> None:
        """Mark these logged events ``OK`` (no longer rejected either)."""
        ...

    def winner(self, repository: str, data_id: str) -> SyncEvent | None:
        """Return the event that won the merge of a document so far."""
        ...

    def set_winner(self, repository: str, stored: _StoredEvent) -> None:
        """Make ``stored`` the winner of its document."""
        ...


def _document_copy(event: SyncEvent) -> dict[str, JsonValue] | None:
    """Return a fresh copy of the document ``event`` leaves behind, or ``None`` for a delete."""
    state = document_state(event)
    return None if state is None else copy.deepcopy(dict(state))


def _merge(tables: _Tables, repository: str, stored: _StoredEvent, origin: Origin) -> Change | None:
    event = stored.event
    if not wins(event, tables.winner(repository, event.data_id)):
        return None
    tables.set_winner(repository, stored)
    return Change(
        repository=repository,
        id=event.data_id,
        document=_document_copy(event),
        origin=origin,
        event=event,
    )


def _record(tables: _Tables, repository: str, stored: _StoredEvent) -> Change | None:
    """Apply :meth:`LocalFirstStorage.record_local` to ``tables``."""
    if tables.known(stored.event.event_id):
        raise LocalProtocolError(f"event {stored.event.event_id!r} is already recorded")
    tables.add_event(repository, stored, SyncStatus.PENDING)
    return _merge(tables, repository, stored, "local")


def _apply(tables: _Tables, repository: str, batch: Sequence[_StoredEvent]) -> list[Change]:
    """Apply :meth:`LocalFirstStorage.apply_remote` to ``tables``."""
    changes: list[Change] = []
    for stored in batch:
        if tables.known(stored.event.event_id):
            # The server has it, so a local event is synced; remote ones already are OK.
            tables.mark_synced([stored.event.event_id])
            continue
        tables.add_event(repository, stored, SyncStatus.OK)
        change = _merge(tables, repository, stored, "remote")
        if change is not None:
            changes.append(change)
    return changes


# --- the reference implementation -------------------------------------------


@dataclass(slots=True)
class _Entry:
    repository: str
    event: SyncEvent
    status: SyncStatus
    reason: str | None = None
    rejected_at: datetime | None = None

    @property
    def unsynced(self) -> bool:
        return self.status is not SyncStatus.OK and self.rejected_at is None


class _MemoryTables:
    def __init__(self) -> None:
        # Insertion order is recording order: the outbox order.
        self.events: dict[str, _Entry] = {}
        self.winners: dict[str, dict[str, SyncEvent]] = {}
        self.cursors: dict[str, int] = {}
        # JSON text, like SQLite: every read is a fresh copy.
        self.config: dict[str, str] = {}

    def known(self, event_id: str) -> bool:
        return event_id in self.events

    def add_event(self, repository: str, stored: _StoredEvent, status: SyncStatus) -> None:
        self.events[stored.event.event_id] = _Entry(repository, stored.event, status)

    def mark_synced(self, event_ids: Sequence[str]) -> None:
        for event_id in event_ids:
            entry = self.events.get(event_id)
            if entry is not None:
                entry.status, entry.reason, entry.rejected_at = SyncStatus.OK, None, None

    def winner(self, repository: str, data_id: str) -> SyncEvent | None:
        return self.winners.get(repository, {}).get(data_id)

    def set_winner(self, repository: str, stored: _StoredEvent) -> None:
        self.winners.setdefault(repository, {})[stored.event.data_id] = stored.event

    def live(self, repository: str) -> Iterable[dict[str, JsonValue]]:
        for _, event in sorted(self.winners.get(repository, {}).items()):
            document = _document_copy(event)
            if document is not None:
                yield document


class InMemoryLocalFirstStorage:
    """A :class:`LocalFirstStorage` in memory: the reference implementation.

    For tests and demos: nothing survives the process. It keeps the same
    promises as the SQLite store, copies included, so code tested against it
    behaves the same on disk. ``clock`` dates rejections (UTC now by default).
    """

    def __init__(self, *, clock: Callable[[], datetime] = _utc_now) -> None:
        self._clock = clock
        self._state = _Lifecycle.NEW
        self._tables = _MemoryTables()

    def _open_tables(self) -> _MemoryTables:
        self._state.check_open("in memory")
        return self._tables

    async def open(self) -> None:
        """Open the store; idempotent while open."""
        if self._state.check_can_open("in memory"):
            self._state = _Lifecycle.OPEN

    async def aclose(self) -> None:
        """Close the store for good; idempotent."""
        self._state = _Lifecycle.CLOSED

    async def record_local(self, repository: str, event: SyncEvent) -> Change | None:
        """Log a local event and merge it; see :meth:`LocalFirstStorage.record_local`."""
        tables = self._open_tables()
        return _record(tables, repository, _StoredEvent.of(event))

    async def apply_remote(self, repository: str, events: Sequence[SyncEvent]) -> list[Change]:
        """Log and merge new remote events; see :meth:`LocalFirstStorage.apply_remote`."""
        tables = self._open_tables()
        # Every event is encoded before the first write: a bad one stores nothing.
        return _apply(tables, repository, [_StoredEvent.of(event) for event in events])

    async def mark_synced(self, event_ids: Iterable[str]) -> None:
        """Mark local events ``OK``; see :meth:`LocalFirstStorage.mark_synced`."""
        self._open_tables().mark_synced(_unique_ids(event_ids))

    def _unsynced(self, event_ids: Iterable[str]) -> Iterable[_Entry]:
        events = self._open_tables().events
        entries = (events.get(event_id) for event_id in _unique_ids(event_ids))
        return [entry for entry in entries if entry is not None and entry.unsynced]

    async def mark_failed(self, event_ids: Iterable[str], reason: str) -> None:
        """Mark unsynced local events ``FAILED``; see :meth:`LocalFirstStorage.mark_failed`."""
        for entry in self._unsynced(event_ids):
            entry.status, entry.reason = SyncStatus.FAILED, reason

    async def reject(self, event_ids: Iterable[str], reason: str) -> None:
        """Set unsynced local events aside; see :meth:`LocalFirstStorage.reject`."""
        entries = self._unsynced(event_ids)
        rejected_at = _timestamp(self._clock)
        for entry in entries:
            entry.status, entry.reason, entry.rejected_at = SyncStatus.FAILED, reason, rejected_at

    async def rejected(self) -> list[RejectedEvent]:
        """Return the dead letters, oldest recorded first."""
        return [
            RejectedEvent(
                repository=entry.repository,
                event=entry.event,
                reason=entry.reason or "",
                rejected_at=entry.rejected_at,
            )
            for entry in self._open_tables().events.values()
            if entry.rejected_at is not None
        ]

    async def retry_rejected(self, event_ids: Iterable[str] | None = None) -> int:
        """Put dead letters back in the outbox; see :meth:`LocalFirstStorage.retry_rejected`."""
        events = self._open_tables().events
        if event_ids is None:
            candidates: Iterable[_Entry | None] = list(events.values())
        else:
            candidates = [events.get(event_id) for event_id in _unique_ids(event_ids)]
        retried = 0
        for entry in candidates:
            if entry is not None and entry.rejected_at is not None:
                entry.status, entry.reason, entry.rejected_at = SyncStatus.PENDING, None, None
                retried += 1
        return retried

    async def outbox(self, limit: int | None = None) -> list[tuple[str, SyncEvent]]:
        """Return the unsynced local events, oldest first; see :meth:`LocalFirstStorage.outbox`."""
        _check_outbox_limit(limit)
        pending = [
            (entry.repository, entry.event)
            for entry in self._open_tables().events.values()
            if entry.unsynced
        ]
        return pending[:limit]

    async def get(self, repository: str, id: str) -> dict[str, JsonValue] | None:
        """Return a copy of a document, or ``None`` if absent or deleted."""
        winner = self._open_tables().winner(repository, id)
        return None if winner is None else _document_copy(winner)

    async def all(self, repository: str) -> list[dict[str, JsonValue]]:
        """Return copies of the live documents of ``repository``, ordered by id."""
        return list(self._open_tables().live(repository))

    async def query(
        self, repository: str, where: Mapping[str, JsonValue]
    ) -> list[dict[str, JsonValue]]:
        """Return the live documents matching ``where``; see :func:`matches`."""
        return [doc for doc in self._open_tables().live(repository) if matches(doc, where)]

    async def get_cursor(self, repository: str) -> int | None:
        """Return the cursor of ``repository``, if any."""
        return self._open_tables().cursors.get(repository)

    async def set_cursor(self, repository: str, cursor: int) -> None:
        """Advance the cursor of ``repository``; see :meth:`LocalFirstStorage.set_cursor`."""
        cursors = self._open_tables().cursors
        _check_cursor(cursor)
        cursors[repository] = max(cursor, cursors.get(repository, cursor))

    async def cursors(self) -> dict[str, int]:
        """Return every cursor, by repository."""
        return dict(self._open_tables().cursors)

    async def get_config(self, key: str) -> JsonValue | None:
        """Return a copy of the value stored under ``key``, or ``None``."""
        text = self._open_tables().config.get(key)
        return None if text is None else json.loads(text)

    async def set_config(self, key: str, value: JsonValue) -> None:
        """Store ``value`` under ``key``; ``None`` removes it."""
        config = self._open_tables().config
        if value is None:
            config.pop(key, None)
        else:
            config[key] = _dumps(value)

    async def status_of(self, event_id: str) -> SyncStatus | None:
        """Return the status of a logged event, or ``None``."""
        entry = self._open_tables().events.get(event_id)
        return None if entry is None else entry.status
