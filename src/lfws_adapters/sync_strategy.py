"""The seam between a :class:`~lfws_adapters.local_first_client.LocalFirstClient` and its syncs.

A sync strategy (the Dart ``DataSyncStrategy``) moves events between the
local store and somewhere else; :class:`~lfws_adapters.websocket_strategy.WebSocketSyncStrategy`
is the one lfws ships. The client attaches it on ``initialize()``, offers it
every local event, and disposes of it with itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from lfws_core.client import PushResult
from lfws_core.events import SyncEvent

if TYPE_CHECKING:
    from .local_first_client import LocalFirstClient

__all__ = ["PushResult", "SyncStrategy"]


class SyncStrategy(Protocol):
    """What a :class:`~lfws_adapters.local_first_client.LocalFirstClient` needs of a strategy."""

    def attach(self, client: LocalFirstClient) -> None:
        """Bind to ``client`` (its store and repositories); called by ``initialize()``."""
        ...

    async def start(self) -> None:
        """Begin syncing in the background; return at once."""
        ...

    async def stop(self) -> None:
        """Stop syncing (it may start again); idempotent."""
        ...

    async def push(self, repository: str, event: SyncEvent) -> PushResult:
        """Offer a local event, already recorded in the local store (the Dart ``onPushToRemote``).

        ``SENT`` and ``QUEUED`` are the Dart ``SyncStatus.pending``; ``FAILED``
        means it stays in the outbox for a later attempt.
        """
        ...

    async def dispose(self) -> None:
        """Stop for good; idempotent."""
        ...
