"""The durable outbox: a process killed with unsynced events sends them once it runs again."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

from lfws_adapters import SqliteLocalFirstStorage, SyncStatus

from .harness import REPOSITORY, Server, eventually

pytestmark = pytest.mark.anyio

CHILD = Path(__file__).with_name("outbox_child.py")
CHILD_TIMEOUT = 20.0  # a fresh interpreter importing lfws, then the work


async def line_from(process: Process) -> str:
    assert process.stdout is not None
    with anyio.fail_after(CHILD_TIMEOUT):
        data = await BufferedByteReceiveStream(process.stdout).receive_until(b"\n", 65536)
    return data.decode()


async def test_events_pending_at_a_kill_are_sent_exactly_once_after_a_restart(
    tmp_path: Path,
) -> None:
    db = str(tmp_path / "app.db")
    async with Server() as server:
        # The server stores what it receives but never answers: nothing is acked.
        server.log.hold = anyio.Event()
        command = [sys.executable, str(CHILD), "record", db, server.url]
        async with await anyio.open_process(command, stderr=subprocess.DEVNULL) as child:
            word, _, payload = (await line_from(child)).partition(" ")
            assert word == "ready"
            ids: list[str] = json.loads(payload)
            await eventually(lambda: server.log.ids() != [])  # sent, stored, not acked
            child.send_signal(signal.SIGKILL)
            assert await child.wait() == -signal.SIGKILL
        # Some or all of the five reached the server, none was acknowledged:
        # all five are still pending in the dead client's outbox.
        stored_before = server.log.ids()
        assert stored_before and set(stored_before) <= set(ids)

        server.log.hold.set()  # acks flow again (also for what the dead client sent)
        server.log.hold = None
        command = [sys.executable, str(CHILD), "sync", db, server.url]
        async with await anyio.open_process(command, stderr=subprocess.DEVNULL) as child:
            assert await line_from(child) == "synced"
            assert await child.wait() == 0

        assert sorted(server.log.ids()) == sorted(ids)  # each one, once

    storage = SqliteLocalFirstStorage(db)
    await storage.open()
    try:
        assert await storage.outbox() == []
        assert [await storage.status_of(i) for i in ids] == [SyncStatus.OK] * 5
        assert len(await storage.all(REPOSITORY)) == 5
    finally:
        await storage.aclose()
