"""Running a sync session in the background, on whatever event loop the app runs.

A strategy's ``start()`` returns at once and leaves a session running. Where
that session lives depends on the app: under asyncio a plain task will do;
under trio (and anyio's structured concurrency) a task needs a task group,
which ``async with LocalFirstClient(...)`` provides. The adapter that drives
the session follows the running library too, unless the app names one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Mapping
from contextlib import AbstractAsyncContextManager
from ssl import SSLContext
from typing import Any, Literal, Protocol, TypeAlias

from anyio.abc import TaskGroup, TaskStatus

from lfws_core.client import ClientConfig
from lfws_core.errors import LocalProtocolError

from .driver import ClientBase, ClientHost

__all__ = ["Connect", "RuntimeName", "adapter_connect", "current_library", "start_in_background"]

RuntimeName: TypeAlias = Literal["asyncio", "trio", "anyio"]
RUNTIME_NAMES: tuple[RuntimeName, ...] = ("asyncio", "trio", "anyio")

Run: TypeAlias = Callable[..., Coroutine[Any, Any, None]]
"""``run(*, task_status)``: calls ``task_status.started()`` once it is up, then runs."""

# Keeps the asyncio tasks alive: the loop itself holds only weak references.
_asyncio_tasks: set[asyncio.Task[None]] = set()


class Connect(Protocol):
    """An adapter's ``connect`` (see :func:`lfws_adapters.asyncio.connect`)."""

    def __call__(
        self,
        config: ClientConfig,
        host: ClientHost | None = None,
        *,
        ssl: SSLContext | None = None,
        cursors: Mapping[str, int] | None = None,
    ) -> AbstractAsyncContextManager[ClientBase]: ...


def current_library() -> str:
    """Return the async library running this task: ``"asyncio"`` or ``"trio"``."""
    try:
        import sniffio
    except ImportError:  # trio requires sniffio: without it, only asyncio can be running
        return "asyncio"
    try:
        return sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        raise LocalProtocolError("no async library is running in this thread") from None


def adapter_connect(runtime: RuntimeName | None) -> Connect:
    """Return the ``connect`` of the adapter for ``runtime`` (default: the running library)."""
    library = current_library()
    name = runtime or library
    if name not in ("anyio", library):
        raise LocalProtocolError(f"runtime={name!r} cannot run on {library}")
    if name == "asyncio":
        from .asyncio import connect as asyncio_connect

        return asyncio_connect
    if name == "trio":
        from .trio import connect as trio_connect

        return trio_connect
    from .anyio import connect as anyio_connect

    return anyio_connect


async def start_in_background(run: Run, task_group: TaskGroup | None) -> None:
    """Start ``run`` as a background task; return once it called ``task_status.started()``.

    What ``run`` raises before that is raised here. Without a task group this
    works under asyncio only.
    """
    if task_group is not None:
        await task_group.start(run)
    elif current_library() == "asyncio":
        await _start_asyncio_task(run)
    else:
        raise LocalProtocolError(
            "start() needs a task group to run the connection in under trio: "
            "use `async with LocalFirstClient(...) as client:` and start the "
            "strategy inside that block"
        )


class _FutureStatus:
    """anyio's ``TaskStatus`` for a plain asyncio task: completes a future."""

    def __init__(self, future: asyncio.Future[None]) -> None:
        self._future = future

    def started(self, value: object = None) -> None:
        if not self._future.done():
            self._future.set_result(None)


async def _start_asyncio_task(run: Run) -> None:
    loop = asyncio.get_running_loop()
    started: asyncio.Future[None] = loop.create_future()
    status: TaskStatus[None] = _FutureStatus(started)

    async def main() -> None:
        try:
            await run(task_status=status)
        except asyncio.CancelledError:
            started.cancel()
            raise
        except Exception as error:
            if started.done():
                raise
            started.set_exception(error)

    task = loop.create_task(main())
    _asyncio_tasks.add(task)
    task.add_done_callback(_asyncio_tasks.discard)
    try:
        await started
    except BaseException:
        task.cancel()
        raise
