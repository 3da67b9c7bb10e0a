"""The actions the state machines emit, for an adapter to carry out.

An adapter drains them in order after every input (see
``docs/architecture.md``). Actions are facts or requests; none of them calls
user code. Requests that need an answer carry a ``request_id`` (server) or
``batch_id`` (client) that the adapter hands back with the result.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeAlias

from ._builders import slot_builder
from .events import JsonValue, SyncEvent

__all__ = [
    "Action",
    "ApplyEvents",
    "Authenticate",
    "ClientAction",
    "CloseConnection",
    "ConnectionState",
    "ConnectionStateChanged",
    "CredentialsNeeded",
    "EventsConfirmed",
    "EventsStored",
    "FetchEvents",
    "HandshakeRejected",
    "HttpRequestReceived",
    "ListRepositories",
    "MarkSynced",
    "OpenConnection",
    "OversizedEventSent",
    "ProtocolErrorReported",
    "PushFailed",
    "PushRejected",
    "ReconnectScheduled",
    "SendBytes",
    "SendMessage",
    "ServerAction",
    "ServerErrorReported",
    "StoreEvents",
    "SyncCompleted",
    "SyncFiltersNeeded",
    "CloseTransport",
]


# --- shared -----------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class SendMessage:
    """Send ``text`` as one WebSocket text message."""

    text: str


@dataclass(frozen=True, kw_only=True, slots=True)
class CloseConnection:
    """Close the WebSocket with ``code`` and ``reason`` (the close handshake)."""

    code: int
    reason: str


@dataclass(frozen=True, kw_only=True, slots=True)
class SendBytes:
    """Byte level: write ``data`` to the transport."""

    data: bytes


@dataclass(frozen=True, kw_only=True, slots=True)
class CloseTransport:
    """Byte level: close the transport (TCP/TLS); the WebSocket is done."""


@dataclass(frozen=True, kw_only=True, slots=True)
class HttpRequestReceived:
    """Byte level, server: a plain HTTP request (not an upgrade) arrived.

    Answer with ``ServerConnection.send_http_response(...)``; the
    connection ends after the response.
    """

    method: str
    target: str
    headers: tuple[tuple[str, str], ...]


@dataclass(frozen=True, kw_only=True, slots=True)
class HandshakeRejected:
    """Byte level, server: the upgrade was refused with an HTTP ``status``."""

    status: int
    reason: str


@dataclass(frozen=True, kw_only=True, slots=True)
class ProtocolErrorReported:
    """The peer sent something invalid; ``reason`` says what (for logs)."""

    reason: str


# --- client -----------------------------------------------------------------


class ConnectionState(enum.Enum):
    """The client's connection state, as a UI shows it."""

    IDLE = "idle"
    """Created, not started."""
    CONNECTING = "connecting"
    """Opening the transport and the WebSocket handshake."""
    AUTHENTICATING = "authenticating"
    """``auth`` sent, waiting for ``auth_success``."""
    SYNCING = "syncing"
    """Authenticated; catching up and flushing the queue."""
    LIVE = "live"
    """Caught up; pushes go out at once, remote events arrive live."""
    WAITING_TO_RECONNECT = "waiting_to_reconnect"
    """Disconnected; a reconnect is scheduled (see ReconnectScheduled)."""
    NEEDS_CREDENTIALS = "needs_credentials"
    """The server refused the credentials; waiting for new ones."""
    CLOSED = "closed"
    """Closed for good by ``close()``."""

    # Members are singletons: hashing by identity is right, and runs in C
    # (Enum's own __hash__ hashes the name in Python) on every message.
    __hash__ = object.__hash__

    @property
    def connected(self) -> bool:
        """The Dart boolean: authenticated, so events flow both ways."""
        return self in (ConnectionState.SYNCING, ConnectionState.LIVE)


@dataclass(frozen=True, kw_only=True, slots=True)
class OpenConnection:
    """Open a transport to ``host``:``port`` (TLS when ``secure``).

    At the message level the adapter also performs the WebSocket handshake
    for ``url`` with ``headers``; at the byte level the connection object
    does that once the adapter reports the transport made.
    """

    url: str
    host: str
    port: int
    secure: bool
    resource: str
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, kw_only=True, slots=True)
class ConnectionStateChanged:
    """The connection state changed; ``reason`` says why (or is empty)."""

    state: ConnectionState
    reason: str = ""

    @property
    def connected(self) -> bool:
        """The Dart boolean for this state."""
        return self.state.connected


@dataclass(frozen=True, kw_only=True, slots=True)
class ReconnectScheduled:
    """A reconnect will happen at ``at`` (after ``delay`` s, attempt n)."""

    at: float
    delay: float
    attempt: int


@dataclass(frozen=True, kw_only=True, slots=True)
class ApplyEvents:
    """Apply remote ``events`` of ``repository`` to the local store.

    Report completion with ``ClientSession.events_applied(batch_id, now)``
    (or ``events_apply_failed(batch_id, reason, now)``), in the order the
    batches were emitted.
    """

    batch_id: int
    repository: str
    events: tuple[SyncEvent, ...]


@dataclass(frozen=True, kw_only=True, slots=True)
class SyncCompleted:
    """A batch was applied; ``cursor`` is the repository's new cursor."""

    repository: str
    events: tuple[SyncEvent, ...]
    cursor: int | None


