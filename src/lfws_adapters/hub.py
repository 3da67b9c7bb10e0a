"""The sync server's shared logic: connections, storage, fan-out, health.

A :class:`SyncHub` owns the event log, the authenticator and authorizer,
and every live connection (a :class:`Peer`, one per transport). A runtime
adapter accepts transports and calls :meth:`SyncHub.connect`, then feeds the
peer bytes (:meth:`Peer.data_received`) and the end of the transport
(:meth:`Peer.connection_lost`). Everything else happens here, identically
for every runtime: the core's actions are carried out, stores and callbacks
are awaited in background tasks (a store into an embedded log, which never
waits, runs at once instead), broadcasts are framed once and the same
bytes written to every connection, and a connection whose send buffer passes
the limit is closed (1013) so that it resumes from its cursor. Catch-up is
paced instead: the next page is fetched only once the transport has handed
the previous ones to the OS (:meth:`~lfws_adapters.runtime.Link.drained`),
so a client that reads slowly is served at its pace, not dropped.
"""

from __future__ import annotations

import enum
import json
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import anyio

from lfws_core.actions import (
    Action,
    Authenticate,
    CloseTransport,
    EventsConfirmed,
    EventsStored,
    FetchEvents,
    HandshakeRejected,
    HttpRequestReceived,
    ListRepositories,
    OversizedEventSent,
    ProtocolErrorReported,
    SendBytes,
    StoreEvents,
)
from lfws_core.close_codes import CloseCode
from lfws_core.connection import CLOSE_TIMEOUT, ServerConnection
from lfws_core.events import SyncEvent
from lfws_core.server import ServerConfig, encode_events
from lfws_core.ws import PerMessageDeflate, encode_server_text_frame
from lfws_core.ws import ServerConfig as WsServerConfig

from ._relay import Relay
from .auth import (
    Access,
    AuthenticationRefused,
    Authenticator,
    Authorizer,
    Credentials,
    allow_anyone,
    resolve,
)
from .event_log import EventLog, StoreError, StoreResult, immediate_store
from .runtime import Link, Loop, TimerHandle
from .shared_event_log import SharedEventLog

__all__ = ["Peer", "ServerBase", "ServerOptions", "SyncHub"]

logger = logging.getLogger("lfws.server")

_A = TypeVar("_A")


@dataclass(frozen=True, kw_only=True, slots=True)
class ServerOptions:
    """The server's limits and timeouts; every one has a ``lfws serve`` flag."""

    path: str = "/sync"
    """The WebSocket endpoint; other paths get 404 (``/healthz`` excepted)."""
    allowed_origins: frozenset[str] | None = None
    """Exact ``Origin`` values allowed (403 otherwise); ``None`` allows any."""
    max_message_size: int = 1 << 20
    """Largest message in bytes; a larger one closes the connection with 1009.

    Also the largest ``events`` message sent (a larger page is split): keep
    it at most the clients' own limit.
    """
    max_batch_length: int = 1000
    """Most events in one ``push_events_batch``."""
    max_connections: int = 10_000
    """Connections beyond this are refused (HTTP 503)."""
    handshake_timeout: float = 10.0
    """Seconds for the WebSocket handshake (slow clients are dropped)."""
    auth_timeout: float = 10.0
    """Seconds for a connection to authenticate (close 1008 otherwise)."""
    send_buffer_limit: int = 4 << 20
    """Bytes queued for one client before it is dropped as too slow (1013).

    Catch-up is paced below it; keep it above the bytes of one page.
    """
    ping_interval: float | None = 25.0
    """Seconds between server ``ping`` messages; ``None`` disables them."""
    ping_timeout: float = 10.0
    """Seconds to hear anything after a ``ping`` before closing with 1011."""
    page_size: int = 500
    """Events per ``events`` message during catch-up."""
    close_timeout: float = CLOSE_TIMEOUT
    """Seconds to wait for a client's answer to a close frame before dropping it."""
    shutdown_timeout: float = 5.0
    """Seconds a graceful shutdown waits for clients to go before cutting them off."""
    compression: bool = False
    """Accept permessage-deflate (RFC 7692) from clients that offer it.

    Off by default: it costs CPU and about 40 KB per compressing connection,
    and broadcasts are then compressed per connection instead of framed
    once. A compressed message inflates up to ``max_message_size`` (1009 beyond).
    """

    def session_config(self) -> ServerConfig:
        """Return the core session configuration these options imply."""
        return ServerConfig(
            max_batch_length=self.max_batch_length,
            page_size=self.page_size,
            max_message_size=self.max_message_size,
            auth_timeout=self.auth_timeout,
            ping_interval=self.ping_interval,
            ping_timeout=self.ping_timeout,
        )

    def ws_config(self) -> WsServerConfig:
        """Return the WebSocket layer configuration these options imply."""
        return WsServerConfig(
            path=self.path,
            allowed_origins=self.allowed_origins,
            allow_missing_origin=True,
            max_message_size=self.max_message_size,
            compression=PerMessageDeflate() if self.compression else None,
        )


