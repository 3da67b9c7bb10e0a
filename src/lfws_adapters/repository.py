"""A repository: one named collection of JSON documents, kept locally and synced.

Every write is an event (the Dart ``LocalFirstEvent``): :meth:`Repository.upsert`
and :meth:`Repository.delete` record one in the local store, which merges it
into the document at once and keeps it in the outbox, tell the watchers, and
hand it to every sync strategy. Reads never touch the network.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from lfws_core.errors import LocalProtocolError
from lfws_core.events import JsonValue, Operation, SyncEvent

from ._broadcast import Broadcast, Subscription
from .local_storage import Change

if TYPE_CHECKING:
    from .local_first_client import LocalFirstClient

__all__ = ["Change", "Repository"]

WATCH_BUFFER = 256
"""How many changes a watcher may fall behind before its oldest are dropped."""


def _check_name(what: str, value: object) -> None:
    if not isinstance(value, str) or not value:
        raise LocalProtocolError(f"{what} must be a non-empty string, not {value!r}")


class Repository:
    """A named collection of JSON documents (dicts), each identified by its ``id_field``.

    Create it, pass it to :class:`~lfws_adapters.local_first_client.LocalFirstClient`,
    and use it once the client is initialized. A document is a JSON object
    whose ``id_field`` holds a non-empty string id. Reads return fresh copies.
    """

    def __init__(self, name: str, id_field: str = "id") -> None:
        _check_name("a repository name", name)
        _check_name("id_field", id_field)
        self._name = name
        self._id_field = id_field
        self._client: LocalFirstClient | None = None
        self._changes = Broadcast[Change](f"repository {name!r}")

    def __repr__(self) -> str:
        return f"Repository({self._name!r}, id_field={self._id_field!r})"

    @property
    def name(self) -> str:
        """The repository's name, as the server knows it."""
        return self._name

    @property
    def id_field(self) -> str:
        """The document field holding its id."""
        return self._id_field

    # --- writes ------------------------------------------------------------------

    async def upsert(self, document: Mapping[str, JsonValue]) -> SyncEvent:
        """Insert or replace a document; return the event that records it.

        The event is an insert if the document is absent locally, else an
        update; its data is the whole document. Raises
        :class:`~lfws_core.errors.LocalProtocolError` if the document has no
        string id or is not JSON.
        """
        client = self._bound()
        if not isinstance(document, Mapping):
            raise LocalProtocolError(f"a document must be a mapping, not {type(document).__name__}")
        data_id = document.get(self._id_field)
        if not isinstance(data_id, str) or not data_id:
            raise LocalProtocolError(
                f"the document's {self._id_field!r} must be a non-empty string, not {data_id!r}"
            )
        exists = await client.local_storage.get(self._name, data_id) is not None
        operation = Operation.UPDATE if exists else Operation.INSERT
        event = client.new_event(operation, data_id, dict(document))
        await client.record_local(self._name, event)
        return event

    async def delete(self, id: str) -> SyncEvent | None:
        """Delete a document (a tombstone); return the event, or ``None`` if it is absent."""
        client = self._bound()
        _check_name("a document id", id)
        if await client.local_storage.get(self._name, id) is None:
            return None
        event = client.new_event(Operation.DELETE, id, None)
        await client.record_local(self._name, event)
        return event

    # --- reads -------------------------------------------------------------------

    async def get(self, id: str) -> dict[str, JsonValue] | None:
        """Return the document with this id, or ``None`` if it is absent or deleted."""
        return await self._bound().local_storage.get(self._name, id)

    async def all(self) -> list[dict[str, JsonValue]]:
        """Return every document, ordered by id."""
        return await self._bound().local_storage.all(self._name)

    async def query(
        self, where: Mapping[str, JsonValue] | None = None, **equals: JsonValue
    ) -> list[dict[str, JsonValue]]:
        """Return the documents whose top-level fields equal the given values, ordered by id.

        ``todos.query(done=False)`` and ``todos.query(where={"done": False})``
        are the same (a field named ``where`` needs the mapping); values
        compare as JSON (``True`` is not ``1``).
        """
        conditions = {**(where or {}), **equals}
        return await self._bound().local_storage.query(self._name, conditions)

    # --- changes -----------------------------------------------------------------

    def watch(self, *, buffer: int = WATCH_BUFFER) -> Subscription[Change]:
        """Return an async iterator of the changes from now on, local and remote.

        Each watcher has its own bounded buffer: one that falls ``buffer``
        changes behind loses the oldest (and the sync never waits for it).
        Iteration ends when the client is disposed; leave earlier with
        ``async with repository.watch() as changes:`` or ``aclose()``.
        """
        return self._changes.subscribe(buffer)

    # --- for the client ----------------------------------------------------------

    def _bind(self, client: LocalFirstClient) -> None:
        if self._client is not None and self._client is not client:
            raise LocalProtocolError(f"{self!r} already belongs to another LocalFirstClient")
        self._client = client

    def _notify(self, change: Change) -> None:
        self._changes.publish(change)

    def _close(self) -> None:
        self._changes.close()

    def _bound(self) -> LocalFirstClient:
        if self._client is None:
            raise LocalProtocolError(
                f"{self!r} is not in use yet: pass it to LocalFirstClient(repositories=[...]) "
                "and await client.initialize()"
            )
        return self._client
