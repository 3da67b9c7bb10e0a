"""Helpers for the end-to-end tests: waiting on conditions, raw HTTP and WebSocket peers."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from pathlib import Path
from typing import Any

import anyio

from lfws_adapters.event_log import EventLog, InMemoryEventLog
from lfws_adapters.sqlite_event_log import SqliteEventLog
from lfws_core.actions import ConnectionState
from lfws_core.client import ClientConfig
from lfws_core.codec import decode_message, encode_message
from lfws_core.events import SyncEvent
from lfws_core.messages import Auth, AuthSuccess, Events, Message
from lfws_core.server import ServerState
from lfws_core.testing import MemoryEventLog, MemoryReplica
from lfws_core.ws import Closed, TextMessage, WsClient, WsState

TIMEOUT = 5.0
"""The longest any condition is waited for (a failing test, not a slow one)."""

REPOSITORY = "todos"


class EventLogs:
    """Opens the server's event log; every open sees what earlier ones stored (restarts)."""

    def __init__(self, kind: str, path: Path) -> None:
        self.kind = kind
        self._path = path
        self._memory = MemoryEventLog()

    def open(self) -> EventLog:
        if self.kind == "sqlite":
            return SqliteEventLog(self._path)
        return InMemoryEventLog(self._memory)

    async def stored(self, repository: str = REPOSITORY) -> list[SyncEvent]:
        """Return every stored event of ``repository``, read through a fresh handle."""
        log = self.open()
        try:
            return await log.fetch(repository, 0, 1_000_000)
        finally:
            await log.aclose()


class GatedEventLog:
    """An event log whose named methods wait until :meth:`open` (to order things by hand)."""

    def __init__(self, log: EventLog, *gated: str) -> None:
        self._log = log
        self._gated = frozenset(gated)
        self._opened = anyio.Event()
        self.waiting = 0
        """How many gated calls have started (and wait, until :meth:`open`)."""

    def open(self) -> None:
        self._opened.set()

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._log, name)
        if name not in self._gated:
            return method

        async def gated(*args: Any, **kwargs: Any) -> Any:
            self.waiting += 1
            await self._opened.wait()
            return await method(*args, **kwargs)

        return gated


async def eventually(predicate: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    """Wait until ``predicate()`` holds; fail after ``timeout`` seconds."""
    deadline = anyio.current_time() + timeout
    while not predicate():
        if anyio.current_time() > deadline:
            raise AssertionError(f"not true within {timeout} s: {predicate.__qualname__}")
        await anyio.sleep(0.002)


def client_config(url: str, **changes: Any) -> ClientConfig:
    """A client configuration that reconnects fast."""
    fields: dict[str, Any] = {
        "url": url,
        "repositories": (REPOSITORY,),
        "reconnect_delay": 0.05,
        "max_reconnect_delay": 0.2,
    }
    fields.update(changes)
    return ClientConfig(**fields)


async def live(*clients: Any) -> None:
    for client in clients:
        await client.wait_for_state(ConnectionState.LIVE, TIMEOUT)


def documents(events: Sequence[SyncEvent], repository: str = REPOSITORY) -> dict[str, Any]:
    """Return the documents a replica holds after applying ``events``."""
    replica = MemoryReplica()
    replica.apply_remote(repository, events)
    return replica.documents(repository)


def peer_named(server: Any, name: str) -> bool:
    """Return whether the server still has a connection from ``name``."""
    return any(peer.name == name for peer in server.hub.peers)


def authenticated(server: Any, name: str) -> bool:
    """Return whether the connection from ``name`` is authenticated (not closing)."""
    return any(
        peer.name == name
        and peer.connection.session is not None
        and peer.connection.session.state is ServerState.AUTHENTICATED
        for peer in server.hub.peers
    )


async def http_get(port: int, path: str) -> tuple[int, bytes]:
    """Send one plain HTTP request; return the status and the body."""
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        response = b""
        with suppress(anyio.EndOfStream):
            while True:
                response += await stream.receive()
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


class RawClient:
    """A WebSocket client on a blocking socket that reads only when told to.

    Run its methods in a worker thread (``anyio.to_thread.run_sync``).
    """

    def __init__(self, port: int, *, receive_buffer: int | None = None, pause: float = 0.0) -> None:
        self.port = port
        self.pause = pause
        """Seconds to wait after each read: a slow reader."""
        self.sock = socket.socket()
        if receive_buffer is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.sock.settimeout(TIMEOUT)
        self.ws = WsClient(host=f"127.0.0.1:{port}", random_bytes=os.urandom, target="/sync")
        self.messages: list[Message] = []
        self.close_code: int | None = None

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.sock.close()

    @property
    def name(self) -> str:
        """This client as the server names it (its address)."""
        host, port = self.sock.getsockname()[:2]
        return f"{host}:{port}"

    def authenticate(self) -> None:
        self.sock.connect(("127.0.0.1", self.port))
        self._send()
        self._read_until(lambda: self.ws.state is WsState.OPEN)
        self.ws.send_text(encode_message(Auth(token="raw")))
        self._send()
        self._read_until(lambda: any(isinstance(m, AuthSuccess) for m in self.messages))

    def send_texts(self, *texts: str) -> None:
        """Send ``texts`` as messages in one ``sendall`` (so, usually, one read)."""
        for text in texts:
            self.ws.send_text(text)
        self._send()

    def read_until(self, done: Callable[[], bool]) -> None:
        self._read_until(done)

    def read_to_end(self) -> None:
        """Read everything until the server closes; then close the socket."""
        try:
            self._read_until(lambda: False)
        except ConnectionResetError:
            # After its close frame the server may cut the transport before
            # our answer arrives; before it, a reset is a real failure.
            if self.close_code is None:
                raise
        finally:
            self.sock.close()

    def events(self, repository: str = REPOSITORY) -> list[SyncEvent]:
        return [
            event
            for message in self.messages
            if isinstance(message, Events) and message.repository == repository
            for event in message.events
        ]

    def _send(self) -> None:
        with suppress(OSError):  # the server may be gone already
            self.sock.sendall(self.ws.data_to_send())

    def _read_until(self, done: Callable[[], bool]) -> None:
        while not done():
            data = self.sock.recv(65536)
            for event in self.ws.receive_data(data):
                if isinstance(event, TextMessage):
                    self.messages.append(decode_message(event.text))
                elif isinstance(event, Closed):
                    self.close_code = event.code
            self._send()
            if not data:
                return
            if self.pause:
                time.sleep(self.pause)
