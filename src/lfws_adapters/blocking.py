"""A blocking facade over :class:`~lfws_adapters.local_first_client.LocalFirstClient`.

For code without an event loop (scripts, Flask or Django views, a REPL): the
client runs on an event loop in a background thread (an anyio blocking
portal), and every method here blocks until that loop has done the work::

    with BlockingClient(repositories=[todos], local_storage=storage,
                        sync_strategies=[ws]) as client:
        client.start()
        client.upsert("todos", {"id": "a1", "title": "buy milk"})
        print(client.all("todos"))

Watching changes and connection states stays async (use the portal, or the
async client).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterable, Mapping
from contextlib import AbstractContextManager, ExitStack
from types import TracebackType
from typing import Any, Literal, TypeVar

from anyio.from_thread import BlockingPortal, start_blocking_portal

from lfws_core.errors import LocalProtocolError
from lfws_core.events import JsonValue, SyncEvent

from .local_first_client import LocalFirstClient
from .local_storage import LocalFirstStorage
from .repository import Repository
from .sync_strategy import SyncStrategy

__all__ = ["BlockingClient"]

T = TypeVar("T")


class BlockingClient:
    """A :class:`~lfws_adapters.local_first_client.LocalFirstClient` with blocking methods.

    Opened by ``with`` (or :meth:`open`), closed by :meth:`close`; the event
    loop runs on ``backend`` (``"asyncio"`` or ``"trio"``) in its own thread.
    A repository is named by its name or given as the object.
    """

    def __init__(
        self,
        repositories: Iterable[Repository],
        local_storage: LocalFirstStorage,
        sync_strategies: Iterable[SyncStrategy] = (),
        *,
        backend: Literal["asyncio", "trio"] = "asyncio",
    ) -> None:
        self.client = LocalFirstClient(repositories, local_storage, sync_strategies)
        """The async client the facade drives (use it through :attr:`portal`)."""
        self._backend = backend
        self._stack: ExitStack | None = None
        self._portal: BlockingPortal | None = None

    @property
    def portal(self) -> BlockingPortal:
        """The portal into the client's event loop (``portal.call(async_function, ...)``)."""
        if self._portal is None:
            raise LocalProtocolError("the BlockingClient is not open")
        return self._portal

    def open(self) -> None:
        """Start the event loop thread and initialize the client; idempotent."""
        if self._stack is not None:
            return
        with ExitStack() as stack:
            portal = stack.enter_context(start_blocking_portal(self._backend))
            client: AbstractContextManager[LocalFirstClient] = portal.wrap_async_context_manager(
                self.client
            )
            stack.enter_context(client)
            self._portal, self._stack = portal, stack.pop_all()

    def close(self) -> None:
        """Stop the strategies, dispose of the client and end the thread; idempotent."""
        stack, self._stack = self._stack, None
        if stack is not None:
            stack.close()
        self._portal = None

    def __enter__(self) -> BlockingClient:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # --- sync --------------------------------------------------------------------

    def start(self) -> None:
        """Start every sync strategy (they connect in the background)."""
        for strategy in self.client.sync_strategies:
            self._call(strategy.start)

    def stop(self) -> None:
        """Stop every sync strategy; unsent events wait in the outbox."""
        for strategy in self.client.sync_strategies:
            self._call(strategy.stop)

    # --- documents ---------------------------------------------------------------

    def upsert(self, repository: str | Repository, document: Mapping[str, JsonValue]) -> SyncEvent:
        """Insert or replace a document (see :meth:`Repository.upsert`)."""
        return self._call(self._repository(repository).upsert, document)

    def delete(self, repository: str | Repository, id: str) -> SyncEvent | None:
        """Delete a document (see :meth:`Repository.delete`)."""
        return self._call(self._repository(repository).delete, id)

    def get(self, repository: str | Repository, id: str) -> dict[str, JsonValue] | None:
        """Return a document, or ``None``."""
        return self._call(self._repository(repository).get, id)

    def all(self, repository: str | Repository) -> list[dict[str, JsonValue]]:
        """Return every document of a repository, ordered by id."""
        return self._call(self._repository(repository).all)

    def query(
        self,
        repository: str | Repository,
        where: Mapping[str, JsonValue] | None = None,
        **equals: JsonValue,
    ) -> list[dict[str, JsonValue]]:
        """Return the documents whose fields equal these values (see :meth:`Repository.query`)."""
        found = self._repository(repository)
        return self._call(lambda: found.query(where, **equals))

    # --- plumbing ----------------------------------------------------------------

    def _repository(self, repository: str | Repository) -> Repository:
        return (
            repository if isinstance(repository, Repository) else self.client.repository(repository)
        )

    def _call(self, function: Callable[..., Coroutine[Any, Any, T]], *args: object) -> T:
        result: T = self.portal.call(function, *args)
        return result