class _Health(enum.Enum):
    OK = "ok"
    STOPPING = "stopping"


class SyncHub:
    """Every connection of one server, the event log behind them, and fan-out."""

    def __init__(
        self,
        event_log: EventLog,
        loop: Loop,
        *,
        options: ServerOptions | None = None,
        authenticator: Authenticator | None = None,
        authorizer: Authorizer | None = None,
    ) -> None:
        self.event_log = event_log
        self.loop = loop
        self.options = options or ServerOptions()
        self.authenticator: Authenticator = authenticator or allow_anyone
        self.authorizer = authorizer
        self._session_config = self.options.session_config()
        self._ws_config = self.options.ws_config()
        self._peers: set[Peer] = set()
        self._health = _Health.OK
        # Broadcast frames go straight to each link (Peer._deliver_now) unless
        # connections may compress: one that negotiated permessage-deflate
        # compresses its own copy, which its ServerConnection decides.
        self._frames_shared = not self.options.compression
        # Stores run at once, without a task, when nothing in them can wait:
        # an embedded log (synchronous underneath) and no authorizer (which
        # may be async). The ack then leaves with the reply to the read.
        self._store_now: Callable[[str, tuple[SyncEvent, ...]], StoreResult] | None = (
            immediate_store(event_log) if authorizer is None else None
        )
        # A log other nodes write to: their events are broadcast here too, and
        # every broadcast waits for the sequences below it (see _relay).
        self._relay: Relay | None = None
        if isinstance(event_log, SharedEventLog):
            self._relay = Relay(self, event_log, page_size=self.options.page_size)
            self.authenticator = self._relay.gate(self.authenticator)
            loop.spawn(self._relay.run)

    @property
    def peers(self) -> frozenset[Peer]:
        """The live connections."""
        return frozenset(self._peers)

    def connect(self, link: Link, name: str) -> Peer:
        """Register a new transport; ``name`` (e.g. the peer address) is for logs."""
        peer = Peer(self, link, name)
        if len(self._peers) >= self.options.max_connections or self._health is not _Health.OK:
            logger.warning("%s refused: %d connections", name, len(self._peers))
            link.write(
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                b"Connection: close\r\n\r\n"
            )
            link.close()
            peer.closed = True
            return peer
        self._peers.add(peer)
        logger.info("%s connected", name)
        peer.start()
        return peer

    def events_stored(self, origin: Peer, repository: str, events: tuple[SyncEvent, ...]) -> None:
        """Fan out what ``origin`` stored: at once, or in sequence order on a shared log."""
        if self._relay is None:
            self.broadcast(origin, repository, events)
        else:
            self._relay.stored(origin, repository, events)

    def broadcast(
        self, origin: Peer | None, repository: str, events: tuple[SyncEvent, ...]
    ) -> None:
        """Send stored events to every connection but ``origin``, framed once.

        A batch too big for one message of ``max_message_size`` goes out as
        several, as a catch-up page does.
        """
        if len(self._peers) <= (origin in self._peers):
            # Nobody else to send to: skip the encoding and framing (a lone
            # writer's every push would otherwise pay for a message nobody gets).
            return
        limit = self.options.max_message_size
        for message in encode_events(repository, events, limit):
            if message.oversized:
                logger.warning(
                    "event %s of %s is over the %d-byte message limit; sent anyway",
                    message.events[0].event_id,
                    repository,
                    limit,
                )
            frame = encode_server_text_frame(message.text)
            for peer in self._peers:
                if peer is not origin:
                    peer.deliver(repository, message.events, message.text, frame)

    def shutdown(self) -> None:
        """Close every connection with 1001 (going away) and refuse new ones."""
        self._health = _Health.STOPPING
        for peer in list(self._peers):
            peer.close(CloseCode.GOING_AWAY, "server shutting down")

    def endpoint_url(self, host: str, port: int, *, secure: bool) -> str:
        """Return the URL clients use to reach this hub listening on ``host``:``port``."""
        authority = f"[{host}]" if ":" in host else host
        return f"{'wss' if secure else 'ws'}://{authority}:{port}{self.options.path}"

    async def health(self) -> dict[str, object]:
        """Return the ``/healthz`` document: status, connections, repositories."""
        stats = await self.event_log.stats()
        return {
            "status": self._health.value,
            "connections": len(self._peers),
            "repositories": dict(stats),
        }

    async def allowed(self, principal: object, repository: str, access: Access) -> bool:
        """Ask the authorizer (everything is allowed without one)."""
        if self.authorizer is None:
            return True
        return bool(await resolve(self.authorizer(principal, repository, access)))

    def _forget(self, peer: Peer) -> None:
        self._peers.discard(peer)


