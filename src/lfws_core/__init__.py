"""lfws_core: the sans-IO protocol core of lfws.

Pure state machines and codecs: no I/O, no clocks, no randomness. Time comes
in as ``now`` arguments, randomness from an injected source. Adapters (see
:mod:`lfws_adapters`) feed bytes and events in and carry the actions out.

Feed an input, then drain the actions it caused, and re-arm one timer::

    >>> from lfws_core import ClientConfig, ClientSession, SendMessage
    >>> session = ClientSession(ClientConfig(url="ws://localhost:8080/"), random=lambda: 0.5)
    >>> session.start(now=0.0)  # feed ...
    >>> [type(action).__name__ for action in session.drain_actions()]  # ... then drain
    ['ConnectionStateChanged', 'OpenConnection']
    >>> session.connection_made(now=0.1)  # the adapter opened the WebSocket
    >>> [a.text for a in session.drain_actions() if isinstance(a, SendMessage)]
    ['{"type":"auth"}']
    >>> session.receive_text('{"type":"auth_success"}', now=0.2)
    >>> [a.text for a in session.drain_actions() if isinstance(a, SendMessage)]
    ['{"type":"request_all_events"}']
    >>> session.state.name, session.next_deadline()  # wake me at 10.2 (handle_timer)
    ('SYNCING', 10.2)

The names below are the ones an application or an adapter needs; everything
else lives in its module (:mod:`lfws_core.ws`, :mod:`lfws_core.backoff`,
:mod:`lfws_core.urls`, :mod:`lfws_core.testing`, ...).
"""

from __future__ import annotations

from .actions import (
    Action,
    ApplyEvents,
    Authenticate,
    ClientAction,
    CloseConnection,
    CloseTransport,
    ConnectionState,
    ConnectionStateChanged,
    CredentialsNeeded,
    EventsConfirmed,
    EventsStored,
    FetchEvents,
    HandshakeRejected,
    HttpRequestReceived,
    ListRepositories,
    MarkSynced,
    OpenConnection,
    OversizedEventSent,
    ProtocolErrorReported,
    PushFailed,
    PushRejected,
    ReconnectScheduled,
    SendBytes,
    SendMessage,
    ServerAction,
    ServerErrorReported,
    StoreEvents,
    SyncCompleted,
    SyncFiltersNeeded,
)
from .client import ClientConfig, ClientHealth, ClientSession, OverflowPolicy, PushResult
from .close_codes import CloseCode
from .codec import decode_message, encode_message
from .connection import ClientConnection, ServerConnection
from .errors import InvalidMessage, LfwsError, LocalProtocolError, ProtocolError
from .events import JsonValue, Operation, SyncEvent
from .ids import Uuid7Generator, uuid7
from .merge import apply_event, document_state, merge_events, merge_key, wins
from .messages import (
    Ack,
    Auth,
    AuthSuccess,
    ClientMessage,
    Error,
    Events,
    EventsReceived,
    Message,
    Ping,
    Pong,
    PushEvent,
    PushEventsBatch,
    RequestAllEvents,
    RequestEvents,
    ServerMessage,
    SyncComplete,
)
from .server import ServerConfig, ServerSession, ServerState

__all__ = [
    # sessions and connections
    "ClientConfig",
    "ClientConnection",
    "ClientHealth",
    "ClientSession",
    "ConnectionState",
    "OverflowPolicy",
    "PushResult",
    "ServerConfig",
    "ServerConnection",
    "ServerSession",
    "ServerState",
    # actions
    "Action",
    "ApplyEvents",
    "Authenticate",
    "ClientAction",
    "CloseConnection",
    "CloseTransport",
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
    # messages and their codec
    "Ack",
    "Auth",
    "AuthSuccess",
    "ClientMessage",
    "Error",
    "Events",
    "EventsReceived",
    "Message",
    "Ping",
    "Pong",
    "PushEvent",
    "PushEventsBatch",
    "RequestAllEvents",
    "RequestEvents",
    "ServerMessage",
    "SyncComplete",
    "decode_message",
    "encode_message",
    # events, ids and the merge rule
    "JsonValue",
    "Operation",
    "SyncEvent",
    "Uuid7Generator",
    "apply_event",
    "document_state",
    "merge_events",
    "merge_key",
    "uuid7",
    "wins",
    # errors and close codes
    "CloseCode",
    "InvalidMessage",
    "LfwsError",
    "LocalProtocolError",
    "ProtocolError",
]
