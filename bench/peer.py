"""The peer: a minimal Dart-protocol sync server on the `websockets` library.

It speaks what the Dart reference server speaks (``auth_success``, one
``ack`` per push, ``events`` pages then ``sync_complete``, broadcasts to the
other authenticated clients with :func:`websockets.asyncio.server.broadcast`)
and does no more: no validation, no limits, no authorisation. It is the
"hand-written server on the popular library" an lfws server is measured
against. Compression is off on both ends (lfws has none), so the peer pays
for nothing lfws does not.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Protocol

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed

from bench.codec import dumps, dumps_text, loads
from bench.fixtures import TOKEN

PAGE_SIZE = 500
"""Events per ``events`` message during catch-up (the lfws server's default too)."""

AUTH_SUCCESS = dumps_text({"type": "auth_success"})


class PeerStore(Protocol):
    """Where the peer keeps events: dedupe by id, a sequence per repository."""

    def store(self, repository: str, event: dict[str, Any]) -> dict[str, Any] | None:
        """Store ``event``; return it with its ``serverSequence``, or ``None`` if known."""
        ...

    def fetch(self, repository: str, after: int, limit: int) -> list[dict[str, Any]]:
        """Return up to ``limit`` events after sequence ``after``."""
        ...

    def close(self) -> None:
        """Release the store."""
        ...


class MemoryStore:
    """Events in lists, ids in sets."""

    def __init__(self) -> None:
        self._events: dict[str, list[dict[str, Any]]] = {}
        self._ids: dict[str, set[str]] = {}

    def store(self, repository: str, event: dict[str, Any]) -> dict[str, Any] | None:
        ids = self._ids.setdefault(repository, set())
        event_id = event["_event_id"]
        if event_id in ids:
            return None
        ids.add(event_id)
        events = self._events.setdefault(repository, [])
        stored = {**event, "serverSequence": len(events) + 1}
        events.append(stored)
        return stored

    def fetch(self, repository: str, after: int, limit: int) -> list[dict[str, Any]]:
        return self._events.get(repository, [])[max(after, 0) : max(after, 0) + limit]

    def close(self) -> None:
        pass


class SqliteStore:
    """One SQLite file, WAL with ``synchronous=NORMAL`` and one transaction per push (as lfws)."""

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS events (repository TEXT NOT NULL,"
            " sequence INTEGER NOT NULL, event_id TEXT NOT NULL, payload TEXT NOT NULL,"
            " PRIMARY KEY (repository, sequence), UNIQUE (repository, event_id))"
        )
        self._last: dict[str, int] = {}

    def store(self, repository: str, event: dict[str, Any]) -> dict[str, Any] | None:
        sequence = self._last.get(repository, 0) + 1
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        inserted = db.execute(
            "INSERT INTO events VALUES (?, ?, ?, ?) ON CONFLICT (repository, event_id) DO NOTHING",
            (repository, sequence, event["_event_id"], dumps_text(event)),
        ).rowcount
        db.execute("COMMIT")
        if not inserted:
            return None
        self._last[repository] = sequence
        return {**event, "serverSequence": sequence}

    def fetch(self, repository: str, after: int, limit: int) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT sequence, payload FROM events WHERE repository = ? AND sequence > ?"
            " ORDER BY sequence LIMIT ?",
            (repository, after, limit),
        )
        return [{**loads(payload), "serverSequence": sequence} for sequence, payload in rows]

    def close(self) -> None:
        self._db.close()


class PeerServer:
    """The Dart protocol over `websockets`: one handler coroutine per connection."""

    def __init__(self, store: PeerStore) -> None:
        self.store = store
        self.authenticated: set[ServerConnection] = set()

    async def handler(self, websocket: ServerConnection) -> None:
        try:
            async for raw in websocket:
                await self._handle(websocket, loads(raw))
        except ConnectionClosed:
            pass  # a client that goes away without a close frame is no error here
        finally:
            self.authenticated.discard(websocket)

    async def _handle(self, websocket: ServerConnection, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "push_event":
            repository, event = message["repository"], message["event"]
            stored = self.store.store(repository, event)
            event_id = event["_event_id"]
            ack = {"type": "ack", "eventIds": [event_id], "repositories": {repository: [event_id]}}
            await websocket.send(dumps_text(ack))
            if stored is not None and len(self.authenticated) > 1:
                update = dumps({"type": "events", "repository": repository, "events": [stored]})
                others = (other for other in self.authenticated if other is not websocket)
                broadcast(others, update, text=True)
        elif kind == "auth":
            self.authenticated.add(websocket)
            await websocket.send(AUTH_SUCCESS)
        elif kind == "request_events":
            repository = message["repository"]
            after = message.get("afterSequence") or 0
            while page := self.store.fetch(repository, after, PAGE_SIZE):
                await websocket.send(
                    dumps_text({"type": "events", "repository": repository, "events": page})
                )
                after = page[-1]["serverSequence"]
            await websocket.send(dumps_text({"type": "sync_complete", "repository": repository}))
        elif kind == "ping":
            await websocket.send(dumps_text({"type": "pong"}))


@asynccontextmanager
async def serve_peer(store: PeerStore) -> AsyncIterator[tuple[PeerServer, int]]:
    """Run a :class:`PeerServer` on 127.0.0.1 (a free port); yield it and its port."""
    peer = PeerServer(store)
    try:
        async with serve(peer.handler, "127.0.0.1", 0, compression=None) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            yield peer, port
    finally:
        store.close()


@asynccontextmanager
async def peer_client(port: int) -> AsyncIterator[ClientConnection]:
    """A `websockets` client, authenticated, as a Dart-protocol app would hold it."""
    async with ws_connect(
        f"ws://127.0.0.1:{port}/sync", compression=None, proxy=None, max_size=None
    ) as websocket:
        await websocket.send(dumps_text({"type": "auth", "token": TOKEN}))
        await websocket.recv()  # auth_success
        yield websocket
