"""``lfws demo``: a sync server and two replicas in one process, narrated.

Everything is real: the server listens on a loopback port with its event log
in SQLite, and replicas A and B are :class:`LocalFirstClient`\\ s with SQLite
stores, syncing through :class:`WebSocketSyncStrategy`. Every step waits on a
condition with a deadline (never a fixed sleep), and the run ends by checking
that both replicas and the server's log agree.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from pathlib import Path
from typing import TextIO

from lfws_core.events import JsonValue, SyncEvent

from ._broadcast import Subscription
from .asyncio import Server, serve
from .local_first_client import LocalFirstClient
from .local_storage import Change, InMemoryLocalFirstStorage
from .repository import Repository
from .sqlite_event_log import SqliteEventLog
from .sqlite_local_storage import SqliteLocalFirstStorage
from .websocket_strategy import WebSocketSyncStrategy

__all__ = ["DemoFailed", "run"]

REPOSITORY = "todos"
STEP_TIMEOUT = 10.0
"""The longest any one condition is waited for."""
TOTAL_TIMEOUT = 50.0
LATENCY_SAMPLES = 20

Document = dict[str, JsonValue]


class DemoFailed(Exception):
    """A step did not reach its condition in time, or the replicas disagree."""


async def _until(what: str, condition: Callable[[], Awaitable[bool]]) -> float:
    """Wait until ``condition()`` holds; return the seconds it took."""
    started = time.perf_counter()
    deadline = started + STEP_TIMEOUT
    while not await condition():
        if time.perf_counter() > deadline:
            raise DemoFailed(f"{what}: not done within {STEP_TIMEOUT:.0f} s")
        await asyncio.sleep(0.005)  # polling a condition, not waiting out a guess
    return time.perf_counter() - started


class _Replica:
    """One app: a local-first client with its SQLite store and a WebSocket strategy."""

    def __init__(self, name: str, url: str, directory: Path, authored: dict[str, str]) -> None:
        self.name = name
        self.todos = Repository(REPOSITORY)
        self.storage = SqliteLocalFirstStorage(directory / f"{name.lower()}.db")
        self.ws = WebSocketSyncStrategy(url, reconnect_delay=0.05, max_reconnect_delay=0.5)
        self.client = LocalFirstClient(
            repositories=[self.todos], local_storage=self.storage, sync_strategies=[self.ws]
        )
        self.authored = authored
        """Who wrote each event (event id -> replica name), shared by the replicas."""

    async def upsert(self, document: Document) -> SyncEvent:
        event = await self.todos.upsert(document)
        self.authored[event.event_id] = self.name
        return event

    async def pending(self) -> int:
        return len(await self.storage.outbox())


class _Demo:
    def __init__(self, directory: Path, out: TextIO) -> None:
        self.directory = directory
        self.out = out
        self.server_db = directory / "server.db"
        self.authored: dict[str, str] = {}
        self.port = 0
        self.server: Server | None = None
        self._server_stack = AsyncExitStack()

    def say(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    # --- the server ------------------------------------------------------------------

    async def start_server(self) -> Server:
        context: AbstractAsyncContextManager[Server] = serve(
            event_log=SqliteEventLog(self.server_db), port=self.port
        )
        self.server = await self._server_stack.enter_async_context(context)
        self.port = self.server.port  # the same port after a restart
        return self.server

    async def stop_server(self) -> None:
        await self._server_stack.aclose()
        self.server = None

    async def server_log(self) -> list[SyncEvent]:
        log = SqliteEventLog(self.server_db)
        try:
            return await log.fetch(REPOSITORY, 0, 1_000_000)
        finally:
            await log.aclose()

    # --- the story -------------------------------------------------------------------

    async def run(self) -> None:
        started = time.perf_counter()
        server = await self.start_server()
        try:
            a = _Replica("A", server.url, self.directory, self.authored)
            b = _Replica("B", server.url, self.directory, self.authored)
            async with a.client, b.client:
                self.say("lfws demo: a sync server and two replicas, A and B, in this process")
                self.say(f"  server  {server.url}  (event log {self.server_db})")
                await a.ws.start()
                await b.ws.start()
                await self.connected(a, b)
                self.say("  A, B    SQLite stores a.db and b.db, connected")
                await self.step_live(a, b)
                await self.step_offline(a, b)
                await self.step_restart(a, b)
                await self.finale(a, b)
        finally:
            await self.stop_server()
        self.say(f"Total time {time.perf_counter() - started:.2f} s.")

    async def connected(self, *replicas: _Replica) -> float:
        async def all_connected() -> bool:
            return all(r.ws.latest_connection_state for r in replicas)

        names = " and ".join(r.name for r in replicas)
        return await _until(f"{names} connect", all_connected)

    async def step_live(self, a: _Replica, b: _Replica) -> None:
        self.say()
        self.say("1. A change on A reaches B")
        latencies: list[float] = []
        async with b.todos.watch() as changes:
            for n in range(LATENCY_SAMPLES + 1):
                title = "buy milk" if n == 0 else f"buy milk (edit {n})"
                sent = time.perf_counter()
                event = await a.upsert({"id": "milk", "title": title, "done": False})
                await _arrival(changes, event, "B receives A's change")
                latencies.append((time.perf_counter() - sent) * 1000)
        first, rest = latencies[0], latencies[1:]
        self.say(f'   A upserts "milk"; B has it {first:.1f} ms later (A -> server -> B)')
        self.say(
            f"   {len(rest)} more edits: median {statistics.median(rest):.1f} ms, "
            f"slowest {max(rest):.1f} ms"
        )

    async def step_offline(self, a: _Replica, b: _Replica) -> None:
        self.say()
        self.say("2. B goes offline, both edit, B comes back")
        await b.ws.stop()
        self.say("   B stopped: offline")
        await a.upsert({"id": "milk", "title": "buy oat milk", "done": False})
        await a.upsert({"id": "bread", "title": "buy bread", "done": False})
        self.say('   A: milk -> "buy oat milk", adds "bread"')
        await b.upsert({"id": "milk", "title": "buy soy milk", "done": True})
        await b.upsert({"id": "eggs", "title": "buy eggs", "done": False})
        self.say(
            f'   B: milk -> "buy soy milk" (the later edit: it wins), adds "eggs"; '
            f"{await b.pending()} events wait in B's outbox"
        )
        await b.ws.start()
        took = await self.converged(a, b, expected_documents=3)
        self.say(f"   B started again: converged in {took * 1000:.0f} ms")
        await self.show(a, b)

    async def step_restart(self, a: _Replica, b: _Replica) -> None:
        self.say()
        self.say("3. The server restarts; nothing is lost")
        stored = len(await self.server_log())
        await self.stop_server()

        async def offline() -> bool:
            return not (a.ws.latest_connection_state or b.ws.latest_connection_state)

        await _until("A and B notice the server is gone", offline)
        self.say(f"   server stopped with {stored} events stored; A and B are offline")
        await a.upsert({"id": "coffee", "title": "buy coffee", "done": False})
        deleted = await b.todos.delete("bread")
        assert deleted is not None
        self.authored[deleted.event_id] = b.name
        self.say(
            f'   meanwhile A adds "coffee" and B deletes "bread" '
            f"({await a.pending()} + {await b.pending()} events in their outboxes)"
        )
        restarted = time.perf_counter()
        await self.start_server()
        self.say(f"   server started again on port {self.port}, same database")
        await self.connected(a, b)
        await self.converged(a, b, expected_documents=3)
        took = time.perf_counter() - restarted
        self.say(f"   A and B reconnected and converged {took * 1000:.0f} ms after the restart")

    async def converged(self, a: _Replica, b: _Replica, *, expected_documents: int) -> float:
        async def agree() -> bool:
            documents = await a.todos.all()
            return (
                len(documents) == expected_documents
                and documents == await b.todos.all()
                and not await a.pending()
                and not await b.pending()
                and len(await self.server_log()) == len(self.authored)
            )

        return await _until("A, B and the server converge", agree)

    async def show(self, *replicas: _Replica) -> None:
        for replica in replicas:
            self.say(f"   {replica.name}: {_summary(await replica.todos.all())}")

    async def finale(self, a: _Replica, b: _Replica) -> None:
        log = await self.server_log()
        self.say()
        self.say("Final state")
        await self.show(a, b)
        self.say(f"   server log ({len(log)} events):")
        for line in _log_lines(log, self.authored):
            self.say(f"     {line}")
        from_log = await _documents(log)
        documents_a, documents_b = await a.todos.all(), await b.todos.all()
        ids = [event.event_id for event in log]
        if not documents_a == documents_b == from_log:
            raise DemoFailed("the replicas and the server's log disagree")
        if sorted(ids) != sorted(self.authored) or len(set(ids)) != len(ids):
            raise DemoFailed("the server's log does not hold every event exactly once")
        self.say()
        self.say(
            f"OK: A, B and the server's log agree: {len(documents_a)} documents, "
            f"{len(log)} events, each stored once."
        )


async def _documents(log: list[SyncEvent]) -> list[Document]:
    """Return the documents the server's log amounts to, merged as every replica merges."""
    storage = InMemoryLocalFirstStorage()
    await storage.open()
    await storage.apply_remote(REPOSITORY, log)
    return await storage.all(REPOSITORY)


