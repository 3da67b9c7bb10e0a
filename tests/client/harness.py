"""The client API's test harness: a restartable server on the running backend, and apps.

The server runs on the adapter of the running anyio backend (asyncio or trio),
as the strategy under test does; it can be stopped and started again on the
same port with the same event log, which records what it was asked to do.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import anyio
import sniffio
from anyio.abc import TaskGroup, TaskStatus

from lfws_adapters import (
    InMemoryLocalFirstStorage,
    LocalFirstClient,
    Repository,
    WebSocketSyncStrategy,
)
from lfws_adapters._streams import lone_error_unwrapped
from lfws_adapters.auth import Authenticator, Credentials
from lfws_adapters.event_log import InMemoryEventLog, StoreResult
from lfws_adapters.local_storage import LocalFirstStorage
from lfws_core.actions import ConnectionState
from lfws_core.events import SyncEvent

from ..e2e.helpers import TIMEOUT, eventually

__all__ = [
    "REPOSITORY",
    "TIMEOUT",
    "App",
    "RecordingLog",
    "Server",
    "app",
    "eventually",
    "recording_authenticator",
    "until",
]

REPOSITORY = "todos"


def adapter() -> ModuleType:
    """The adapter module of the running backend."""
    return importlib.import_module(f"lfws_adapters.{sniffio.current_async_library()}")


async def until(condition: Callable[[], Awaitable[bool]], timeout: float = TIMEOUT) -> None:
    """Wait until the async ``condition()`` holds; fail after ``timeout`` seconds."""
    with anyio.fail_after(timeout):
        while not await condition():
            await anyio.sleep(0.002)


class RecordingLog(InMemoryEventLog):
    """An in-memory event log that outlives server restarts and records its calls.

    Setting ``hold`` makes every store commit, then wait for it (no ack goes out).
    """

    def __init__(self) -> None:
        super().__init__()
        self.stores: list[tuple[str, list[str]]] = []
        """``(repository, event ids)`` per store call: one per push or batch."""
        self.fetches: list[tuple[str, int]] = []
        """``(repository, after_sequence)`` per fetch."""
        self.hold: anyio.Event | None = None

    async def store(self, repository: str, events: Sequence[SyncEvent]) -> StoreResult:
        self.stores.append((repository, [event.event_id for event in events]))
        result = await super().store(repository, events)
        if self.hold is not None:
            await self.hold.wait()
        return result

    async def fetch(self, repository: str, after_sequence: int, limit: int) -> list[SyncEvent]:
        self.fetches.append((repository, after_sequence))
        return await super().fetch(repository, after_sequence, limit)

    async def aclose(self) -> None:
        pass  # the same log serves again after a restart

    def ids(self, repository: str = REPOSITORY) -> list[str]:
        """The ids of the events stored, in sequence order."""
        return [event.event_id for event in self.log.events(repository)]


def recording_authenticator(
    accepted: Sequence[str] | None = None,
) -> tuple[Authenticator, list[Credentials]]:
    """An authenticator accepting ``accepted`` tokens (all if None), and what it was shown."""
    seen: list[Credentials] = []

    def authenticate(credentials: Credentials) -> object:
        seen.append(credentials)
        if accepted is None or credentials.token in accepted:
            return credentials.token or "anonymous"
        return None

    return authenticate, seen


class Server:
    """A sync server that can stop and start again on the same port with the same log.

    It runs in a task of its own (``async with Server()`` owns the task group),
    so that stopping it does not unwind the caller's nurseries out of order.
    """

    def __init__(self, *, authenticator: Authenticator | None = None) -> None:
        self.log = RecordingLog()
        self.authenticator = authenticator
        self.port = 0
        self.running: Any = None
        self._stack = AsyncExitStack()
        self._tasks: TaskGroup | None = None
        self._stop: anyio.Event | None = None
        self._done: anyio.Event | None = None

    @property
    def url(self) -> str:
        assert self.port, "start the server first"
        return f"ws://127.0.0.1:{self.port}/sync"

    async def start(self) -> None:
        assert self._tasks is not None, "use async with Server()"
        self._stop, self._done = anyio.Event(), anyio.Event()
        self.running = await self._tasks.start(self._serve, self._stop, self._done)
        self.port = self.running.port

    async def stop(self) -> None:
        if self._stop is not None and self._done is not None:
            self._stop.set()
            await self._done.wait()
        self._stop = self._done = self.running = None

    async def _serve(
        self, stop: anyio.Event, done: anyio.Event, *, task_status: TaskStatus[Any]
    ) -> None:
        try:
            serve = adapter().serve(
                event_log=self.log, port=self.port, authenticator=self.authenticator
            )
            async with serve as running:
                task_status.started(running)
                await stop.wait()
        finally:
            done.set()

    async def __aenter__(self) -> Server:
        self._tasks = await self._stack.enter_async_context(anyio.create_task_group())
        await self.start()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.stop()
        with lone_error_unwrapped():
            await self._stack.__aexit__(*exc_info)


@dataclass
class App:
    """One app: a client with one repository and one WebSocket strategy."""

    client: LocalFirstClient
    todos: Repository
    ws: WebSocketSyncStrategy
    storage: LocalFirstStorage

    async def connected(self) -> None:
        await eventually(lambda: self.ws.latest_connection_state)

    async def live(self) -> None:
        """Wait until caught up (``LIVE``)."""
        await eventually(lambda: self.ws.state is ConnectionState.LIVE)

    async def disconnected(self) -> None:
        await eventually(lambda: not self.ws.latest_connection_state)

    async def synced(self) -> None:
        """Wait until the outbox is empty."""

        async def empty() -> bool:
            return not await self.storage.outbox()

        await until(empty)


@asynccontextmanager
async def app(
    url: str,
    *,
    storage: LocalFirstStorage | None = None,
    start: bool = True,
    **options: Any,
) -> AsyncIterator[App]:
    """Run an app (``async with LocalFirstClient``) that reconnects fast."""
    options.setdefault("reconnect_delay", 0.02)
    options.setdefault("max_reconnect_delay", 0.1)
    # A reconnect can reach a server's listener in the instant it shuts down
    # and get a TCP connection nobody answers; the connect timeout ends it.
    # The default (10 s) is longer than the tests wait.
    options.setdefault("connect_timeout", 1.0)
    todos = Repository(REPOSITORY)
    ws = WebSocketSyncStrategy(url, **options)
    storage = storage or InMemoryLocalFirstStorage()
    async with LocalFirstClient(
        repositories=[todos], local_storage=storage, sync_strategies=[ws]
    ) as client:
        if start:
            await ws.start()
        yield App(client, todos, ws, storage)
