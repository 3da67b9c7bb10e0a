"""The local-first client: repositories over one local store, kept in sync by strategies.

A port of the Dart ``LocalFirstClient``. Every local write goes through
:meth:`LocalFirstClient.record_local` and every remote batch through
:meth:`LocalFirstClient.apply_remote`: the store merges it, the repository's
watchers hear about it, and (for local writes) every strategy is offered it.

Two ways to run it::

    client = LocalFirstClient(repositories=[todos], local_storage=storage, sync_strategies=[ws])
    await client.initialize()
    ...
    await client.dispose()

    async with LocalFirstClient(...) as client:  # owns a task group: trio, anyio, asyncio
        ...
"""

from __future__ import annotations

import enum
import logging
import os
import time
from collections.abc import Iterable, Sequence
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from types import TracebackType

import anyio
from anyio.abc import TaskGroup

from lfws_core.connection import CLOSE_TIMEOUT
from lfws_core.errors import LocalProtocolError
from lfws_core.events import JsonValue, Operation, SyncEvent
from lfws_core.ids import Uuid7Generator

from ._streams import lone_error_unwrapped
from .local_storage import Change, LocalFirstStorage
from .repository import Repository
from .sync_strategy import SyncStrategy

__all__ = ["LocalFirstClient"]

logger = logging.getLogger("lfws.client")

_DISPOSE_TIMEOUT = CLOSE_TIMEOUT + 1.0  # the strategies' close handshakes, when cancelled


class _Lifecycle(enum.Enum):
    NEW = "new"
    READY = "ready"
    DISPOSED = "disposed"


class LocalFirstClient:
    """Repositories over one local store, synced by ``sync_strategies``.

    Call :meth:`initialize` before using the repositories and :meth:`dispose`
    at the end, or use ``async with``, which also runs the strategies'
    connections in a task group of its own (required under trio).
    """

    def __init__(
        self,
        repositories: Iterable[Repository],
        local_storage: LocalFirstStorage,
        sync_strategies: Iterable[SyncStrategy] = (),
    ) -> None:
        self._repository_list = tuple(repositories)
        self._repositories = {r.name: r for r in self._repository_list}
        if len(self._repositories) != len(self._repository_list):
            raise LocalProtocolError("two repositories have the same name")
        self._storage = local_storage
        self._strategies = tuple(sync_strategies)
        self._state = _Lifecycle.NEW
        self._task_group: TaskGroup | None = None
        self._exit_stack: AsyncExitStack | None = None
        self._new_event_id = Uuid7Generator(lambda: time.time_ns() // 1_000_000, os.urandom)
        self._last_created_at = datetime.min.replace(tzinfo=UTC)

    # --- what the app sees ------------------------------------------------------

    @property
    def repositories(self) -> tuple[Repository, ...]:
        """The repositories, in the order given."""
        return self._repository_list

    @property
    def local_storage(self) -> LocalFirstStorage:
        """The local store."""
        return self._storage

    @property
    def sync_strategies(self) -> tuple[SyncStrategy, ...]:
        """The sync strategies, in the order given."""
        return self._strategies

    @property
    def task_group(self) -> TaskGroup | None:
        """The task group of ``async with LocalFirstClient(...)`` (``None`` outside one)."""
        return self._task_group

    def repository(self, name: str) -> Repository:
        """Return the repository called ``name``; raise ``KeyError`` if there is none."""
        return self._repositories[name]

    async def initialize(self) -> None:
        """Open the local store and attach the repositories and strategies; idempotent."""
        if self._state is _Lifecycle.DISPOSED:
            raise LocalProtocolError("this LocalFirstClient is disposed")
        if self._state is _Lifecycle.READY:
            return
        await self._storage.open()
        for repository in self._repository_list:
            repository._bind(self)
        for strategy in self._strategies:
            strategy.attach(self)
        self._state = _Lifecycle.READY

    async def dispose(self) -> None:
        """Stop the strategies, end every watcher and close the store; idempotent."""
        if self._state is _Lifecycle.DISPOSED:
            return
        self._state = _Lifecycle.DISPOSED
        for strategy in self._strategies:
            try:
                await strategy.dispose()
            except Exception:
                logger.exception("disposing of %r failed", strategy)
        for repository in self._repository_list:
            repository._close()
        await self._storage.aclose()

    async def __aenter__(self) -> LocalFirstClient:
        stack = AsyncExitStack()
        async with AsyncExitStack() as on_failure:
            on_failure.push_async_exit(stack)
            self._task_group = await stack.enter_async_context(anyio.create_task_group())
            stack.push_async_callback(self._leave)
            await self.initialize()
            on_failure.pop_all()
        self._exit_stack = stack
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        stack, self._exit_stack = self._exit_stack, None
        assert stack is not None, "__aexit__ without __aenter__"
        with lone_error_unwrapped():
            await stack.__aexit__(exc_type, exc, traceback)

    async def _leave(self) -> None:
        # Even when the block is cancelled, the strategies get to say goodbye.
        with anyio.move_on_after(_DISPOSE_TIMEOUT, shield=True):
            await self.dispose()
        if self._task_group is not None:
            self._task_group.cancel_scope.cancel()
            self._task_group = None

    # --- for repositories and strategies --------------------------------------------

    def new_event(
        self, operation: Operation, data_id: str, data: dict[str, JsonValue] | None
    ) -> SyncEvent:
        """Return a new local event: a UUIDv7 id, created now (UTC).

        Creation times only grow within a client, so a later local edit
        always wins over an earlier one, even if the wall clock steps back.
        """
        now = datetime.now(UTC)
        if now <= self._last_created_at:
            now = self._last_created_at + timedelta(microseconds=1)
        self._last_created_at = now
        return SyncEvent(
            event_id=self._new_event_id(),
            operation=operation,
            data_id=data_id,
            created_at=now,
            data=data,
        )

    async def record_local(self, repository: str, event: SyncEvent) -> Change | None:
        """Record a local event, tell the watchers, and offer it to every strategy.

        Once the store has it, the event is in the durable outbox: a strategy
        that fails to take it now sends it later, so its errors are logged.
        """
        change = await self._storage.record_local(repository, event)
        if change is not None:
            self._notify(change)
        for strategy in self._strategies:
            try:
                await strategy.push(repository, event)
            except Exception:
                logger.exception("%r failed to take event %s", strategy, event.event_id)
        return change

    async def apply_remote(self, repository: str, events: Sequence[SyncEvent]) -> list[Change]:
        """Merge remote events into the store and tell the watchers (the Dart ``pullChanges``)."""
        changes = await self._storage.apply_remote(repository, events)
        for change in changes:
            self._notify(change)
        return changes

    def _notify(self, change: Change) -> None:
        repository = self._repositories.get(change.repository)
        if repository is not None:
            repository._notify(change)
