"""An event log that several server nodes write to, and how it says so.

A server node broadcasts to its clients what they store. When other nodes
store into the same log (several ``lfws serve`` behind a load balancer on
one PostgreSQL), a node must also broadcast what *they* stored. An event log
tells the server it is shared by offering a :meth:`SharedEventLog.change_feed`:
the :class:`~lfws_adapters.hub.SyncHub` then follows that feed for its whole
life and fans out every event, its own and the other nodes', once and in
sequence order, whatever the runtime (see ``docs/deployment.md``).
:class:`~lfws_adapters.postgres_event_log.PostgresEventLog` is one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from types import TracebackType
from typing import Protocol, runtime_checkable

from .event_log import EventLog

__all__ = ["ChangeNotice", "ChangeSource", "SharedEventLog"]


class ChangeNotice(Protocol):
    """A repository holds committed events up to ``up_to_sequence``, all of them visible."""

    @property
    def repository(self) -> str:
        """The repository that moved."""
        ...

    @property
    def up_to_sequence(self) -> int:
        """Its highest committed sequence (every sequence below it is committed too)."""
        ...


class ChangeSource(Protocol):
    """A feed of :class:`ChangeNotice`, entered once and iterated for the life of a node.

    Entering it connects and learns where every repository stands
    (:attr:`cursors`); iterating yields what commits afterwards, and never
    raises for a lost connection (it reconnects and catches up itself).
    """

    @property
    def cursors(self) -> Mapping[str, int]:
        """The highest sequence known per repository (after entering: where the log stood)."""
        ...

    async def __aenter__(self) -> ChangeSource:
        """Connect and read where every repository stands."""
        ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Disconnect."""
        ...

    def __aiter__(self) -> AsyncIterator[ChangeNotice]:
        """Yield a notice each time repositories move."""
        ...


@runtime_checkable
class SharedEventLog(EventLog, Protocol):
    """An :class:`~lfws_adapters.event_log.EventLog` other nodes write to as well.

    Each call of :meth:`change_feed` returns a new, unentered feed.
    """

    def change_feed(self) -> ChangeSource:
        """Return a feed of what commits to this log from now on, from any node."""
        ...

    async def stores_returned(self, repository: str) -> None:
        """Return once every store into ``repository`` that started before the call returned."""
        ...
