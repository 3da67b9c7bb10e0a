"""The client side of the protocol, at the message level.

:class:`ClientSession` ports the Dart ``WebSocketSyncStrategy`` as a sans-IO
state machine. The adapter feeds it what happened (:meth:`~ClientSession.start`,
the connection opened or dropped, a text arrived, a timer fired, the app
pushed an event, the store applied a batch) and drains the actions it emits
(open or close the connection, send this text, apply these events, mark
these synced, the state changed). It never performs I/O and never calls user
code; time comes in as ``now``, jitter from the injected ``random``.

Every change of state goes through one table, :data:`TRANSITIONS`: a pair
``(state, input)`` that is not in it is caller misuse and raises
:class:`~lfws_core.errors.LocalProtocolError`. Inputs that a state accepts
without moving are in the table too (as a pair mapping to the same state),
so the table answers "may I call this now?" for every method.

Where it goes beyond the Dart client:

* reconnects back off exponentially with full jitter (:mod:`lfws_core.backoff`);
* the offline queue is bounded, with an explicit :class:`OverflowPolicy`;
* every pushed event is tracked until the server acknowledges it and is sent
  again after a reconnect (the server deduplicates by event id);
* the session keeps a cursor per repository itself (the highest
  ``serverSequence`` known to be applied with nothing missing below it);
* a batch the store fails to apply moves no cursor, and its events are
  fetched again on a fresh connection;
* credentials are refreshed in band, and refusals do not loop: after
  ``max_auth_failures`` the session waits for explicit new credentials;
* a silent (half-open) link is detected by heartbeats;
* :meth:`ClientSession.health` is one typed snapshot of all of it.
"""

from __future__ import annotations

import enum
import math
import re
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from itertools import chain
from types import MappingProxyType
from typing import Final, cast

from ._builders import slot_builder
from ._names import name_fault
from .actions import (
    ApplyEvents,
    ClientAction,
    CloseConnection,
    ConnectionState,
    ConnectionStateChanged,
    CredentialsNeeded,
    MarkSynced,
    OpenConnection,
    ProtocolErrorReported,
    PushFailed,
    PushRejected,
    ReconnectScheduled,
    SendMessage,
    ServerErrorReported,
    SyncCompleted,
    SyncFiltersNeeded,
    _send_message,
)
from .backoff import Backoff
from .close_codes import CloseCode
from .codec import decode_message, encode_message, encode_to_fit, utf8_size_over
from .errors import InvalidMessage, LocalProtocolError
from .events import JsonValue, SyncEvent
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
    SyncComplete,
)
from .urls import WsUrl, parse_ws_url

__all__ = [
    "TRANSITIONS",
    "ClientConfig",
    "ClientHealth",
    "ClientInput",
    "ClientSession",
    "OverflowPolicy",
    "PushResult",
]


class OverflowPolicy(enum.Enum):
    """What :meth:`ClientSession.push` does when ``max_pending`` events wait."""

    REJECT_NEW = "reject_new"
    """Refuse the new event (:attr:`PushResult.FAILED` and ``PushFailed``)."""
    DROP_OLDEST = "drop_oldest"
    """Give up the oldest event not yet sent (``PushFailed``) to make room."""


class PushResult(enum.Enum):
    """The outcome of :meth:`ClientSession.push`.

    ``SENT`` and ``QUEUED`` are both the Dart ``SyncStatus.pending``: the
    event is synced once ``MarkSynced`` names it.
    """

    SENT = "sent"
    """Sent on the open connection; waiting for the server's ``ack``."""
    QUEUED = "queued"
    """Kept in the pending queue; sent once connected."""
    FAILED = "failed"
    """Not accepted (``PushFailed`` says why); the event stays unsynced."""


class ClientInput(enum.Enum):
    """The inputs of the client state machine (the columns of :data:`TRANSITIONS`)."""

    START = "start"
    """``start()``."""
    CONNECTION_MADE = "connection_made"
    """The adapter opened the WebSocket."""
    CONNECTION_FAILED = "connection_failed"
    """The adapter could not open the WebSocket."""
    CONNECTION_LOST = "connection_lost"
    """The WebSocket closed or the transport dropped (or the session gave it up for the store)."""
    MESSAGE_RECEIVED = "message_received"
    """A text or message arrived."""
    AUTH_ACCEPTED = "auth_accepted"
    """``auth_success`` answered the first ``auth`` of a connection."""
    AUTH_REFUSED = "auth_refused"
    """``error`` answered the latest ``auth`` (or the server closed with 1008)."""
    CAUGHT_UP = "caught_up"
    """The last outstanding catch-up request got its ``sync_complete``."""
    TIMED_OUT = "timed_out"
    """The connect, auth or pong timeout expired."""
    CATCH_UP_FAILED = "catch_up_failed"
    """The server answered a catch-up request with ``error`` (no ``sync_complete`` follows)."""
    RECONNECT_DUE = "reconnect_due"
    """The reconnect delay is over."""
    CREDENTIALS_UPDATED = "credentials_updated"
    """``update_credentials()``."""
    PUSH = "push"
    """``push()``."""
    EVENTS_APPLIED = "events_applied"
    """``events_applied()``."""
    EVENTS_APPLY_FAILED = "events_apply_failed"
    """``events_apply_failed()``."""
    SYNC_FILTERS_BUILT = "sync_filters_built"
    """``sync_filters_built()``."""
    CLOSE = "close"
    """``close()``."""

    # Members are singletons: hashing by identity is right, and runs in C
    # (Enum's own __hash__ hashes the name in Python) on every message.
    __hash__ = object.__hash__


