"""The chaos checker reads real stores and names each broken promise (no sockets here)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from lfws_adapters.sqlite_event_log import SqliteEventLog
from lfws_adapters.sqlite_local_storage import SqliteLocalFirstStorage
from lfws_core.events import Operation, SyncEvent

from .checker import (
    Replica,
    ServerLog,
    convergence_violations,
    read_replica,
    read_server_log,
    safety_violations,
)

REPOSITORY = "todos"
EPOCH = datetime(2026, 11, 26, tzinfo=UTC)


def event(number: int, data_id: str = "doc-1") -> SyncEvent:
    return SyncEvent(
        event_id=f"0000000{number}-0000-7000-8000-000000000000",
        operation=Operation.INSERT,
        data_id=data_id,
        created_at=EPOCH + timedelta(seconds=number),
        data={"id": data_id, "n": number},
    )


async def server_storing(path: Path, events: list[SyncEvent]) -> list[SyncEvent]:
    log = SqliteEventLog(path)
    try:
        return list((await log.store(REPOSITORY, events)).stored)
    finally:
        await log.aclose()


async def client(
    path: Path,
    *,
    applied: Sequence[SyncEvent] = (),
    cursor: int | None = None,
    local: SyncEvent | None = None,
    synced: bool = False,
) -> None:
    storage = SqliteLocalFirstStorage(path)
    await storage.open()
    try:
        if applied:
            await storage.apply_remote(REPOSITORY, applied)
        if cursor is not None:
            await storage.set_cursor(REPOSITORY, cursor)
        if local is not None:
            await storage.record_local(REPOSITORY, local)
            if synced:
                await storage.mark_synced([local.event_id])
    finally:
        await storage.aclose()


def check(tmp_path: Path) -> tuple[ServerLog, list[Replica]]:
    log = read_server_log(tmp_path / "server.db")
    replicas = [
        read_replica(path, path.stem, [REPOSITORY]) for path in sorted(tmp_path.glob("c*.db"))
    ]
    return log, replicas


def kinds(tmp_path: Path) -> set[str]:
    log, replicas = check(tmp_path)
    found = safety_violations(log, replicas) + convergence_violations(log, replicas)
    return {violation.kind for violation in found}


def test_a_replica_equal_to_the_log_passes(tmp_path: Path) -> None:
    stored = asyncio.run(server_storing(tmp_path / "server.db", [event(1), event(2, "doc-2")]))
    asyncio.run(client(tmp_path / "c1.db", applied=stored, cursor=2))

    assert kinds(tmp_path) == set()


def test_a_cursor_past_a_missing_event_is_a_skip(tmp_path: Path) -> None:
    stored = asyncio.run(server_storing(tmp_path / "server.db", [event(1), event(2, "doc-2")]))
    asyncio.run(client(tmp_path / "c1.db", applied=stored[1:], cursor=2))

    assert kinds(tmp_path) == {"cursor-skip", "diverged"}


def test_a_synced_event_missing_from_the_log_is_lost(tmp_path: Path) -> None:
    asyncio.run(server_storing(tmp_path / "server.db", [event(1)]))
    asyncio.run(client(tmp_path / "c1.db", local=event(2), synced=True))

    assert "lost" in kinds(tmp_path)


def test_a_pending_event_is_an_outbox_left(tmp_path: Path) -> None:
    stored = asyncio.run(server_storing(tmp_path / "server.db", [event(1)]))
    asyncio.run(client(tmp_path / "c1.db", applied=stored, cursor=1, local=event(2)))

    assert kinds(tmp_path) == {"outbox", "diverged"}


def test_a_document_another_event_wins_differs_from_the_log(tmp_path: Path) -> None:
    older, newer = asyncio.run(server_storing(tmp_path / "server.db", [event(1), event(2)]))
    asyncio.run(client(tmp_path / "c1.db", applied=[older, newer], cursor=2))
    log, (replica,) = check(tmp_path)
    stale = replace(replica, winners={(REPOSITORY, "doc-1"): older.event_id})

    assert [v.kind for v in convergence_violations(log, [replica])] == []
    assert [v.kind for v in convergence_violations(log, [stale])] == ["documents"]


def test_a_row_stored_twice_is_a_duplicate(tmp_path: Path) -> None:
    log = ServerLog(rows={REPOSITORY: [(1, "a", "{}"), (2, "a", "{}"), (4, "b", "{}")]})

    found = {violation.kind for violation in safety_violations(log, [])}

    assert found == {"duplicate", "gap"}
