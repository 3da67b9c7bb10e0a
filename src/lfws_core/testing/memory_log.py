"""The server's event log, in memory: the reference the real stores match."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ..events import SyncEvent

__all__ = ["MemoryEventLog"]


class MemoryEventLog:
    """Events per repository, deduplicated by id, numbered from 1.

    It answers the server session's store and fetch requests the way every
    lfws store must: an event id is stored once (a replay is reported as a
    duplicate), ``serverSequence`` is strictly increasing per repository, and
    fetches return events after a cursor in sequence order.
    """

    def __init__(self) -> None:
        self._events: dict[str, list[SyncEvent]] = {}
        self._ids: dict[str, set[str]] = {}

    def store(
        self, repository: str, events: Iterable[SyncEvent]
    ) -> tuple[list[SyncEvent], list[str]]:
        """Store ``events``; return (newly stored with sequences, duplicate ids)."""
        log = self._events.setdefault(repository, [])
        ids = self._ids.setdefault(repository, set())
        stored: list[SyncEvent] = []
        duplicates: list[str] = []
        for event in events:
            if event.event_id in ids:
                duplicates.append(event.event_id)
                continue
            ids.add(event.event_id)
            numbered = event.with_sequence(len(log) + 1)
            log.append(numbered)
            stored.append(numbered)
        return stored, duplicates

    def fetch(self, repository: str, after_sequence: int, limit: int) -> list[SyncEvent]:
        """Return at most ``limit`` events with a sequence above ``after_sequence``."""
        log = self._events.get(repository, [])
        start = max(after_sequence, 0)
        return log[start : start + limit]

    def repositories(self) -> list[str]:
        """Return the repositories that hold at least one event, sorted."""
        return sorted(name for name, log in self._events.items() if log)

    def events(self, repository: str) -> Sequence[SyncEvent]:
        """Return every event of ``repository`` in sequence order."""
        return tuple(self._events.get(repository, ()))

    def __contains__(self, event_id: object) -> bool:
        return any(event_id in ids for ids in self._ids.values())

    def __len__(self) -> int:
        return sum(len(log) for log in self._events.values())
