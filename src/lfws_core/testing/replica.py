"""A client's local store, in memory: documents, event log, outbox, cursors."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ..events import JsonValue, Operation, SyncEvent
from ..merge import wins

__all__ = ["MemoryReplica"]


class MemoryReplica:
    """What a local-first store keeps, reduced to its rules.

    Every event, local or remote, is merged by the core's last-writer-wins
    rule, so replicas that saw the same events hold the same documents. Local
    events stay in the outbox until the server acknowledges them; the outbox
    and the cursors survive a client restart (the replica object outlives the
    session in simulations).
    """

    def __init__(self) -> None:
        self._winners: dict[tuple[str, str], SyncEvent] = {}
        self._seen: set[str] = set()
        self._outbox: dict[str, tuple[str, SyncEvent]] = {}
        self.cursors: dict[str, int] = {}
        self.duplicate_applies = 0
        """Remote events that were already known when applied (echoes, replays)."""

    def _merge(self, repository: str, event: SyncEvent) -> bool:
        if event.event_id in self._seen:
            return False
        self._seen.add(event.event_id)
        key = (repository, event.data_id)
        if wins(event, self._winners.get(key)):
            self._winners[key] = event
        return True

    def record_local(self, repository: str, event: SyncEvent) -> None:
        """Apply a local change and keep it in the outbox until acknowledged."""
        self._merge(repository, event)
        self._outbox[event.event_id] = (repository, event)

    def apply_remote(self, repository: str, events: Iterable[SyncEvent]) -> None:
        """Merge remote events; known ones (echoes, replays) change nothing."""
        for event in events:
            if not self._merge(repository, event):
                self.duplicate_applies += 1

    def mark_synced(self, event_ids: Iterable[str]) -> None:
        """Drop acknowledged events from the outbox."""
        for event_id in event_ids:
            self._outbox.pop(event_id, None)

    def advance_cursor(self, repository: str, cursor: int | None) -> None:
        """Remember the highest server sequence applied for ``repository``."""
        if cursor is not None and cursor > self.cursors.get(repository, 0):
            self.cursors[repository] = cursor

    def outbox(self) -> list[tuple[str, SyncEvent]]:
        """Return the unacknowledged local events, oldest first."""
        return list(self._outbox.values())

    def documents(self, repository: str) -> dict[str, Mapping[str, JsonValue]]:
        """Return the live documents of ``repository`` by id (tombstones hidden)."""
        return {
            data_id: event.data or {}
            for (repo, data_id), event in sorted(self._winners.items())
            if repo == repository and event.operation is not Operation.DELETE
        }

    def knows(self, event_id: str) -> bool:
        """Return whether this replica has seen ``event_id``."""
        return event_id in self._seen
