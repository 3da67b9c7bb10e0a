"""lfws_adapters: runtimes that wire :mod:`lfws_core` to sockets, timers and stores.

The names an app needs are here: the local-first client API (a port of the
Dart ``local_first`` / ``local_first_websocket`` packages) and its stores.
Importing this package imports neither trio nor any optional dependency.
"""

from __future__ import annotations

from .auth import AuthCredentials
from .blocking import BlockingClient
from .local_first_client import LocalFirstClient
from .local_storage import Change, InMemoryLocalFirstStorage, SyncStatus
from .repository import Repository
from .sqlite_local_storage import SqliteLocalFirstStorage
from .websocket_strategy import WebSocketSyncStrategy

__all__ = [
    "AuthCredentials",
    "BlockingClient",
    "Change",
    "InMemoryLocalFirstStorage",
    "LocalFirstClient",
    "Repository",
    "SqliteLocalFirstStorage",
    "SyncStatus",
    "WebSocketSyncStrategy",
]
