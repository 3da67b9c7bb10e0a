"""A client host that keeps everything in memory and records what happened."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from lfws_adapters.auth import AuthCredentials
from lfws_adapters.driver import ClientHost
from lfws_core.actions import ConnectionState
from lfws_core.events import Operation, SyncEvent
from lfws_core.ids import Uuid7Generator
from lfws_core.testing import MemoryReplica

new_event_id = Uuid7Generator(lambda: time.time_ns() // 1_000_000, os.urandom)


class RecordingHost(ClientHost):
    """A :class:`ClientHost` over a :class:`MemoryReplica`, recording every callback."""

    def __init__(self, name: str = "client", credentials: AuthCredentials | None = None) -> None:
        self.name = name
        self.replica = MemoryReplica()
        self.credentials = credentials
        """What :meth:`credentials_needed` answers (``None``: wait)."""
        self.pushed: list[SyncEvent] = []
        self.applied: list[SyncEvent] = []
        self.synced: set[str] = set()
        self.failed: list[tuple[str, tuple[str, ...], str]] = []
        self.rejected: list[tuple[str, tuple[str, ...], str]] = []
        self.credential_requests: list[str] = []
        self.states: list[tuple[ConnectionState, str]] = []

    # --- the app's side ------------------------------------------------------

    def edit(self, client: Any, repository: str, data_id: str, **data: object) -> SyncEvent:
        """Change a document locally and push the event through ``client``."""
        event = SyncEvent(
            event_id=new_event_id(),
            operation=Operation.UPDATE,
            data_id=data_id,
            created_at=datetime.now(UTC),
            data={"id": data_id, **data},  # type: ignore[dict-item]
        )
        self.replica.record_local(repository, event)
        self.pushed.append(event)
        client.push(repository, event)
        return event

    def all_synced(self) -> bool:
        return self.synced >= {event.event_id for event in self.pushed}

    def knows(self, events: list[SyncEvent]) -> bool:
        return all(self.replica.knows(event.event_id) for event in events)

    # --- ClientHost ----------------------------------------------------------

    async def apply_events(self, repository: str, events: tuple[SyncEvent, ...]) -> None:
        self.replica.apply_remote(repository, events)
        self.applied.extend(events)

    async def sync_completed(
        self, repository: str, events: tuple[SyncEvent, ...], cursor: int | None
    ) -> None:
        self.replica.advance_cursor(repository, cursor)

    async def mark_synced(self, repositories: Mapping[str, tuple[str, ...]]) -> None:
        for event_ids in repositories.values():
            self.replica.mark_synced(event_ids)
            self.synced.update(event_ids)

    async def push_failed(self, repository: str, event_ids: tuple[str, ...], reason: str) -> None:
        self.failed.append((repository, event_ids, reason))

    async def push_rejected(self, repository: str, event_ids: tuple[str, ...], reason: str) -> None:
        self.rejected.append((repository, event_ids, reason))

    async def credentials_needed(self, reason: str) -> AuthCredentials | None:
        self.credential_requests.append(reason)
        return self.credentials

    def state_changed(self, state: ConnectionState, reason: str) -> None:
        self.states.append((state, reason))