@dataclass(frozen=True, kw_only=True, slots=True)
class MarkSynced:
    """The server acknowledged these pushed events: ids per repository."""

    repositories: Mapping[str, tuple[str, ...]]


@dataclass(frozen=True, kw_only=True, slots=True)
class PushFailed:
    """These events could not be queued or sent; they stay unsynced."""

    repository: str
    event_ids: tuple[str, ...]
    reason: str


@dataclass(frozen=True, kw_only=True, slots=True)
class PushRejected:
    """The server refused these events for good: they are no longer pending.

    The session never sends them again; the app sets them aside (they
    cannot sync as they are). ``code`` is the server's reason code (one of
    :data:`~lfws_core.messages.PERMANENT_ERROR_CODES`), ``reason`` its message.
    """

    repository: str
    event_ids: tuple[str, ...]
    reason: str
    code: str


@dataclass(frozen=True, kw_only=True, slots=True)
class CredentialsNeeded:
    """The server refused the credentials; ask the app for new ones.

    Answer with ``update_credentials(...)`` (or leave the session waiting).
    """

    reason: str
    attempt: int


@dataclass(frozen=True, kw_only=True, slots=True)
class SyncFiltersNeeded:
    """Build the catch-up filters for ``repositories`` (``on_build_sync_filter``).

    Answer with ``sync_filters_built({repository: fields or None}, now)``;
    ``None`` or an empty mapping means "use the session's own cursor".
    """

    repositories: tuple[str, ...]


@dataclass(frozen=True, kw_only=True, slots=True)
class ServerErrorReported:
    """The server sent ``error`` outside authentication (not fatal)."""

    message: str


ClientAction: TypeAlias = (
    SendMessage
    | CloseConnection
    | OpenConnection
    | ConnectionStateChanged
    | ReconnectScheduled
    | ApplyEvents
    | SyncCompleted
    | MarkSynced
    | PushFailed
    | PushRejected
    | CredentialsNeeded
    | SyncFiltersNeeded
    | ServerErrorReported
    | ProtocolErrorReported
)
"""Every action :class:`~lfws_core.client.ClientSession` emits."""


# --- server -----------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class Authenticate:
    """Check these credentials; answer with ``auth_accepted``/``auth_rejected``.

    ``handshake_headers`` are the HTTP headers of the WebSocket handshake.
    """

    request_id: int
    token: str | None
    headers: Mapping[str, str]
    handshake_headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, kw_only=True, slots=True)
class StoreEvents:
    """Store ``events`` of ``repository``, deduplicated by event id.

    Answer with ``events_stored(request_id, stored, duplicates)`` once the
    transaction committed, or ``store_failed(request_id, reason)``.
    """

    request_id: int
    repository: str
    events: tuple[SyncEvent, ...]
    principal: object = None


@dataclass(frozen=True, kw_only=True, slots=True)
class FetchEvents:
    """Read at most ``limit`` events of ``repository`` after ``after_sequence``.

    Answer with ``events_fetched(request_id, events)`` in sequence order, or
    ``fetch_failed(request_id, reason)``.
    """

    request_id: int
    repository: str
    after_sequence: int
    limit: int
    filter: Mapping[str, JsonValue] = field(default_factory=dict)
    principal: object = None


@dataclass(frozen=True, kw_only=True, slots=True)
class ListRepositories:
    """List the repositories the store knows (for ``request_all_events``).

    Answer with ``repositories_listed(request_id, names)``.
    """

    request_id: int
    principal: object = None


@dataclass(frozen=True, kw_only=True, slots=True)
class EventsStored:
    """These events were newly stored: broadcast them to the other clients."""

    repository: str
    events: tuple[SyncEvent, ...]


# The server builds these for every push (values already checked).
_send_message: Callable[[str], SendMessage] = slot_builder(SendMessage, "text")
_store_events: Callable[[int, str, tuple[SyncEvent, ...], object], StoreEvents] = slot_builder(
    StoreEvents, "request_id", "repository", "events", "principal"
)
_events_stored: Callable[[str, tuple[SyncEvent, ...]], EventsStored] = slot_builder(
    EventsStored, "repository", "events"
)


@dataclass(frozen=True, kw_only=True, slots=True)
class EventsConfirmed:
    """The client confirmed it applied ``count`` events of ``repository``."""

    repository: str
    count: int


@dataclass(frozen=True, kw_only=True, slots=True)
class OversizedEventSent:
    """An event too big for ``max_message_size`` even alone was sent anyway, alone.

    It was stored under a larger limit (or the ``serverSequence`` added on
    storing pushed it over). The server never withholds a stored event; a
    client whose limit is smaller closes with 1009 (for logs).
    """

    repository: str
    event_id: str
    size: int
    """The ``events`` message carrying it, in UTF-8 bytes."""
    limit: int


ServerAction: TypeAlias = (
    SendMessage
    | CloseConnection
    | Authenticate
    | StoreEvents
    | FetchEvents
    | ListRepositories
    | EventsStored
    | EventsConfirmed
    | OversizedEventSent
    | ProtocolErrorReported
)
"""Every action :class:`~lfws_core.server.ServerSession` emits."""

Action: TypeAlias = (
    ClientAction
    | ServerAction
    | SendBytes
    | CloseTransport
    | HttpRequestReceived
    | HandshakeRejected
)
"""Every action of the core."""
