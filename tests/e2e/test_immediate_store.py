"""Stores the hub carries out at once, without a task (an ``ImmediateEventLog``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from lfws_adapters.event_log import InMemoryEventLog, StoreError, StoreResult, immediate_store
from lfws_adapters.sqlite_event_log import SqliteEventLog
from lfws_core.actions import ConnectionState
from lfws_core.events import SyncEvent

from .helpers import REPOSITORY, GatedEventLog, client_config, eventually, live
from .hosts import RecordingHost
from .runtimes import Runtime


class FailingOnce(InMemoryEventLog):
    """Its first synchronous store raises ``error``; the later ones store."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error
        self.failures = 0

    def store_now(self, repository: str, events: Sequence[SyncEvent]) -> StoreResult:
        if not self.failures:
            self.failures += 1
            raise self.error
        return super().store_now(repository, events)


class RefusingTheFirstEvent(InMemoryEventLog):
    """Raises ``error`` for every store holding the first event it was asked to store.

    Whether the hub stores that push alone or with the next ones of the same
    read (it tries a failed store again push by push), only that push fails.
    """

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error
        self.refused: str | None = None

    def store_now(self, repository: str, events: Sequence[SyncEvent]) -> StoreResult:
        if self.refused is None:
            self.refused = events[0].event_id
        if any(event.event_id == self.refused for event in events):
            raise self.error
        return super().store_now(repository, events)


class Recording(InMemoryEventLog):
    """Overrides the async store: the hub must await it, not skip it."""

    async def store(self, repository: str, events: Sequence[SyncEvent]) -> StoreResult:
        return await super().store(repository, events)


@pytest.mark.anyio
async def test_the_embedded_logs_store_at_once(tmp_path: Path) -> None:
    memory, sqlite = InMemoryEventLog(), SqliteEventLog(tmp_path / "events.db")
    assert immediate_store(memory) == memory.store_now
    assert immediate_store(sqlite) == sqlite.store_now
    assert immediate_store(FailingOnce(StoreError("x"))) is not None  # store_now overridden only
    await sqlite.aclose()


@pytest.mark.parametrize(
    "log",
    [Recording(), GatedEventLog(InMemoryEventLog(), "store"), object()],
    ids=["overridden-store", "forwarding-wrapper", "async-only"],
)
def test_logs_that_may_differ_from_their_store_now_are_awaited(log: Any) -> None:
    assert immediate_store(log) is None


@pytest.mark.anyio
async def test_a_store_error_fails_the_push_and_keeps_the_connection(runtime: Runtime) -> None:
    log = RefusingTheFirstEvent(StoreError("disk on fire"))
    writer = RecordingHost("writer")
    async with (
        runtime.module.serve(event_log=log, port=0) as server,
        runtime.module.connect(client_config(server.url), writer) as w,
    ):
        await live(w)
        failed = writer.edit(w, REPOSITORY, "doc", title="lost for now")
        stored = writer.edit(w, REPOSITORY, "doc", title="kept")
        await eventually(lambda: stored.event_id in writer.synced)
        assert failed.event_id not in writer.synced  # kept to resend, not acked
        assert [e.event_id for e in log.log.events(REPOSITORY)] == [stored.event_id]
        assert [s for s, _ in writer.states].count(ConnectionState.LIVE) == 1


@pytest.mark.anyio
async def test_an_unexpected_store_failure_closes_and_the_client_resends(
    runtime: Runtime,
) -> None:
    log = FailingOnce(RuntimeError("bug"))
    writer = RecordingHost("writer")
    async with (
        runtime.module.serve(event_log=log, port=0) as server,
        runtime.module.connect(client_config(server.url), writer) as w,
    ):
        await live(w)
        event = writer.edit(w, REPOSITORY, "doc", title="resent")
        await eventually(writer.all_synced)
        assert [e.event_id for e in log.log.events(REPOSITORY)] == [event.event_id]
        # Closed (1011) after the failure, then live again on a new connection
        # (the resent push may be acked while that one is still syncing).
        await eventually(lambda: [s for s, _ in writer.states].count(ConnectionState.LIVE) == 2)
