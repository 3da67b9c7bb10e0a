"""A sync server running for a whole test module, a healthy client, and a raw peer.

:class:`LiveServer` runs ``lfws_adapters.asyncio.serve`` on SQLite in a
thread of its own, with token authentication and a per-repository
authorizer, plus a healthy client (the public client API) that edits a
document every few milliseconds the whole time. Tests talk to it with
blocking sockets (:class:`RawPeer`, :func:`http`), byte for byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

from lfws_adapters.asyncio import Client, connect, serve
from lfws_adapters.auth import Access, token_authenticator
from lfws_adapters.hub import ServerOptions, SyncHub
from lfws_adapters.sqlite_event_log import SqliteEventLog
from lfws_core.actions import ConnectionState
from lfws_core.client import ClientConfig
from lfws_core.codec import decode_message, encode_message
from lfws_core.events import event_to_json
from lfws_core.messages import Auth, AuthSuccess, Error, Events, Message, Ping, Pong
from lfws_core.server import ServerState
from lfws_core.ws import Closed, Opened, PongReceived, Rejected, TextMessage, WsClient, WsState

from ..e2e.hosts import RecordingHost

__all__ = [
    "ADMIN",
    "ORIGIN",
    "OPTIONS",
    "USER",
    "LiveServer",
    "RawPeer",
    "http",
]

TIMEOUT = 5.0
ORIGIN = "https://app.example"
ADMIN = "admin-token"
"""Reads and writes every repository."""
USER = "user-token"
"""Reads and writes ``todos``, only reads ``shared``, never touches ``secret``.

Nobody may touch ``explodes``: the authorizer raises for it.
"""
HEALTHY = "healthy"
"""The repository the healthy client edits."""

OPTIONS = ServerOptions(
    allowed_origins=frozenset({ORIGIN}),
    max_message_size=64 * 1024,
    max_batch_length=50,
    max_connections=24,
    handshake_timeout=0.5,
    auth_timeout=1.0,
    send_buffer_limit=256 * 1024,
    close_timeout=0.5,
    page_size=100,
)

_T = TypeVar("_T")
Snapshot = dict[str, list[dict[str, Any]]]


def authorize(principal: object, repository: str, access: Access) -> bool:
    """``token#0`` (ADMIN) may do anything; ``token#1`` (USER) what its docstring says."""
    if repository == "explodes":
        raise RuntimeError("the authorizer is down")
    if principal == "token#0":
        return True
    return repository == "todos" or (repository == "shared" and access is Access.READ)


