"""The server's storage seam: an append-only event log per repository.

The server session (:mod:`lfws_core.server`) asks for events to be stored
and fetched; an adapter answers through an :class:`EventLog`. Every backend
keeps the same promises, checked by one shared contract test suite:

* an event id is stored once per repository; a replay (within one call or
  across calls) is reported in :attr:`StoreResult.duplicates`, not stored;
* ``serverSequence`` is strictly increasing per repository, starts at 1 and
  has no gaps;
* :meth:`EventLog.store` returns only once the events are durable, so an
  ``ack`` sent after it never names an event a crash can lose;
* :meth:`EventLog.fetch` returns the events after a cursor in sequence order.

The methods are async because a networked backend (PostgreSQL) will plug in
here; the embedded backends simply run their synchronous code.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from lfws_core.errors import LfwsError, LocalProtocolError
from lfws_core.events import SyncEvent
from lfws_core.testing import MemoryEventLog

__all__ = [
    "EventLog",
    "ImmediateEventLog",
    "immediate_store",
    "InMemoryEventLog",
    "IncompatibleSchema",
    "StoreClosed",
    "StoreError",
    "StoreResult",
    "check_fetch_limit",
]


class StoreError(LfwsError):
    """The storage backend failed; nothing from the failed call was stored."""


class IncompatibleSchema(StoreError):
    """The store on disk is not an lfws event log, or one from a newer lfws."""


class StoreClosed(LocalProtocolError):
    """An event log was used after :meth:`EventLog.aclose`."""


@dataclass(frozen=True, kw_only=True, slots=True)
class StoreResult:
    """The outcome of one :meth:`EventLog.store` call.

    ``stored`` holds the newly stored events, each with its
    ``server_sequence``, in input order; ``duplicates`` the ids that were
    already in the repository (or earlier in the same call), in input order.
    """

    stored: tuple[SyncEvent, ...]
    duplicates: tuple[str, ...]


class EventLog(Protocol):
    """What the server needs from its storage."""

    async def store(self, repository: str, events: Sequence[SyncEvent]) -> StoreResult:
        """Append the new ``events`` to ``repository`` atomically.

        Returns only after the events are committed. An incoming
        ``server_sequence`` is ignored: the log assigns its own.
        """
        ...

    async def fetch(self, repository: str, after_sequence: int, limit: int) -> list[SyncEvent]:
        """Return at most ``limit`` events with a sequence above ``after_sequence``, ascending.

        A negative ``after_sequence`` counts as 0; ``limit`` must be at least 1.
        """
        ...

    async def repositories(self) -> list[str]:
        """Return the repositories holding at least one event, sorted."""
        ...

    async def stats(self) -> Mapping[str, int]:
        """Return the number of events per repository."""
        ...

    async def aclose(self) -> None:
        """Release the backend; idempotent. Any other call afterwards raises StoreClosed."""
        ...


@runtime_checkable
class ImmediateEventLog(Protocol):
    """An :class:`EventLog` whose store is synchronous underneath, and says so.

    The server calls :meth:`store_now` directly instead of running
    :meth:`EventLog.store` in a task: a store that never waits then costs no
    task and no extra event-loop iteration, and its ``ack`` leaves with the
    rest of the reply to the read that asked for it.
    """

    def store_now(self, repository: str, events: Sequence[SyncEvent]) -> StoreResult:
        """Do what :meth:`EventLog.store` does, without suspending."""
        ...


def immediate_store(log: EventLog) -> Callable[[str, Sequence[SyncEvent]], StoreResult] | None:
    """Return ``log.store_now`` if the log's ``store`` is just that, else ``None``.

    A subclass that overrides ``store`` (to record or hold calls, say) below
    the class that defines ``store_now`` keeps its override: the server then
    awaits ``store``. So does a wrapper that only forwards attributes.
    """
    if not isinstance(log, ImmediateEventLog):
        return None
    mro = type(log).__mro__
    store_now_at = next((i for i, cls in enumerate(mro) if "store_now" in vars(cls)), None)
    store_at = next((i for i, cls in enumerate(mro) if "store" in vars(cls)), None)
    if store_now_at is None or store_at is None or store_at < store_now_at:
        return None
    return log.store_now


def check_fetch_limit(limit: int) -> None:
    """Raise :class:`LocalProtocolError` unless ``limit`` is at least 1."""
    if limit < 1:
        raise LocalProtocolError(f"fetch limit must be at least 1, not {limit}")


class InMemoryEventLog:
    """An :class:`EventLog` over :class:`lfws_core.testing.MemoryEventLog`.

    For tests and demos: nothing survives the process. Pass ``log`` to share
    the underlying store (for instance with the deterministic simulation).
    """

    def __init__(self, log: MemoryEventLog | None = None) -> None:
        self._log = MemoryEventLog() if log is None else log
        self._closed = False

    @property
    def log(self) -> MemoryEventLog:
        """The underlying in-memory log."""
        return self._log

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed("the event log is closed")

    def store_now(self, repository: str, events: Sequence[SyncEvent]) -> StoreResult:
        """Append the new ``events`` to ``repository``; see :meth:`EventLog.store`."""
        self._check_open()
        stored, duplicates = self._log.store(repository, events)
        return StoreResult(stored=tuple(stored), duplicates=tuple(duplicates))

    async def store(self, repository: str, events: Sequence[SyncEvent]) -> StoreResult:
        """Append the new ``events`` to ``repository``; see :meth:`EventLog.store`."""
        return self.store_now(repository, events)

    async def fetch(self, repository: str, after_sequence: int, limit: int) -> list[SyncEvent]:
        """Return the events after ``after_sequence``; see :meth:`EventLog.fetch`."""
        self._check_open()
        check_fetch_limit(limit)
        return self._log.fetch(repository, after_sequence, limit)

    async def repositories(self) -> list[str]:
        """Return the repositories holding at least one event, sorted."""
        self._check_open()
        return self._log.repositories()

    async def stats(self) -> Mapping[str, int]:
        """Return the number of events per repository."""
        self._check_open()
        return {name: len(self._log.events(name)) for name in self._log.repositories()}

    async def aclose(self) -> None:
        """Mark the log closed; idempotent."""
        self._closed = True