async def _arrival(changes: Subscription[Change], event: SyncEvent, what: str) -> Change:
    """Return the change ``event`` makes, as a watcher sees it."""
    try:
        async with asyncio.timeout(STEP_TIMEOUT):
            async for change in changes:
                if change.event.event_id == event.event_id:
                    return change
    except TimeoutError:
        pass
    raise DemoFailed(f"{what}: not done within {STEP_TIMEOUT:.0f} s")


def _log_lines(log: list[SyncEvent], authored: dict[str, str]) -> list[str]:
    """Describe the server's log, one line per run of edits of a document by one replica."""
    runs: list[list[SyncEvent]] = []
    for event in log:
        last = runs[-1][-1] if runs else None
        if (
            last is not None
            and (last.operation, last.data_id) == (event.operation, event.data_id)
            and authored.get(last.event_id) == authored.get(event.event_id)
        ):
            runs[-1].append(event)
        else:
            runs.append([event])
    lines = []
    for run in runs:
        first, last = run[0], run[-1]
        sequences = f"#{first.server_sequence}"
        if len(run) > 1:
            sequences += f"-{last.server_sequence}"
        what = f"{last.operation.name.lower()} {last.data_id}"
        if len(run) > 1:
            what += f" x{len(run)}"
        data = "" if last.data is None else f"  {_summary([dict(last.data)])}"
        lines.append(f"{sequences:<8} {what:<16} by {authored.get(last.event_id, '?')}{data}")
    return lines


def _summary(documents: list[Document]) -> str:
    parts = []
    for document in documents:
        mark = "x" if document.get("done") else " "
        parts.append(f'[{mark}] {document.get("id")}: "{document.get("title")}"')
    return ", ".join(parts) or "(empty)"


async def _main(out: TextIO) -> None:
    with tempfile.TemporaryDirectory(prefix="lfws-demo-") as directory:
        async with asyncio.timeout(TOTAL_TIMEOUT):
            await _Demo(Path(directory), out).run()


def run(out: TextIO = sys.stdout) -> int:
    """Run the demo; return the exit status (0 when the replicas converged)."""
    try:
        asyncio.run(_main(out))
    except DemoFailed as error:
        print(f"lfws demo: FAILED: {error}", file=sys.stderr, flush=True)
        return 1
    except TimeoutError:
        print(f"lfws demo: FAILED: not done within {TOTAL_TIMEOUT:.0f} s", file=sys.stderr)
        return 1
    return 0