class LiveServer:
    """The server under attack, and a healthy client that syncs throughout."""

    def __init__(self, database: Path) -> None:
        self.database = database
        self.port = 0
        self.host = RecordingHost("healthy")
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="lfws-live-server", daemon=True)
        self._loop: asyncio.AbstractEventLoop
        self._stop: asyncio.Event
        self.hub: SyncHub
        self.client: Client

    # --- life cycle (test thread) -------------------------------------------

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(TIMEOUT) or self._failure is not None:
            raise RuntimeError("the live server did not start") from self._failure

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(TIMEOUT * 3)
        assert not self._thread.is_alive(), "the live server did not stop"
        if self._failure is not None:
            raise self._failure

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to the test thread by stop()
            self._failure = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with serve(
            event_log=SqliteEventLog(self.database),
            port=0,
            options=OPTIONS,
            authenticator=token_authenticator([ADMIN, USER]),
            authorizer=authorize,
        ) as server:
            self.port = server.port
            self.hub = server.hub
            config = ClientConfig(
                url=server.url,
                token=ADMIN,
                repositories=(HEALTHY, "todos"),
                reconnect_delay=0.05,
                max_reconnect_delay=0.2,
            )
            async with connect(config, self.host) as client:
                self.client = client
                await client.wait_for_state(ConnectionState.LIVE, TIMEOUT)
                editing = asyncio.create_task(self._keep_editing())
                self._ready.set()
                await self._stop.wait()
                editing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await editing

    async def _keep_editing(self) -> None:
        while True:
            self.host.edit(self.client, HEALTHY, "ticker", at=time.time())
            await asyncio.sleep(0.02)

    # --- observations (test thread) -----------------------------------------

    def call(self, function: Callable[[], Awaitable[_T]]) -> _T:
        """Run ``function()`` on the server's loop and return its result."""
        future = asyncio.run_coroutine_threadsafe(_awaited(function), self._loop)
        return future.result(TIMEOUT)

    def on_loop(self, function: Callable[[], _T]) -> _T:
        """Run a plain function on the server's loop (hub state is not thread-safe)."""
        result: Future[_T] = Future()

        def run() -> None:
            try:
                result.set_result(function())
            except BaseException as exc:
                result.set_exception(exc)

        self._loop.call_soon_threadsafe(run)
        return result.result(TIMEOUT)

    def connections(self) -> int:
        return self.on_loop(lambda: len(self.hub.peers))

    def wait_for_connections(self, count: int, timeout: float = TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while self.connections() != count:
            assert time.monotonic() < deadline, f"{self.connections()} connections, not {count}"
            time.sleep(0.01)

    def is_authenticated(self, name: str) -> bool:
        """Whether the connection from ``name`` (``ip:port``) is open and authenticated."""

        def check() -> bool:
            for peer in self.hub.peers:
                session = peer.connection.session
                if peer.name == name and session is not None:
                    return session.state is ServerState.AUTHENTICATED
            return False

        return self.on_loop(check)

    def snapshot(self) -> Snapshot:
        """Every stored event but the healthy client's, per repository, as stored."""

        async def read() -> Snapshot:
            log = self.hub.event_log
            return {
                name: [
                    {**event_to_json(event), "serverSequence": event.server_sequence}
                    for event in await log.fetch(name, 0, 1_000_000)
                ]
                for name in await log.repositories()
                if name != HEALTHY
            }

        return self.call(read)

    def healthy_states(self) -> int:
        """How many state changes the healthy client has gone through."""
        return self.on_loop(lambda: len(self.host.states))

    def healthy_push_is_acked(self) -> None:
        """The healthy client pushes one more event; wait for its ack."""

        async def push_and_wait() -> None:
            event = self.host.edit(self.client, HEALTHY, "probe", at=time.time())
            deadline = time.monotonic() + TIMEOUT
            while event.event_id not in self.host.synced:
                assert time.monotonic() < deadline, "the healthy client's push was not acked"
                await asyncio.sleep(0.002)

        self.call(push_and_wait)


async def _awaited(function: Callable[[], Awaitable[_T]]) -> _T:
    return await function()


# --- raw peers -------------------------------------------------------------------


def http(
    port: int, request: bytes, *, timeout: float = TIMEOUT
) -> tuple[int, dict[str, str], bytes]:
    """Send raw ``request`` bytes; return the status, headers and body of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        response = _read_to_end(sock)
    head, _, body = response.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), headers, body


def _read_to_end(sock: socket.socket) -> bytes:
    chunks = []
    with contextlib.suppress(ConnectionResetError):
        while data := sock.recv(65536):
            chunks.append(data)
    return b"".join(chunks)


class RawPeer:
    """A WebSocket client on a blocking socket, with byte-level control.

    Everything the server sends is recorded: decoded messages, pongs, the
    close code and reason (or the HTTP refusal).
    """

    def __init__(
        self,
        port: int,
        *,
        origin: str | None = ORIGIN,
        target: str = "/sync",
        headers: Iterable[tuple[str, str]] = (),
        receive_buffer: int | None = None,
    ) -> None:
        self.sock = socket.socket()
        if receive_buffer is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.sock.settimeout(TIMEOUT)
        self.sock.connect(("127.0.0.1", port))
        self.ws = WsClient(
            host=f"127.0.0.1:{port}",
            random_bytes=os.urandom,
            target=target,
            origin=origin,
            headers=headers,
            max_message_size=16 << 20,
        )
        self.messages: list[Message] = []
        self.pongs = 0
        self.closed: Closed | None = None
        self.rejected: Rejected | None = None
        self.eof = False

    @property
    def name(self) -> str:
        """This peer as the server names it: its address."""
        host, port = self.sock.getsockname()[:2]
        return f"{host}:{port}"

    def __enter__(self) -> RawPeer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.sock.close()

    # --- the opening ----------------------------------------------------------

    def open(self) -> RawPeer:
        self.flush()
        self.read_until(lambda: self.ws.state is not WsState.CONNECTING)
        assert self.ws.state is WsState.OPEN, f"not opened: {self.rejected or self.closed}"
        return self

    def authenticate(self, token: str = USER) -> RawPeer:
        self.open()
        self.send(encode_message(Auth(token=token)))
        self.read_until(lambda: any(isinstance(m, AuthSuccess) for m in self.messages))
        return self

    # --- sending --------------------------------------------------------------

    def send(self, *texts: str) -> None:
        """Send ``texts`` as text messages, in one write."""
        for text in texts:
            self.ws.send_text(text)
        self.flush()

    def send_raw(self, data: bytes) -> None:
        """Write ``data`` as is (hand-made frames, say)."""
        self.sock.sendall(data)

    def flush(self) -> None:
        data = self.ws.data_to_send()
        if data:
            with contextlib.suppress(OSError):  # the server may have gone already
                self.sock.sendall(data)

    # --- reading --------------------------------------------------------------

    def read_until(self, done: Callable[[], bool], timeout: float = TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            if self.eof:
                raise AssertionError(f"the server closed first: {self.closed or self.rejected}")
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(1 << 20)
            except TimeoutError:
                raise AssertionError(f"nothing after {timeout} s: {self.messages[-3:]}") from None
            except ConnectionResetError:
                data = b""
            self.eof = not data
            for event in self.ws.receive_data(data):
                if isinstance(event, TextMessage):
                    self.messages.append(decode_message(event.text))
                elif isinstance(event, PongReceived):
                    self.pongs += 1
                elif isinstance(event, Closed):
                    self.closed = event
                elif isinstance(event, Rejected):
                    self.rejected = event
                elif not isinstance(event, Opened):
                    pass  # pings: answered by the WebSocket layer
            self.flush()

    def read_to_end(self) -> None:
        """Read until the server has closed the connection (and the transport)."""
        self.read_until(lambda: self.eof)

    def received(self) -> dict[str, str]:
        """The ids of the events received so far, with their repositories."""
        return {
            event.event_id: message.repository
            for message in self.messages
            if isinstance(message, Events)
            for event in message.events
        }

    def errors(self) -> list[str]:
        return [m.message for m in self.messages if isinstance(m, Error)]

    def expect_error(
        self, message: str, *, event_ids: tuple[str, ...] = (), code: str | None = None
    ) -> None:
        """Read until an ``error`` arrives; it must be exactly this one."""
        self.read_until(lambda: bool(self.errors()))
        expected = Error(message=message, event_ids=event_ids, code=code)
        assert [m for m in self.messages if isinstance(m, Error)] == [expected]

    def expect_close(self, code: int, reason: str | None = None) -> None:
        """Read to the end; the server must have closed with ``code`` (and ``reason``)."""
        self.read_to_end()
        assert self.closed is not None, "the transport ended without a close frame"
        assert self.closed.code == code, self.closed
        if reason is not None:
            assert self.closed.reason == reason, self.closed

    def still_open(self) -> None:
        """A ``ping`` is still answered with ``pong``: the connection lives on."""
        before = sum(isinstance(m, Pong) for m in self.messages)
        self.send(encode_message(Ping()))
        self.read_until(lambda: sum(isinstance(m, Pong) for m in self.messages) > before)
        assert self.closed is None

    def json(self, **fields: object) -> str:
        return json.dumps(fields, separators=(",", ":"))
