"""Clients and a server joined by in-memory transports, on a fake clock.

:class:`ClientServerPair` plays every adapter at once, at the byte level: each
:class:`~lfws_core.actions.OpenConnection` of a
:class:`~lfws_core.connection.ClientConnection` opens a :class:`ByteLink` to a
fresh :class:`~lfws_core.connection.ServerConnection`, bytes travel through it
without latency, and the server's requests are answered from one
:class:`~lfws_core.testing.MemoryEventLog`. Time moves only when a test says
so (:meth:`ClientServerPair.run`, :meth:`ClientServerPair.advance`), through
every deadline in order. Everything each side did is kept for assertions::

    pair = ClientServerPair()
    alice, bob = pair.add_client(), pair.add_client()
    pair.run()
    alice.push("todos", event)
    pair.run()
    assert bob.replica.knows(event.event_id)

The pair keeps the adapter's side of the contract: once a side asked for
``CloseTransport`` it hears nothing more from that transport, an end of input
(``receive_data(b"")``) follows the last bytes of a side that closed, and an
abrupt loss (:meth:`ClientServerPair.drop`) is reported to both sides with
``transport_lost``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeAlias, TypeVar

from ..actions import (
    Action,
    ApplyEvents,
    Authenticate,
    CloseTransport,
    EventsStored,
    FetchEvents,
    ListRepositories,
    MarkSynced,
    OpenConnection,
    SendBytes,
    StoreEvents,
    SyncCompleted,
)
from ..client import ClientConfig, ClientSession, PushResult
from ..codec import encode_message
from ..connection import ClientConnection, ServerConnection
from ..events import SyncEvent
from ..messages import Events
from ..server import ServerConfig, ServerSession
from ..ws import ServerConfig as WsServerConfig
from ..ws import encode_server_text_frame
from .memory_log import MemoryEventLog
from .prng import SplitMix64
from .replica import MemoryReplica

__all__ = ["DEFAULT_URL", "AuthVerdict", "ByteLink", "ClientServerPair", "PairClient"]

DEFAULT_URL = "ws://lfws.test/"
"""The URL of the clients :meth:`ClientServerPair.add_client` makes by default."""

AuthVerdict: TypeAlias = Callable[[Authenticate], str | None]
"""Decides an ``Authenticate``: ``None`` accepts it, a string is the refusal reason."""

_A = TypeVar("_A")
_Request: TypeAlias = Authenticate | StoreEvents | FetchEvents | ListRepositories


def _of(actions: list[Action], kind: type[_A]) -> list[_A]:
    return [action for action in actions if isinstance(action, kind)]


class _Pipe:
    """One direction of a transport: bytes in flight, then perhaps end of input."""

    __slots__ = ("chunks", "eof_delivered", "reader_closed", "writer_closed")

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.writer_closed = False
        self.reader_closed = False
        self.eof_delivered = False

    def write(self, data: bytes) -> None:
        assert not self.writer_closed, "bytes written to a transport after closing it"
        self.chunks.append(data)

    def take(self, *, stalled: bool) -> bytes | None:
        """Return what the reader receives now (``b""`` is end of input), if anything."""
        if self.reader_closed or stalled:
            self.chunks.clear()
            return None
        if self.chunks:
            data = b"".join(self.chunks)
            self.chunks.clear()
            return data
        if self.writer_closed and not self.eof_delivered:
            self.eof_delivered = True
            return b""
        return None

    def cut(self) -> None:
        self.chunks.clear()
        self.writer_closed = self.reader_closed = self.eof_delivered = True


class PairClient:
    """One client of a pair: its connection, its local store and what it did."""

    def __init__(self, pair: ClientServerPair, connection: ClientConnection) -> None:
        self._pair = pair
        self.connection = connection
        """The byte-level client connection under test."""
        self.replica = MemoryReplica()
        """The local store: ``ApplyEvents``, ``MarkSynced`` and ``SyncCompleted`` update it."""
        self.actions: list[Action] = []
        """Every action the connection emitted, in order."""
        self.links: list[ByteLink] = []
        """Every transport this client opened, the current one last."""

    @property
    def session(self) -> ClientSession:
        """The message-level session inside :attr:`connection`."""
        return self.connection.session

    @property
    def link(self) -> ByteLink | None:
        """The transport opened last, or ``None`` before the first one."""
        return self.links[-1] if self.links else None

    def actions_of(self, kind: type[_A]) -> list[_A]:
        """Return the emitted actions of type ``kind``, in order."""
        return _of(self.actions, kind)

    def push(self, repository: str, event: SyncEvent) -> PushResult:
        """Record a local change in the replica and push it (at the pair's ``now``)."""
        self.replica.record_local(repository, event)
        return self.session.push(repository, event, self._pair.now)


class ByteLink:
    """One transport between a client and the server connection it opened."""

    def __init__(self, client: PairClient, server: ServerConnection) -> None:
        self.client = client
        """The client at one end."""
        self.server = server
        """The server connection at the other end, made for this transport."""
        self.server_actions: list[Action] = []
        """Every action the server connection emitted, in order."""
        self.client_bytes: list[bytes] = []
        """Every ``SendBytes`` payload the client wrote here, in order."""
        self.server_bytes: list[bytes] = []
        """Every ``SendBytes`` payload the server wrote here, in order."""
        self.stalled = False
        """Half-open: bytes are lost both ways and neither side is told."""
        self._up = _Pipe()
        self._down = _Pipe()

    def actions_of(self, kind: type[_A]) -> list[_A]:
        """Return the server's emitted actions of type ``kind``, in order."""
        return _of(self.server_actions, kind)

    @property
    def closed(self) -> bool:
        """Whether both ends are done with the transport."""
        return self._up.reader_closed and self._down.reader_closed

    # --- the pair's side ------------------------------------------------------

    def _client_wrote(self, data: bytes) -> None:
        self.client_bytes.append(data)
        self._up.write(data)

    def _server_wrote(self, data: bytes) -> None:
        self.server_bytes.append(data)
        self._down.write(data)

    def _client_closed(self) -> None:
        self._up.writer_closed = True  # the server reads an end of input
        self._down.reader_closed = True

    def _server_closed(self) -> None:
        self._down.writer_closed = True
        self._up.reader_closed = True

    def _cut(self) -> None:
        self._up.cut()
        self._down.cut()

    def _transfer(self, now: float) -> bool:
        moved = False
        data = self._up.take(stalled=self.stalled)
        if data is not None:
            self.server.receive_data(data, now)
            moved = True
        data = self._down.take(stalled=self.stalled)
        if data is not None:
            self.client.connection.receive_data(data, now)
            moved = True
        return moved


class ClientServerPair:
    """Clients and one server (an event log) on in-memory transports and a fake clock.

    ``authenticate`` decides every ``Authenticate`` (all are accepted without
    it, the token becoming the principal); ``seed`` fixes the clients'
    randomness (jitter, nonces, masks). While :attr:`accepting` is false,
    connection attempts fail with ``transport_failed``.
    """

    def __init__(
        self,
        *,
        server_config: ServerConfig | None = None,
        ws_config: WsServerConfig | None = None,
        authenticate: AuthVerdict | None = None,
        seed: int = 0,
        now: float = 0.0,
    ) -> None:
        self.now = now
        """The fake clock."""
        self.log = MemoryEventLog()
        """The server's event log, shared by every server connection."""
        self.clients: list[PairClient] = []
        """Every client, in the order they were added."""
        self.links: list[ByteLink] = []
        """Every transport ever opened, in order."""
        self.accepting = True
        """Whether connection attempts succeed."""
        self._server_config = server_config
        self._ws_config = ws_config
        self._authenticate = authenticate
        self._seed = seed

    # --- setting up -----------------------------------------------------------

    def add_client(
        self,
        config: ClientConfig | None = None,
        *,
        cursors: Mapping[str, int] | None = None,
        start: bool = True,
    ) -> PairClient:
        """Add a client (started unless ``start`` is false); :meth:`run` lets it connect."""
        rng = SplitMix64(self._seed * 1_000_003 + len(self.clients))
        connection = ClientConnection(
            config or ClientConfig(url=DEFAULT_URL),
            random=rng.random,
            random_bytes=rng.bytes,
            cursors=cursors,
        )
        client = PairClient(self, connection)
        self.clients.append(client)
        if start:
            connection.session.start(self.now)
        return client

    # --- time -----------------------------------------------------------------

    def run(self, until: float | None = None) -> None:
        """Exchange everything due now; with ``until``, go on to that instant.

        Timers fire in time order on the way (each side at its own deadline),
        and everything they cause is exchanged before the clock moves on.
        """
        self._settle()
        if until is None:
            return
        if until < self.now:
            raise ValueError(f"the clock is at {self.now}; it cannot go back to {until}")
        while (deadline := self.next_deadline()) is not None and deadline <= until:
            self.now = max(self.now, deadline)
            self._fire_timers()
            self._settle()
        self.now = until

    def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` ahead, through every deadline on the way."""
        self.run(until=self.now + seconds)

    def next_deadline(self) -> float | None:
        """Return the earliest deadline of any side, if any."""
        deadlines = [client.connection.next_deadline() for client in self.clients]
        deadlines += [link.server.next_deadline() for link in self.links]
        return min((d for d in deadlines if d is not None), default=None)

    # --- faults ---------------------------------------------------------------

    def drop(self, client: PairClient) -> None:
        """Reset the client's transport: both sides hear ``transport_lost``, bytes are lost."""
        link = client.link
        assert link is not None and not link.closed, "the client has no open transport"
        link._cut()
        client.connection.transport_lost(self.now, "connection reset")
        link.server.transport_lost(self.now)

    def stall(self, client: PairClient) -> None:
        """Make the client's transport half-open: silent both ways, nobody told."""
        link = client.link
        assert link is not None, "the client has no transport"
        link.stalled = True

    # --- the adapters ---------------------------------------------------------

    def _settle(self) -> None:
        while self._step():
            pass

    def _step(self) -> bool:
        busy = False
        for client in self.clients:
            for action in client.connection.drain_actions(self.now):
                busy = True
                client.actions.append(action)
                self._client_action(client, action)
        for link in self.links:
            for server_action in link.server.drain_actions(self.now):
                busy = True
                link.server_actions.append(server_action)
                self._server_action(link, server_action)
        for link in self.links:
            busy = link._transfer(self.now) or busy
        return busy

    def _fire_timers(self) -> None:
        now = self.now
        for client in self.clients:
            deadline = client.connection.next_deadline()
            if deadline is not None and deadline <= now:
                client.connection.handle_timer(now)
        for link in self.links:
            deadline = link.server.next_deadline()
            if deadline is not None and deadline <= now:
                link.server.handle_timer(now)

    def _client_action(self, client: PairClient, action: Action) -> None:
        now = self.now
        connection = client.connection
        link = client.link
        match action:
            case SendBytes(data=data):
                assert link is not None, "bytes written before any transport was opened"
                link._client_wrote(data)
            case CloseTransport():
                assert link is not None, "CloseTransport before any transport was opened"
                link._client_closed()
            case OpenConnection():
                if not self.accepting:
                    connection.transport_failed(now, "connection refused")
                    return
                server = ServerConnection(self._server_config, self._ws_config)
                link = ByteLink(client, server)
                self.links.append(link)
                client.links.append(link)
                server.transport_made(now)
                connection.transport_made(now)
            case ApplyEvents(batch_id=batch_id, repository=repository, events=events):
                client.replica.apply_remote(repository, events)
                connection.session.events_applied(batch_id, now)
            case MarkSynced(repositories=repositories):
                for ids in repositories.values():
                    client.replica.mark_synced(ids)
            case SyncCompleted(repository=repository, cursor=cursor):
                client.replica.advance_cursor(repository, cursor)
            case _:
                pass  # facts for the test to read from client.actions

    def _server_action(self, link: ByteLink, action: Action) -> None:
        match action:
            case SendBytes(data=data):
                link._server_wrote(data)
            case CloseTransport():
                link._server_closed()
            case EventsStored(repository=repository, events=events):
                text = encode_message(Events(repository=repository, events=events))
                frame = encode_server_text_frame(text)
                for other in self.links:
                    if other is not link:
                        other.server.deliver(repository, events, self.now, text=text, frame=frame)
            case Authenticate() | StoreEvents() | FetchEvents() | ListRepositories():
                session = link.server.session
                assert session is not None, "a request without a session"
                self._answer(session, action)
            case _:
                pass  # HandshakeRejected, EventsConfirmed, ...: facts for the test

    def _answer(self, session: ServerSession, request: _Request) -> None:
        now = self.now
        match request:
            case Authenticate(request_id=request_id, token=token):
                refusal = None if self._authenticate is None else self._authenticate(request)
                if refusal is None:
                    session.auth_accepted(request_id, token, now)
                else:
                    session.auth_rejected(request_id, refusal, now)
            case StoreEvents(request_id=request_id, repository=repository, events=events):
                stored, duplicates = self.log.store(repository, events)
                session.events_stored(request_id, stored, duplicates, now)
            case FetchEvents(
                request_id=request_id, repository=repository, after_sequence=after, limit=limit
            ):
                session.events_fetched(request_id, self.log.fetch(repository, after, limit), now)
            case _:  # ListRepositories, the only request left
                session.repositories_listed(request.request_id, self.log.repositories(), now)