def _build_transitions() -> Mapping[tuple[ConnectionState, ClientInput], ConnectionState]:
    s, i = ConnectionState, ClientInput
    everywhere = tuple(s)
    open_ = (s.AUTHENTICATING, s.SYNCING, s.LIVE)  # a WebSocket is open
    # After the session gave a connection up (and said so with CloseConnection),
    # the adapter's late news about it changes nothing.
    gone = (s.WAITING_TO_RECONNECT, s.NEEDS_CREDENTIALS, s.CLOSED)
    table: dict[tuple[ConnectionState, ClientInput], ConnectionState] = {
        (s.IDLE, i.START): s.CONNECTING,
        (s.CONNECTING, i.CONNECTION_MADE): s.AUTHENTICATING,
        (s.CONNECTING, i.CONNECTION_FAILED): s.WAITING_TO_RECONNECT,
        (s.CONNECTING, i.CONNECTION_LOST): s.WAITING_TO_RECONNECT,
        (s.CONNECTING, i.TIMED_OUT): s.WAITING_TO_RECONNECT,
        (s.AUTHENTICATING, i.AUTH_ACCEPTED): s.SYNCING,
        (s.SYNCING, i.CAUGHT_UP): s.LIVE,
        (s.SYNCING, i.CATCH_UP_FAILED): s.WAITING_TO_RECONNECT,
        (s.WAITING_TO_RECONNECT, i.RECONNECT_DUE): s.CONNECTING,
        (s.NEEDS_CREDENTIALS, i.CREDENTIALS_UPDATED): s.CONNECTING,
    }
    for state in open_:
        table[state, i.MESSAGE_RECEIVED] = state
        table[state, i.CONNECTION_LOST] = s.WAITING_TO_RECONNECT
        table[state, i.TIMED_OUT] = s.WAITING_TO_RECONNECT
        table[state, i.AUTH_REFUSED] = s.NEEDS_CREDENTIALS
    for state in gone:
        for late in (i.CONNECTION_MADE, i.CONNECTION_FAILED, i.CONNECTION_LOST):
            table[state, late] = state
        table[state, i.MESSAGE_RECEIVED] = state
    for state in everywhere:
        table[state, i.CLOSE] = s.CLOSED
        if state is not s.CLOSED:
            table[state, i.PUSH] = state
            table.setdefault((state, i.CREDENTIALS_UPDATED), state)
        if state is not s.IDLE:
            table[state, i.EVENTS_APPLIED] = state
            table[state, i.EVENTS_APPLY_FAILED] = state
            table[state, i.SYNC_FILTERS_BUILT] = state
    return MappingProxyType(table)


TRANSITIONS: Final = _build_transitions()
"""``(state, input) -> next state`` for every input a state accepts.

A pair that is absent is misuse (``LocalProtocolError``). A pair that maps a
state to itself is accepted without a change of state; in the states where
the connection is gone (waiting to reconnect, needing credentials, closed)
late reports about it and late messages are accepted and ignored.
"""

_OPEN = frozenset({ConnectionState.AUTHENTICATING, ConnectionState.SYNCING, ConnectionState.LIVE})
_HAS_CONNECTION = _OPEN | {ConnectionState.CONNECTING}
# ConnectionState.connected as a set: a property call costs more, on every push.
_CONNECTED = frozenset(state for state in ConnectionState if state.connected)

# The PushFailed reason of an event no message under the server's limit can carry.
_TOO_BIG = "event larger than the server's message limit"

# The Dart reference server's words when it could not answer a catch-up
# request; it then sends no sync_complete (the v1 dialect has no request ids).
_CATCH_UP_FAILURES = ("Failed to fetch events", "Failed to fetch all events")

# Header names are HTTP tokens (RFC 9110 §5.6.2); values are field-content
# in visible ASCII, what h11 can write from a str, without blanks at either end.
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEADER_VALUE = re.compile(r"(?:[\x21-\x7e]+(?:[ \t]+[\x21-\x7e]+)*)?")
# Headers are spread at the top level of ``auth``, beside these fields.
_AUTH_FIELDS = frozenset({"type", "token"})
# Sync-filter fields are spread at the top level of ``request_events``.
_REQUEST_FIELDS = frozenset({"type", "repository"})

_CLIENT_ONLY_TYPES: Mapping[type[ClientMessage], str] = MappingProxyType(
    {
        Auth: "auth",
        PushEvent: "push_event",
        PushEventsBatch: "push_events_batch",
        RequestEvents: "request_events",
        RequestAllEvents: "request_all_events",
        EventsReceived: "events_received",
    }
)
_MESSAGE_TYPES = (*_CLIENT_ONLY_TYPES, AuthSuccess, Events, Ack, SyncComplete, Error, Ping, Pong)


# Every read of acks builds one.
_mark_synced: Callable[[Mapping[str, tuple[str, ...]]], MarkSynced] = slot_builder(
    MarkSynced, "repositories"
)


# Holds the place of the MarkSynced of the acks in a row until they are all
# in (see ClientSession._on_ack); it never leaves the session.
_MARKING = MarkSynced(repositories=MappingProxyType({}))