class ServerBase:
    """The runtime-neutral part of every adapter's ``Server``: the hub and its address."""

    def __init__(self, hub: SyncHub, host: str, port: int, *, secure: bool) -> None:
        self.hub = hub
        """The connections, the event log and fan-out."""
        self.host = host
        """The address listened on."""
        self.port = port
        """The port listened on (the real one, also when 0 was asked for)."""
        self.url = hub.endpoint_url(host, port, secure=secure)
        """The URL clients connect to."""

    async def serve_forever(self) -> None:
        """Serve until cancelled."""
        await anyio.sleep_forever()


class Peer:
    """One client connection: a :class:`ServerConnection` and its transport."""

    def __init__(self, hub: SyncHub, link: Link, name: str) -> None:
        self.hub = hub
        self.link = link
        self.name = name
        self.connection = ServerConnection(
            hub._session_config,
            hub._ws_config,
            handshake_timeout=hub.options.handshake_timeout,
            close_timeout=hub.options.close_timeout,
        )
        self.closed = False
        self._timer: TimerHandle | None = None
        self._timer_at: float | None = None
        self._too_slow = False
        self._close_reason = "connection lost"
        # Deliveries waiting for an authorizer's answer, kept in order; made
        # on first use (an empty deque costs 760 bytes per idle connection).
        self._deliveries: deque[tuple[str, tuple[SyncEvent, ...], str, bytes]] | None = None
        self._delivering = False
        self._can_read: dict[str, bool] = {}
        # Stores waiting for the one in progress, kept in arrival order: a
        # list, not a deque, since it is short and most connections never
        # queue a store (an empty list costs 56 bytes, a deque 760).
        self._stores: list[StoreEvents] = []
        self._storing = False

    # --- the runtime's side ----------------------------------------------

    def start(self) -> None:
        """Start the handshake timeout (called by :meth:`SyncHub.connect`)."""
        self.connection.transport_made(self.hub.loop.time())
        self._run()

    def data_received(self, data: bytes) -> None:
        """Feed bytes read from the transport."""
        if not self.closed:
            now = self.hub.loop.time()
            self.connection.receive_data(data, now)
            self._run(now)

    def connection_lost(self, reason: str = "connection lost") -> None:
        """Report the transport closed or failed."""
        if self.closed:
            return
        self._close_reason = reason
        self.connection.transport_lost(self.hub.loop.time())
        self._finish()

    # --- commands -------------------------------------------------------

    def close(self, code: int, reason: str) -> None:
        """Close this connection with ``code`` (the close handshake, then the transport)."""
        session = self.connection.session
        if self.closed:
            return
        if session is None:
            self.link.close()
            self._finish()
            return
        self._close_reason = f"{code} {reason}"
        session.close(code, reason, self.hub.loop.time())
        self._run()

    def deliver(
        self, repository: str, events: tuple[SyncEvent, ...], text: str, frame: bytes
    ) -> None:
        """Send a broadcast: ``events`` encoded as ``text``, framed once for all as ``frame``.

        With an authorizer, read access is checked first (once per
        repository and authentication), in order with the other broadcasts.
        """
        if self.closed:
            return
        if self.hub.authorizer is None:
            self._deliver_now(repository, events, text, frame)
            return
        allowed = self._can_read.get(repository)
        if allowed and not self._deliveries:
            self._deliver_now(repository, events, text, frame)
        elif allowed is None or self._deliveries:
            if self._deliveries is None:
                self._deliveries = deque()
            self._deliveries.append((repository, events, text, frame))
            if not self._delivering:
                self._delivering = True
                self.hub.loop.spawn(self._deliver_in_order)

    # --- internals ------------------------------------------------------

    def _deliver_now(
        self, repository: str, events: tuple[SyncEvent, ...], text: str, frame: bytes
    ) -> None:
        if self.hub._frames_shared:
            # Straight to the link, past the session's action pipeline, which
            # would only pass the frame through: the session keeps no state
            # for a broadcast (ServerSession.deliver queues the message,
            # nothing else). Nothing that must precede it waits: every
            # callback drains the actions it caused before it returns. (On a
            # shared log, this connection's own store may release other
            # nodes' held events before its ack is written: harmless, an ack
            # moves no cursor.) Who gets one is still the session's call: an
            # authenticated, open connection.
            session = self.connection.session
            if session is not None and session.authenticated:
                self._write(frame)
            return
        now = self.hub.loop.time()
        if self.connection.deliver(repository, events, now, text=text, frame=frame):
            self._run(now)

    def _write(self, data: bytes) -> None:
        self.link.write(data)
        if not self._too_slow and self.link.buffered() > self.hub.options.send_buffer_limit:
            self._too_slow = True
            self.close(CloseCode.TRY_AGAIN_LATER, "client too slow: resume from your cursor")

    async def _deliver_in_order(self) -> None:
        # An authorizer may be slow; later broadcasts wait behind the one
        # being checked, so a client never sees sequences out of order.
        try:
            while self._deliveries and not self.closed:
                repository, events, text, frame = self._deliveries[0]
                session = self.connection.session
                if session is not None and repository not in self._can_read:
                    self._can_read[repository] = await self._check(
                        session.principal, repository, Access.READ
                    )
                self._deliveries.popleft()
                if self._can_read.get(repository):
                    self._deliver_now(repository, events, text, frame)
        finally:
            self._delivering = False

    async def _check(self, principal: object, repository: str, access: Access) -> bool:
        try:
            return await self.hub.allowed(principal, repository, access)
        except Exception:
            logger.exception("%s: the authorizer failed; access denied", self.name)
            return False

    def _run(self, now: float | None = None) -> None:
        """Carry out every action the connection has, then re-arm the one timer.

        ``now``: the time the caller just read, if it did (one clock read
        per callback, not two).

        Once the connection is gone, only stores and broadcasts are carried
        out: a push that arrived with the close frame is still stored (the
        client resends it unacknowledged, and the log dedupes), and a store
        that committed after the client left still owes the others its events.
        """
        loop = self.hub.loop
        if now is None:
            now = loop.time()
        # Again until none are left: a store carried out at once (see
        # _store_at_once) leaves its ack and broadcast behind it.
        while actions := self.connection.drain_actions(now):
            for action in actions:
                if not self.closed or type(action) is StoreEvents:
                    self._execute(action)
                elif isinstance(action, EventsStored):
                    self.hub.events_stored(self, action.repository, action.events)
        deadline = None if self.closed else self.connection.next_deadline()
        if deadline != self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = None if deadline is None else loop.call_at(deadline, self._on_timer)
            self._timer_at = deadline

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        if not self.closed:
            now = self.hub.loop.time()
            self.connection.handle_timer(now)
            self._run(now)

    def _execute(self, action: Action) -> None:
        if type(action) is SendBytes:
            self._write(action.data)
        elif isinstance(action, CloseTransport):
            self.link.close()
            self._finish()
        elif isinstance(action, StoreEvents):
            if self._storing:
                self._stores.append(action)
            elif self.hub._store_now is not None:
                self._store_at_once(action, self.hub._store_now)
            else:
                self._storing = True
                self._spawn(self._store_in_order, action)
        elif isinstance(action, FetchEvents):
            self._spawn(self._fetch, action)
        elif isinstance(action, EventsStored):
            self.hub.events_stored(self, action.repository, action.events)
        elif isinstance(action, Authenticate):
            self._spawn(self._authenticate, action)
        elif isinstance(action, ListRepositories):
            self._spawn(self._list, action)
        elif isinstance(action, HttpRequestReceived):
            self._spawn(self._answer_http, action)
        elif isinstance(action, EventsConfirmed):
            logger.debug("%s applied %d events of %s", self.name, action.count, action.repository)
        elif isinstance(action, ProtocolErrorReported):
            logger.info("%s sent invalid input: %s", self.name, action.reason)
        elif isinstance(action, OversizedEventSent):
            logger.warning(
                "%s: event %s of %s is %d bytes, over the %d-byte message limit; sent anyway",
                self.name,
                action.event_id,
                action.repository,
                action.size,
                action.limit,
            )
        elif isinstance(action, HandshakeRejected):
            logger.info("%s handshake refused: %d %s", self.name, action.status, action.reason)
            self._close_reason = f"handshake refused ({action.status})"

    def _spawn(self, work: Callable[[_A], Awaitable[None]], action: _A) -> None:
        async def run() -> None:
            try:
                await work(action)
            except Exception:
                logger.exception("%s: %s failed", self.name, type(action).__name__)
                self.close(CloseCode.INTERNAL_ERROR, "internal server error")
                return
            self._run()

        self.hub.loop.spawn(run)

    def _store_at_once(
        self,
        action: StoreEvents,
        store_now: Callable[[str, tuple[SyncEvent, ...]], StoreResult],
    ) -> None:
        # _store without the task: the answer is queued on the session and
        # _run's next pass sends it.
        try:
            self._report_store(action, store_now(action.repository, action.events))
        except StoreError as error:
            self._report_store(action, error)
        except Exception:
            logger.exception("%s: %s failed", self.name, type(action).__name__)
            # As _spawn does, but not from inside _run's pass over the actions,
            # which would write what remains of them after the close frame.
            loop = self.hub.loop
            loop.call_at(
                loop.time(), lambda: self.close(CloseCode.INTERNAL_ERROR, "internal server error")
            )

    def _report_store(self, action: StoreEvents, outcome: StoreResult | StoreError) -> None:
        """Answer the session: acked once committed, or a failure the client retries."""
        session = self.connection.session
        assert session is not None
        if isinstance(outcome, StoreError):
            logger.error("%s: store failed: %s", self.name, outcome)
            session.store_failed(action.request_id, "storage unavailable", self.hub.loop.time())
        else:
            session.events_stored(
                action.request_id, outcome.stored, outcome.duplicates, self.hub.loop.time()
            )

    def _finish(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.hub._forget(self)
        logger.info("%s disconnected: %s", self.name, self._close_reason)

    # --- the work behind each request ---------------------------------------

    async def _authenticate(self, action: Authenticate) -> None:
        session = self.connection.session
        assert session is not None  # an Authenticate comes from a session
        credentials = Credentials(
            token=action.token,
            headers=action.headers,
            handshake_headers=tuple(action.handshake_headers),
        )
        try:
            principal = await resolve(self.hub.authenticator(credentials))
        except AuthenticationRefused as refused:
            principal, reason = None, refused.reason
        else:
            reason = "invalid credentials"
        now = self.hub.loop.time()
        if principal is None:
            logger.info("%s authentication refused: %s", self.name, reason)
            session.auth_rejected(action.request_id, reason, now)
        else:
            self._can_read.clear()
            session.auth_accepted(action.request_id, principal, now)

    async def _store_in_order(self, action: StoreEvents) -> None:
        # One store at a time: serverSequence then follows the order the
        # client pushed in, whatever order the runtime runs tasks in (trio
        # shuffles them on purpose).
        try:
            await self._store(action)
            while self._stores:
                self._run()  # this store's ack goes out before the next store
                await self._store(self._stores.pop(0))
        finally:
            self._storing = False
            self._stores.clear()

    async def _store(self, action: StoreEvents) -> None:
        session = self.connection.session
        assert session is not None
        if not await self._check(action.principal, action.repository, Access.WRITE):
            # For good: an lfws client gives these events up instead of
            # resending them on every connection.
            reason = f"no write access to {action.repository}"
            session.store_failed(action.request_id, reason, self.hub.loop.time(), permanent=True)
            return
        try:
            self._report_store(
                action, await self.hub.event_log.store(action.repository, action.events)
            )
        except StoreError as error:
            self._report_store(action, error)

    async def _fetch(self, action: FetchEvents) -> None:
        session = self.connection.session
        assert session is not None
        # Pacing: the previous pages must have reached the OS first, so a
        # slow reader holds at most one page here instead of the backlog.
        await self.link.drained()
        if self.closed:
            return
        if not await self._check(action.principal, action.repository, Access.READ):
            reason = f"no read access to {action.repository}"
            session.fetch_failed(action.request_id, reason, self.hub.loop.time())
            return
        try:
            events = await self.hub.event_log.fetch(
                action.repository, action.after_sequence, action.limit
            )
        except StoreError as error:
            logger.error("%s: fetch failed: %s", self.name, error)
            session.fetch_failed(action.request_id, "storage unavailable", self.hub.loop.time())
            return
        session.events_fetched(action.request_id, events, self.hub.loop.time())

    async def _list(self, action: ListRepositories) -> None:
        session = self.connection.session
        assert session is not None
        names = [
            name
            for name in await self.hub.event_log.repositories()
            if await self._check(action.principal, name, Access.READ)
        ]
        session.repositories_listed(action.request_id, names, self.hub.loop.time())

    async def _answer_http(self, action: HttpRequestReceived) -> None:
        path = action.target.partition("?")[0]
        if path == "/healthz" and action.method in ("GET", "HEAD"):
            body = json.dumps(await self.hub.health()).encode()
            status, headers = 200, [("Content-Type", "application/json")]
        elif action.method not in ("GET", "HEAD"):
            body, status, headers = b"method not allowed\n", 405, [("Allow", "GET, HEAD")]
        else:
            body = f"not found; the WebSocket endpoint is {self.hub.options.path}\n".encode()
            status, headers = 404, [("Content-Type", "text/plain; charset=utf-8")]
        self._close_reason = f"HTTP {action.method} {path} -> {status}"
        if not self.closed:
            self.connection.send_http_response(status, headers, body)