# --- configuration ------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class ClientConfig:
    """Everything a :class:`ClientSession` is configured with (times in seconds).

    Values are checked on creation; nonsense raises ``LocalProtocolError``.
    """

    url: str
    """The server's ``ws://`` or ``wss://`` URL."""
    token: str | None = None
    """Sent as ``token`` in ``auth``."""
    headers: Mapping[str, str] = field(default_factory=dict)
    """Sent with the WebSocket handshake and spread into ``auth``.

    Names are HTTP tokens; values are printable ASCII (what a handshake
    can carry), without blanks at either end.
    """
    repositories: tuple[str, ...] = ()
    """The repositories to catch up on every connection (more are learnt)."""
    reconnect_delay: float = 3.0
    """The envelope of the first reconnect delay (full jitter below it)."""
    max_reconnect_delay: float = 60.0
    """The largest envelope the delay doubles up to."""
    stable_after: float = 10.0
    """An authenticated connection that lasts this long resets the backoff."""
    heartbeat_interval: float = 30.0
    """How often ``ping`` is sent on an open connection."""
    pong_timeout: float = 10.0
    """After a ``ping``, the longest silence before the link counts as dead."""
    connect_timeout: float = 10.0
    """How long opening the WebSocket may take."""
    auth_timeout: float = 10.0
    """How long the server may take to answer ``auth``."""
    enable_pending_queue: bool = True
    """Queue pushes while disconnected (else they fail at once)."""
    max_pending: int = 10_000
    """The most unacknowledged events kept, queued and sent together."""
    overflow_policy: OverflowPolicy = OverflowPolicy.REJECT_NEW
    """What a push does when ``max_pending`` events wait."""
    max_batch_size: int = 100
    """The most events per ``push_events_batch`` when the queue is flushed."""
    max_message_size: int = 1 << 20
    """The server's message limit in UTF-8 bytes: no push is sent larger.

    Batches are split to fit; an event too big for a message of its own
    fails (``PushFailed``) rather than close the connection (1009) on
    every resend.
    """
    max_auth_failures: int = 3
    """Consecutive refusals after which ``CredentialsNeeded`` is no longer emitted."""
    custom_sync_filter: bool = False
    """Ask the app for catch-up filters (``SyncFiltersNeeded``) on every connection."""
    compression: bool = False
    """Offer permessage-deflate (RFC 7692); used when the server accepts it.

    Compressed messages from the server inflate up to the connection's
    message size limit (1009 beyond).
    """

    def __post_init__(self) -> None:
        parse_ws_url(self.url)
        _check_token(self.token)
        object.__setattr__(self, "headers", _checked_headers(self.headers))
        if isinstance(self.repositories, str):
            raise LocalProtocolError("repositories must be a sequence of names, not a string")
        for repository in self.repositories:
            _check_repository(repository)
        object.__setattr__(self, "repositories", tuple(dict.fromkeys(self.repositories)))
        for name in (
            "reconnect_delay",
            "max_reconnect_delay",
            "stable_after",
            "heartbeat_interval",
            "pong_timeout",
            "connect_timeout",
            "auth_timeout",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise LocalProtocolError(f"{name} must be a number of seconds, not {value!r}")
            if not 0 < value < math.inf:
                raise LocalProtocolError(f"{name} must be positive and finite, not {value!r}")
        if self.max_reconnect_delay < self.reconnect_delay:
            raise LocalProtocolError("max_reconnect_delay must not be below reconnect_delay")
        for name in ("max_pending", "max_batch_size", "max_message_size", "max_auth_failures"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise LocalProtocolError(f"{name} must be an int >= 1, not {value!r}")
        if not isinstance(self.overflow_policy, OverflowPolicy):
            raise LocalProtocolError("overflow_policy must be an OverflowPolicy")
        if not isinstance(self.compression, bool):
            raise LocalProtocolError(f"compression must be a bool, not {self.compression!r}")


def _check_token(token: object) -> None:
    if token is None:
        return
    if not isinstance(token, str) or not token:
        raise LocalProtocolError("the token must be a non-empty string or None")
    try:
        token.encode("utf-8")
    except UnicodeEncodeError:
        # Refused here, not when the next auth is encoded (on every connection).
        raise LocalProtocolError("the token must be valid Unicode (no lone surrogates)") from None


def _checked_headers(headers: object) -> Mapping[str, str]:
    if not isinstance(headers, Mapping):
        raise LocalProtocolError("headers must be a mapping of names to values")
    for name, value in headers.items():
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            raise LocalProtocolError(f"invalid header name {name!r}")
        if name in _AUTH_FIELDS:
            raise LocalProtocolError(f"a header cannot be named {name!r}: auth uses that field")
        if not isinstance(value, str) or not _HEADER_VALUE.fullmatch(value):
            raise LocalProtocolError(f"invalid value for header {name!r}")
    return MappingProxyType(dict(headers))


def _check_repository(repository: object) -> None:
    _check_name("a repository name", repository)


def _usual_name(value: object) -> bool:
    """Whether ``value`` is a name :func:`_check_name` passes, told cheaply for the usual one."""
    # ASCII without NUL needs no name_fault() (a call) and no UTF-8 attempt.
    return type(value) is str and value.isascii() and "\x00" not in value and value != ""


def _check_name(what: str, value: object) -> None:
    if not isinstance(value, str) or not value:
        raise LocalProtocolError(f"{what} must be a non-empty string, not {value!r}")
    fault = name_fault(value)
    if fault is not None:
        raise LocalProtocolError(f"{what} {fault}, not {value!r}")


# --- health -------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class ClientHealth:
    """One snapshot of a session, for a status line, a dashboard or a probe."""

    state: ConnectionState
    """The connection state."""
    reason: str
    """Why the session is in that state (empty when there is nothing to say)."""
    connected: bool
    """The Dart boolean: authenticated, so events flow both ways."""
    next_retry_at: float | None
    """When the scheduled reconnect happens, if one is scheduled."""
    reconnect_attempt: int
    """Reconnects scheduled since the last connection that stayed up."""
    pending: int
    """Pushed events the server has not acknowledged yet."""
    oldest_pending_age: float | None
    """Seconds since the oldest of them was pushed."""
    cursors: Mapping[str, int]
    """The highest ``serverSequence`` applied per repository, with no gap below."""
    outstanding_applies: int
    """``ApplyEvents`` batches not yet reported applied."""


# --- internal records -----------------------------------------------------------


class _Timer(enum.IntEnum):
    """The session's timers; at equal deadlines they fire in this order."""

    CONNECT = enum.auto()
    AUTH = enum.auto()
    PONG = enum.auto()
    HEARTBEAT = enum.auto()
    STABLE = enum.auto()
    RECONNECT = enum.auto()


class _Pending:
    """A pushed event the server has not acknowledged."""

    __slots__ = ("event", "pushed_at", "repository")

    def __init__(self, repository: str, event: SyncEvent, pushed_at: float) -> None:
        self.repository = repository
        self.event = event
        self.pushed_at = pushed_at


class _Batch:
    """An ``ApplyEvents`` the adapter has not reported applied yet."""

    __slots__ = ("applied", "batch_id", "commit", "connection", "events", "live", "repository")

    def __init__(
        self,
        batch_id: int,
        repository: str,
        events: tuple[SyncEvent, ...],
        connection: int,
        *,
        live: bool,
    ) -> None:
        self.batch_id = batch_id
        self.repository = repository
        self.events = events
        self.connection = connection
        # Received once the repository was caught up on its connection, so
        # nothing is missing below it: applying it may move the cursor.
        self.live = live
        # The cursor a catch-up proved complete, to commit once this is applied.
        self.commit: int | None = None
        self.applied = False


def _max_sequence(events: Iterable[SyncEvent]) -> int | None:
    return max((e.server_sequence for e in events if e.server_sequence is not None), default=None)


# --- the session ------------------------------------------------------------------


class ClientSession:
    """The protocol state machine of one client (message level).

    ``random`` returns uniform floats in ``[0, 1]`` (reconnect jitter);
    ``cursors`` are the per-repository cursors the app persisted from
    ``SyncCompleted`` in an earlier run.
    """

    def __init__(
        self,
        config: ClientConfig,
        *,
        random: Callable[[], float],
        cursors: Mapping[str, int] = MappingProxyType({}),
    ) -> None:
        if not isinstance(config, ClientConfig):
            raise LocalProtocolError("config must be a ClientConfig")
        if not callable(random):
            raise LocalProtocolError("random must be a callable returning floats in [0, 1]")
        for repository, cursor in cursors.items():
            _check_repository(repository)
            if isinstance(cursor, bool) or not isinstance(cursor, int) or cursor < 0:
                raise LocalProtocolError(f"the cursor of {repository!r} must be an int >= 0")
        self._config = config
        self._random = random
        self._url: WsUrl = parse_ws_url(config.url)
        self._backoff = Backoff(config.reconnect_delay, config.max_reconnect_delay)
        self._token = config.token
        self._headers = config.headers

        self._state = ConnectionState.IDLE
        self._reason = ""
        self._actions: list[ClientAction] = []
        # The MarkSynced last emitted (its index in the actions) and the ids it
        # marks: the acks that follow it join it until the actions are drained.
        self._marking: tuple[int, dict[str, list[str]]] | None = None
        self._timers: dict[_Timer, float] = {}
        self._reconnect_attempt = 0
        self._auth_failures = 0

        # The connection: its number, and what is outstanding on it.
        self._connection = 0
        self._auths_outstanding = 0
        # Outstanding catch-up requests, oldest first: the repository each one
        # asked for, or None for a bare request_all_events (all of them).
        self._catch_ups: deque[str | None] = deque()
        self._awaiting_filters: tuple[str, ...] | None = None
        # Repositories caught up on this connection (all of them after a bare
        # request_all_events): their live events may move cursors at once.
        self._live: set[str] = set()
        self._live_all = False
        # For the others: the highest sequence received on this connection and
        # the last batch it came in, until a sync_complete proves no gap.
        self._unconfirmed: dict[str, tuple[int, _Batch]] = {}

        self._cursors: dict[str, int] = dict(cursors)
        # Sequences above the cursor whose batch the store failed to apply:
        # the cursor stays below them until a batch carrying them is applied.
        self._holes: dict[str, set[int]] = {}
        self._known: dict[str, None] = dict.fromkeys(chain(config.repositories, cursors))
        self._batches: deque[_Batch] = deque()
        self._next_batch_id = 1
        # Unacknowledged events in push order: those sent on the open
        # connection, then those waiting to be sent (every sent one was pushed
        # before every waiting one, see push()).
        self._in_flight: dict[str, _Pending] = {}
        self._queued: dict[str, _Pending] = {}

    # --- queries ---------------------------------------------------------------

    @property
    def state(self) -> ConnectionState:
        """The connection state."""
        return self._state

    @property
    def reason(self) -> str:
        """Why the session entered its state (empty when there is nothing to say)."""
        return self._reason

    @property
    def connected(self) -> bool:
        """The Dart boolean: authenticated, so events flow both ways."""
        return self._state.connected

    @property
    def cursors(self) -> Mapping[str, int]:
        """A copy of the cursor of every repository that has one."""
        return MappingProxyType(dict(self._cursors))

    @property
    def pending_count(self) -> int:
        """How many pushed events the server has not acknowledged yet."""
        return len(self._in_flight) + len(self._queued)

    def health(self, now: float) -> ClientHealth:
        """Return a snapshot of the session at ``now``."""
        # In push order: the sent ones, then the queued ones (see push()).
        oldest = next(chain(self._in_flight.values(), self._queued.values()), None)
        return ClientHealth(
            state=self._state,
            reason=self._reason,
            connected=self._state.connected,
            next_retry_at=self._timers.get(_Timer.RECONNECT),
            reconnect_attempt=self._reconnect_attempt,
            pending=self.pending_count,
            oldest_pending_age=None if oldest is None else max(0.0, now - oldest.pushed_at),
            cursors=self.cursors,
            outstanding_applies=len(self._batches),
        )

    def drain_actions(self) -> list[ClientAction]:
        """Return the actions emitted since the last call, in order, and forget them."""
        if self._marking is not None:
            self._write_marking()
        actions, self._actions = self._actions, []
        return actions

    def next_deadline(self) -> float | None:
        """Return when :meth:`handle_timer` must be called next (None: no timer)."""
        return min(self._timers.values(), default=None)

    # --- inputs from the adapter -------------------------------------------------

    def start(self, now: float) -> None:
        """Begin connecting (once; a session is not restarted after ``close``)."""
        self._connect(now, ClientInput.START, "started")

    def close(self, now: float) -> None:
        """Stop for good: close the connection if there is one and cancel every timer.

        Pending events are kept (see :meth:`health`); the app's store still
        has them as unsynced. Calling it again does nothing.
        """
        self._check(ClientInput.CLOSE)
        if self._state is ConnectionState.CLOSED:
            return
        if self._state in _HAS_CONNECTION:
            self._emit(CloseConnection(code=CloseCode.NORMAL, reason="client closed"))
        self._teardown()
        self._timers.clear()
        self._move(ClientInput.CLOSE, "client closed")

    def handle_timer(self, now: float) -> None:
        """Fire every timer due at ``now`` (call it at :meth:`next_deadline`)."""
        while True:
            due = [(deadline, timer) for timer, deadline in self._timers.items() if deadline <= now]
            if not due:
                return
            _, timer = min(due)
            del self._timers[timer]
            self._fire(timer, now)

    def connection_made(self, now: float) -> None:
        """Report the WebSocket open: the session authenticates."""
        if self._check(ClientInput.CONNECTION_MADE) is self._state:
            return
        self._timers.pop(_Timer.CONNECT)
        self._move(ClientInput.CONNECTION_MADE, "connected")
        self._send_auth(now)
        self._timers[_Timer.HEARTBEAT] = now + self._config.heartbeat_interval

    def connection_failed(self, now: float, reason: str) -> None:
        """Report that opening the WebSocket failed (transport, TLS, handshake)."""
        if self._check(ClientInput.CONNECTION_FAILED) is self._state:
            return
        self._drop(now, ClientInput.CONNECTION_FAILED, f"connection failed: {reason}")

    def connection_lost(self, now: float, reason: str, code: int | None = None) -> None:
        """Report the WebSocket closed (``code`` of the close frame) or the transport gone.

        A close with 1008 (policy violation) while an ``auth`` is unanswered
        is a refusal of the credentials; anything else reconnects with backoff.
        """
        if self._check(ClientInput.CONNECTION_LOST) is self._state:
            return
        text = (
            f"connection lost: {reason}" if code is None else f"connection lost: {reason} ({code})"
        )
        if code == CloseCode.POLICY_VIOLATION and self._auths_outstanding:
            self._refuse(now, text, close=False)
        else:
            self._drop(now, ClientInput.CONNECTION_LOST, text)

    def receive_text(self, text: str, now: float) -> None:
        """Feed a text message; bad input is reported (``ProtocolErrorReported``), never raised."""
        if not self._receiving():
            return
        try:
            message = decode_message(text)
        except InvalidMessage as exc:
            self._emit(ProtocolErrorReported(reason=exc.reason))
            return
        self._dispatch(message, now)

    def receive_message(self, message: Message, now: float) -> None:
        """Feed a message decoded already (for adapters that decode themselves)."""
        if not isinstance(message, _MESSAGE_TYPES):
            raise LocalProtocolError(f"not a protocol message: {message!r}")
        if self._receiving():
            self._dispatch(message, now)

    def push(self, repository: str, event: SyncEvent, now: float) -> PushResult:
        """Send a local event, or queue it while disconnected.

        Pushing an event id that is still pending changes nothing and returns
        its status again. The repository name and the event's ids must be
        non-empty strings without NUL characters or lone surrogates (no store
        could keep them).
        """
        self._check(ClientInput.PUSH)
        if not _usual_name(repository):
            _check_repository(repository)
        if not isinstance(event, SyncEvent):
            raise LocalProtocolError(f"push needs a SyncEvent, not {type(event).__name__}")
        event_id = event.event_id
        if not _usual_name(event_id):
            _check_name("an event id", event_id)
        if not _usual_name(event.data_id):
            _check_name("a document id", event.data_id)
        in_flight, queued = self._in_flight, self._queued
        if event_id in in_flight:
            return PushResult.SENT
        if event_id in queued:
            return PushResult.QUEUED
        pending = _Pending(repository, event, now)
        config = self._config
        full = len(in_flight) + len(queued) >= config.max_pending
        # Sending directly only when nothing waits keeps the push order.
        if self._state in _CONNECTED and not queued:
            if full:
                return self._refuse_push(pending, "too many events are waiting for an ack")
            text = encode_message(PushEvent(repository=repository, event=event))
            if utf8_size_over(text, config.max_message_size):
                return self._refuse_push(pending, _TOO_BIG)
            in_flight[event_id] = pending
            self._actions.append(_send_message(text))
            return PushResult.SENT
        if not config.enable_pending_queue:
            return self._refuse_push(pending, "not connected and the pending queue is disabled")
        if full:
            if config.overflow_policy is OverflowPolicy.REJECT_NEW:
                return self._refuse_push(pending, "the pending queue is full")
            # Not connected (nothing in flight) or still flushing (the queue is
            # ahead of every sent event), so the full queue is not empty.
            oldest = self._queued.pop(next(iter(self._queued)))
            self._report_failed([oldest], "dropped from the full pending queue")
        self._queued[event_id] = pending
        return PushResult.QUEUED

    def events_applied(self, batch_id: int, now: float) -> None:
        """Report ``ApplyEvents(batch_id)`` applied by the store (batches in order)."""
        batch = self._reported(ClientInput.EVENTS_APPLIED, batch_id, "applied")
        if batch is None:
            return
        batch.applied = True
        repository = batch.repository
        self._fill_holes(repository, batch.events)
        sequence = _max_sequence(batch.events)
        if batch.live and sequence is not None:
            self._advance(repository, sequence)
        if batch.commit is not None:
            self._advance(repository, batch.commit)
        self._known.setdefault(repository)
        if batch.connection == self._connection:
            self._send(EventsReceived(repository=repository, count=len(batch.events)))
        self._emit(
            SyncCompleted(
                repository=repository, events=batch.events, cursor=self._cursors.get(repository)
            )
        )

    def events_apply_failed(self, batch_id: int, reason: str, now: float) -> None:
        """Report that the store could not apply ``ApplyEvents(batch_id)`` (batches in order).

        The batch is not confirmed to the server and moves no cursor, and
        neither do the batches of its repository still outstanding (they may
        still be applied: merging is idempotent). The cursor stays below the
        failed events until a batch carrying them is applied. If the batch
        came on the open connection, the session gives that connection up
        (close 1011, reconnect with backoff), so the next catch-up fetches
        the events again from the unchanged cursor.
        """
        batch = self._reported(ClientInput.EVENTS_APPLY_FAILED, batch_id, "failed")
        if batch is None:
            return
        repository = batch.repository
        # Later batches may carry a catch-up's commit or live sequences past
        # the failed events: none of them may move the cursor.
        for later in self._batches:
            if later.repository == repository:
                later.live = False
                later.commit = None
        self._unconfirmed.pop(repository, None)
        cursor = self._cursors.get(repository, -1)
        holes = {
            sequence
            for event in batch.events
            if (sequence := event.server_sequence) is not None and sequence > cursor
        }
        if holes:
            self._holes.setdefault(repository, set()).update(holes)
        self._known.setdefault(repository)  # so that every catch-up asks for it
        if batch.connection == self._connection:
            # Batches arrive only once authenticated, so this connection is open.
            self._emit(CloseConnection(code=CloseCode.INTERNAL_ERROR, reason="local store failed"))
            self._drop(now, ClientInput.CONNECTION_LOST, f"local store failed: {reason}")

    def sync_filters_built(
        self, filters: Mapping[str, Mapping[str, JsonValue] | None], now: float
    ) -> None:
        """Answer ``SyncFiltersNeeded``: catch-up fields per repository.

        ``None`` or an empty mapping means "use the session's cursor". The
        fields are spread into ``request_events``; ``afterSequence`` (an int)
        replaces the session's cursor for that request. An answer that comes
        after its connection was lost is ignored.
        """
        self._check(ClientInput.SYNC_FILTERS_BUILT)
        _check_filters(filters)
        repositories = self._awaiting_filters
        if repositories is None:
            return
        self._awaiting_filters = None
        self._request_catch_up(repositories, filters)

    def update_credentials(
        self, *, token: str | None, headers: Mapping[str, str], now: float
    ) -> None:
        """Replace the credentials.

        On an open connection they are sent at once in a new ``auth`` (no
        reconnect); when waiting for credentials the session reconnects at
        once; otherwise they are used by the next connection.
        """
        self._check(ClientInput.CREDENTIALS_UPDATED)
        _check_token(token)
        self._headers = _checked_headers(headers)
        self._token = token
        if self._state is ConnectionState.NEEDS_CREDENTIALS:
            self._connect(now, ClientInput.CREDENTIALS_UPDATED, "credentials updated")
        elif self._state in _OPEN:
            self._send_auth(now)

    def _reported(self, event: ClientInput, batch_id: int, outcome: str) -> _Batch | None:
        """Take the batch the store reported on: the oldest (None once closed)."""
        self._check(event)
        if self._state is ConnectionState.CLOSED:
            return None
        if not self._batches:
            raise LocalProtocolError(f"batch {batch_id!r} reported {outcome}, none is outstanding")
        batch = self._batches[0]
        if batch.batch_id != batch_id:
            raise LocalProtocolError(
                f"batch {batch_id!r} reported {outcome}, batch {batch.batch_id} comes first"
            )
        return self._batches.popleft()

    # --- the transition table -------------------------------------------------------

    def _check(self, event: ClientInput) -> ConnectionState:
        try:
            return TRANSITIONS[self._state, event]
        except KeyError:
            raise LocalProtocolError(
                f"{event.value} is not allowed in state {self._state.value}"
            ) from None

    def _move(self, event: ClientInput, reason: str) -> None:
        """Apply a pair of the table that changes the state (the only place that does)."""
        self._state = self._check(event)
        self._reason = reason
        self._emit(ConnectionStateChanged(state=self._state, reason=reason))

    # --- connecting and disconnecting ----------------------------------------------

    def _connect(self, now: float, event: ClientInput, reason: str) -> None:
        self._move(event, reason)
        url = self._url
        self._emit(
            OpenConnection(
                url=self._config.url,
                host=url.host,
                port=url.port,
                secure=url.secure,
                resource=url.resource,
                headers=tuple(self._headers.items()),
            )
        )
        self._timers[_Timer.CONNECT] = now + self._config.connect_timeout

    def _drop(
        self, now: float, event: ClientInput, reason: str, close_code: int | None = None
    ) -> None:
        """Give the connection up and schedule the next one."""
        delay = self._backoff.delay(self._reconnect_attempt, self._random())
        if close_code is not None:
            self._emit(CloseConnection(code=close_code, reason=reason))
        self._teardown()
        self._reconnect_attempt += 1
        self._move(event, reason)
        self._timers[_Timer.RECONNECT] = now + delay
        self._emit(ReconnectScheduled(at=now + delay, delay=delay, attempt=self._reconnect_attempt))

    def _refuse(self, now: float, reason: str, *, close: bool) -> None:
        """Take the credentials as refused: wait for new ones."""
        self._auth_failures += 1
        if close:
            self._emit(CloseConnection(code=CloseCode.NORMAL, reason="authentication refused"))
        self._teardown()
        attempt = self._auth_failures
        if attempt < self._config.max_auth_failures:
            self._move(ClientInput.AUTH_REFUSED, reason)
            self._emit(CredentialsNeeded(reason=reason, attempt=attempt))
        else:
            self._move(
                ClientInput.AUTH_REFUSED,
                f"{reason}; refused {attempt} times, waiting for update_credentials()",
            )

    def _teardown(self) -> None:
        """Forget everything that lived on the connection."""
        for timer in (_Timer.CONNECT, _Timer.AUTH, _Timer.PONG, _Timer.HEARTBEAT, _Timer.STABLE):
            self._timers.pop(timer, None)
        self._connection += 1  # late applies of its batches send nothing
        self._auths_outstanding = 0
        self._catch_ups.clear()
        self._awaiting_filters = None
        self._live.clear()
        self._live_all = False
        self._unconfirmed.clear()
        if self._config.enable_pending_queue:
            # Unacknowledged is not lost: everything is sent again next time.
            self._queued = {**self._in_flight, **self._queued}
        else:
            self._report_failed(self._in_flight.values(), "connection lost before the ack")
        self._in_flight = {}

    def _fire(self, timer: _Timer, now: float) -> None:
        config = self._config
        match timer:
            case _Timer.CONNECT:
                reason = f"no connection after {config.connect_timeout}s"
                self._drop(now, ClientInput.TIMED_OUT, reason, CloseCode.INTERNAL_ERROR)
            case _Timer.AUTH:
                reason = f"no answer to auth after {config.auth_timeout}s"
                self._drop(now, ClientInput.TIMED_OUT, reason, CloseCode.INTERNAL_ERROR)
            case _Timer.PONG:
                reason = f"no message for {config.pong_timeout}s after a ping"
                self._drop(now, ClientInput.TIMED_OUT, reason, CloseCode.INTERNAL_ERROR)
            case _Timer.HEARTBEAT:
                self._send(Ping())
                self._timers.setdefault(_Timer.PONG, now + config.pong_timeout)
                self._timers[_Timer.HEARTBEAT] = now + config.heartbeat_interval
            case _Timer.STABLE:
                self._reconnect_attempt = 0
            case _:  # _Timer.RECONNECT
                self._connect(now, ClientInput.RECONNECT_DUE, "reconnecting")

    # --- messages ---------------------------------------------------------------------

    def _receiving(self) -> bool:
        if self._state not in _OPEN:
            # Misuse before any connection; else a late message from one given up.
            self._check(ClientInput.MESSAGE_RECEIVED)
            return False
        # (The table lets every open state receive, without moving.)
        self._timers.pop(_Timer.PONG, None)  # any message proves the link alive
        return True

    def _dispatch(self, message: Message, now: float) -> None:
        # The answer to every push first, without the match's dozen class tests.
        if isinstance(message, Ack) and self._state is not ConnectionState.AUTHENTICATING:
            self._on_ack(message)
            return
        match message:
            case Ping():
                self._send(Pong())
            case Pong():
                pass  # liveness only, recorded on arrival
            case AuthSuccess():
                self._on_auth_success(now)
            case Error(event_ids=()):
                self._on_error(message.message, now)
            case Error():
                self._on_push_refused(message)
            case (
                Auth()
                | PushEvent()
                | PushEventsBatch()
                | RequestEvents()
                | RequestAllEvents()
                | (EventsReceived())
            ):
                name = _CLIENT_ONLY_TYPES[type(message)]
                self._emit(
                    ProtocolErrorReported(reason=f"the server sent {name}, a client message")
                )
            case _ if self._state is ConnectionState.AUTHENTICATING:
                self._emit(ProtocolErrorReported(reason="a message before auth_success, ignored"))
            case Events(repository=repository, events=events):
                self._on_events(repository, events)
            case _:  # SyncComplete, the only type left (Ack is taken above)
                self._on_sync_complete(now)

    def _send_auth(self, now: float) -> None:
        self._send(Auth(token=self._token, headers=self._headers))
        self._auths_outstanding += 1
        self._timers[_Timer.AUTH] = now + self._config.auth_timeout

    def _on_auth_success(self, now: float) -> None:
        if not self._auths_outstanding:
            self._emit(ProtocolErrorReported(reason="auth_success without an auth, ignored"))
            return
        self._auths_outstanding -= 1
        if not self._auths_outstanding:
            del self._timers[_Timer.AUTH]
        self._auth_failures = 0
        if self._state is ConnectionState.AUTHENTICATING:
            self._move(ClientInput.AUTH_ACCEPTED, "authenticated")
            self._timers[_Timer.STABLE] = now + self._config.stable_after
            self._start_catch_up()

    def _on_error(self, text: str, now: float) -> None:
        if self._catch_ups and text.startswith(_CATCH_UP_FAILURES):
            # No sync_complete follows: the request would stay open for ever
            # and shift every later one. Start over on a fresh connection.
            self._emit(ServerErrorReported(message=text))
            reason = f"catch-up failed: {text}"
            self._drop(now, ClientInput.CATCH_UP_FAILED, reason, CloseCode.NORMAL)
            return
        if self._auths_outstanding:
            # Only the answer to the latest auth decides; an error answering
            # an auth the app has since replaced is just reported.
            self._auths_outstanding -= 1
            if not self._auths_outstanding:
                self._refuse(now, f"authentication refused: {text}", close=True)
                return
        self._emit(ServerErrorReported(message=text))

    def _on_push_refused(self, error: Error) -> None:
        """Take an ``error`` naming pushed events (never about auth or a catch-up)."""
        code = error.code
        if code is None or not error.permanent:
            # Storage unavailable (or a code this version does not know): the
            # events stay pending and go out again on the next connection.
            self._emit(ServerErrorReported(message=error.message))
            return
        rejected: dict[str, list[str]] = {}
        for event_id in error.event_ids:
            pending = self._in_flight.pop(event_id, None) or self._queued.pop(event_id, None)
            if pending is not None:  # unknown or already settled: nothing to do
                rejected.setdefault(pending.repository, []).append(event_id)
        for repository, ids in rejected.items():
            self._emit(
                PushRejected(
                    repository=repository,
                    event_ids=tuple(ids),
                    reason=error.message,
                    code=code,
                )
            )

    def _on_events(self, repository: str, events: tuple[SyncEvent, ...]) -> None:
        if not events:
            return
        batch = _Batch(
            self._next_batch_id,
            repository,
            events,
            self._connection,
            live=self._live_all or repository in self._live,
        )
        self._next_batch_id += 1
        sequence = _max_sequence(events)
        if not batch.live and sequence is not None:
            previous = self._unconfirmed.get(repository)
            if previous is not None:
                sequence = max(sequence, previous[0])
            self._unconfirmed[repository] = (sequence, batch)
        self._batches.append(batch)
        self._emit(ApplyEvents(batch_id=batch.batch_id, repository=repository, events=events))

    def _on_ack(self, ack: Ack) -> None:
        # One MarkSynced for acks in a row (those of one read): join the last one.
        marking = self._marking
        actions = self._actions
        joining = marking is not None and marking[0] == len(actions) - 1
        synced: dict[str, list[str]] = marking[1] if marking is not None and joining else {}
        in_flight, queued = self._in_flight, self._queued
        for event_id in chain(ack.event_ids, *ack.repositories.values()):
            pending = in_flight.pop(event_id, None) or queued.pop(event_id, None)
            if pending is not None:  # unknown or already acknowledged: nothing to do
                synced.setdefault(pending.repository, []).append(event_id)
        if synced and not joining:
            if marking is not None:  # an earlier one, which this one cannot join
                self._write_marking()
            self._marking = (len(actions), synced)
            actions.append(_MARKING)  # a placeholder, see _write_marking

    def _write_marking(self) -> None:
        """Put the ids of the open MarkSynced in it: no ack can join it any more."""
        assert self._marking is not None  # both callers test it first
        index, synced = self._marking
        self._marking = None
        self._actions[index] = _mark_synced(
            {repository: tuple(ids) for repository, ids in synced.items()}
        )

    def _on_sync_complete(self, now: float) -> None:
        # The reference server answers a bare request_all_events with one
        # sync_complete without a repository and request_events with one
        # naming it, in request order: so the oldest request is the one done.
        if not self._catch_ups:
            self._emit(ProtocolErrorReported(reason="sync_complete without a request, ignored"))
            return
        requested = self._catch_ups.popleft()
        if requested is None:
            self._live_all = True
            repositories = list(self._unconfirmed)
        else:
            self._live.add(requested)
            repositories = [requested]
        for repository in repositories:
            self._confirm(repository)
        if not self._catch_ups:
            self._move(ClientInput.CAUGHT_UP, "caught up")

    def _confirm(self, repository: str) -> None:
        """Take what ``repository`` received as gapless: its catch-up is complete."""
        entry = self._unconfirmed.pop(repository, None)
        if entry is None:
            return
        sequence, last = entry
        if not last.applied:
            last.commit = sequence
        elif self._advance(repository, sequence):
            self._emit(SyncCompleted(repository=repository, events=(), cursor=sequence))

    def _advance(self, repository: str, sequence: int) -> bool:
        holes = self._holes.get(repository)
        if holes is not None:
            sequence = min(sequence, min(holes) - 1)
        if sequence <= self._cursors.get(repository, -1):
            return False
        self._cursors[repository] = sequence
        return True

    def _fill_holes(self, repository: str, events: Iterable[SyncEvent]) -> None:
        holes = self._holes.get(repository)
        if holes is None:
            return
        holes.difference_update(event.server_sequence for event in events)
        if not holes:
            del self._holes[repository]

    # --- catch-up and the queue --------------------------------------------------------

    def _start_catch_up(self) -> None:
        repositories = tuple(self._known)
        if self._config.custom_sync_filter and repositories:
            self._awaiting_filters = repositories
            self._emit(SyncFiltersNeeded(repositories=repositories))
        else:
            self._request_catch_up(repositories, {})

    def _request_catch_up(
        self,
        repositories: tuple[str, ...],
        filters: Mapping[str, Mapping[str, JsonValue] | None],
    ) -> None:
        if not repositories:
            self._send(RequestAllEvents())
            self._catch_ups.append(None)
        for repository in repositories:
            self._send(self._catch_up_request(repository, filters.get(repository)))
            self._catch_ups.append(repository)
        self._flush()

    def _catch_up_request(
        self, repository: str, fields: Mapping[str, JsonValue] | None
    ) -> RequestEvents | RequestAllEvents:
        cursor = self._cursors.get(repository)
        if not fields:
            if cursor is None:
                return RequestAllEvents(repository=repository)
            return RequestEvents(repository=repository, after_sequence=cursor)
        rest = dict(fields)
        after = cast("int | None", rest.pop("afterSequence", cursor))  # see _check_filters
        return RequestEvents(repository=repository, after_sequence=after, filter=rest)

    def _flush(self) -> None:
        """Send every queued event, per repository in batches, oldest first.

        A batch holds at most ``max_batch_size`` events and ``max_message_size``
        bytes. An event too big even for a ``push_event`` of its own is given
        up: the server would close the connection over it on every resend.
        """
        by_repository: dict[str, list[_Pending]] = {}
        for pending in self._queued.values():
            by_repository.setdefault(pending.repository, []).append(pending)
        size = self._config.max_batch_size
        limit = self._config.max_message_size
        too_big: list[_Pending] = []
        for repository, queued in by_repository.items():
            encode = partial(_batch_text, repository)
            for start in range(0, len(queued), size):
                for part in encode_to_fit(queued[start : start + size], encode, limit):
                    text = part.text
                    if part.oversize:
                        # A push_event is a few bytes shorter than a batch of one.
                        (pending,) = part.items
                        text = encode_message(PushEvent(repository=repository, event=pending.event))
                        if utf8_size_over(text, limit):
                            too_big.append(pending)
                            continue
                    self._emit(SendMessage(text=text))
        for pending in too_big:
            del self._queued[pending.event.event_id]
        self._report_failed(too_big, _TOO_BIG)
        self._in_flight.update(self._queued)
        self._queued = {}

    def _refuse_push(self, pending: _Pending, reason: str) -> PushResult:
        self._report_failed([pending], reason)
        return PushResult.FAILED

    def _report_failed(self, pending: Iterable[_Pending], reason: str) -> None:
        by_repository: dict[str, list[str]] = {}
        for item in pending:
            by_repository.setdefault(item.repository, []).append(item.event.event_id)
        for repository, ids in by_repository.items():
            self._emit(PushFailed(repository=repository, event_ids=tuple(ids), reason=reason))

    # --- output ---------------------------------------------------------------------

    def _emit(self, action: ClientAction) -> None:
        self._actions.append(action)

    def _send(self, message: ClientMessage) -> None:
        self._actions.append(_send_message(encode_message(message)))


def _batch_text(repository: str, queued: tuple[_Pending, ...]) -> str:
    events = tuple(pending.event for pending in queued)
    return encode_message(PushEventsBatch(repository=repository, events=events))


def _check_filters(filters: object) -> None:
    if not isinstance(filters, Mapping):
        raise LocalProtocolError("sync filters must be a mapping of repository to fields")
    for repository, fields in filters.items():
        if fields is None:
            continue
        if not isinstance(fields, Mapping):
            raise LocalProtocolError(f"the sync filter of {repository!r} must be a mapping or None")
        for name, value in fields.items():
            if not isinstance(name, str) or name in _REQUEST_FIELDS:
                raise LocalProtocolError(f"{name!r} cannot be a sync filter field")
            if name == "limit":
                # A truncated answer still ends with sync_complete: the cursor
                # would then jump over what was left out.
                raise LocalProtocolError("limit cannot be a sync filter field")
            if name == "afterSequence" and (
                isinstance(value, bool) or not isinstance(value, int) or value < 0
            ):
                raise LocalProtocolError(f"afterSequence must be an int >= 0, not {value!r}")
