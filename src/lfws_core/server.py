"""The server side of the protocol for one connection, at the message level.

:class:`ServerSession` is a sans-IO state machine: the adapter feeds it what
happened (the connection opened, a text arrived, a timer fired, the store
answered, another connection stored events) and drains the actions it emits
(send this text, close, check these credentials, store these events, fetch
a page). It never performs I/O and never calls user code.

States and their transitions live in :data:`TRANSITIONS`; every change of
state goes through :func:`next_state`, which refuses a pair that is not in
the table with :class:`~lfws_core.errors.LocalProtocolError`.

Requests to the adapter (:class:`~lfws_core.actions.Authenticate`,
:class:`~lfws_core.actions.StoreEvents`, :class:`~lfws_core.actions.FetchEvents`,
:class:`~lfws_core.actions.ListRepositories`) carry a ``request_id`` that the
adapter hands back with the verdict, in any order. A verdict for a request
that is unknown or already answered is misuse. Once the connection is gone
(:attr:`ServerState.CLOSED`) verdicts are ignored, with one exception: a
store that committed still yields :class:`~lfws_core.actions.EventsStored`,
because the other connections must hear about events that are now stored.

Catch-up (``request_events`` / ``request_all_events``) is served one request
at a time, in arrival order, page by page, so ``sync_complete`` messages come
in request order. Broadcasts (:meth:`ServerSession.deliver`) are not held
back while a catch-up of the same repository is in flight: the client's
merge is idempotent and its cursor only moves forward, so an event that
arrives both ways is harmless, while holding broadcasts back would delay
every live update behind a long catch-up. A page or broadcast too big for
one message of ``max_message_size`` bytes goes out as several
(:func:`encode_events`).
"""

from __future__ import annotations

import enum
import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import ClassVar, TypeAlias, TypeVar

from .actions import (
    Authenticate,
    CloseConnection,
    EventsConfirmed,
    FetchEvents,
    ListRepositories,
    OversizedEventSent,
    ProtocolErrorReported,
    ServerAction,
    StoreEvents,
    _events_stored,
    _send_message,
    _store_events,
)
from .close_codes import CloseCode
from .codec import (
    decode_message,
    encode_message,
    encode_push_ack,
    encode_to_fit,
    utf8_size_over,
)
from .errors import InvalidMessage, LocalProtocolError
from .events import JsonValue, SyncEvent
from .messages import (
    PERMANENT_ERROR_CODES,
    Ack,
    Auth,
    AuthSuccess,
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

__all__ = [
    "TRANSITIONS",
    "EncodedEvents",
    "ServerConfig",
    "ServerInput",
    "ServerSession",
    "ServerState",
    "encode_events",
    "next_state",
]

# RFC 6455 §5.5: a close frame's payload is at most 125 bytes, 2 of them the code.
_MAX_CLOSE_REASON_BYTES = 123
_VALID_CLOSE_CODES = range(1000, 5000)
_RESERVED_CLOSE_CODES = frozenset({1004, 1005, 1006, 1015})


@dataclass(frozen=True, kw_only=True, slots=True)
class ServerConfig:
    """Limits and timers of one server connection (times in seconds)."""

    max_batch_length: int = 1000
    """The most events one ``push_events_batch`` may carry."""
    page_size: int = 500
    """The most events one catch-up fetch asks for (and one ``events`` message carries)."""
    max_message_size: int = 1 << 20
    """The longest text accepted, in UTF-8 bytes; longer ones close with 1009.

    Also the longest ``events`` message sent: a page over it is split.
    """
    auth_timeout: float = 10.0
    """A connection must be authenticated this long after it opened (else 1008)."""
    ping_interval: float | None = 25.0
    """How often the server sends ``ping``; ``None`` disables it."""
    ping_timeout: float = 10.0
    """After a ``ping``, the longest silence from the client before closing (1011)."""
    max_queued_before_auth: int = 32
    """How many messages are held while an authentication verdict is pending."""

    def __post_init__(self) -> None:
        for name in ("max_batch_length", "page_size", "max_message_size"):
            _check_positive_int(name, getattr(self, name))
        if isinstance(self.max_queued_before_auth, bool) or not isinstance(
            self.max_queued_before_auth, int
        ):
            raise LocalProtocolError("max_queued_before_auth must be an int")
        if self.max_queued_before_auth < 0:
            raise LocalProtocolError("max_queued_before_auth must not be negative")
        _check_duration("auth_timeout", self.auth_timeout)
        _check_duration("ping_timeout", self.ping_timeout)
        if self.ping_interval is not None:
            _check_duration("ping_interval", self.ping_interval)


def _check_positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise LocalProtocolError(f"{name} must be a positive int, got {value!r}")


def _check_duration(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise LocalProtocolError(f"{name} must be a positive, finite number, got {value!r}")


# --- states and transitions -------------------------------------------------


class ServerState(enum.Enum):
    """The state of one server connection."""

    AWAITING_AUTH = "awaiting_auth"
    """Open; the client has not authenticated (only ``auth`` and ``ping`` work)."""
    AUTHENTICATING = "authenticating"
    """An ``auth`` awaits its verdict; further messages are held until then."""
    AUTHENTICATED = "authenticated"
    """Events flow both ways."""
    CLOSING = "closing"
    """The server sent its close; received messages are ignored."""
    CLOSED = "closed"
    """The connection is gone (terminal)."""

    # Members are singletons: hashing by identity is right, and runs in C
    # (Enum's own __hash__ hashes the name in Python) on every message.
    __hash__ = object.__hash__


class ServerInput(enum.Enum):
    """What moves a :class:`ServerState`."""

    AUTH_REQUESTED = "auth_requested"
    """An ``auth`` message is processed (first authentication or re-auth)."""
    AUTH_ACCEPTED = "auth_accepted"
    """The adapter accepted the credentials."""
    AUTH_REJECTED = "auth_rejected"
    """The adapter refused the credentials: the server closes (1008)."""
    CLOSE_STARTED = "close_started"
    """The server closes: ``close()``, a timeout, or fatal input."""
    CONNECTION_LOST = "connection_lost"
    """The adapter reports the connection gone."""

    # Members are singletons: hashing by identity is right, and runs in C
    # (Enum's own __hash__ hashes the name in Python) on every message.
    __hash__ = object.__hash__


_S = ServerState
_I = ServerInput

TRANSITIONS: Mapping[tuple[ServerState, ServerInput], ServerState] = MappingProxyType(
    {
        (_S.AWAITING_AUTH, _I.AUTH_REQUESTED): _S.AUTHENTICATING,
        (_S.AUTHENTICATED, _I.AUTH_REQUESTED): _S.AUTHENTICATING,
        (_S.AUTHENTICATING, _I.AUTH_ACCEPTED): _S.AUTHENTICATED,
        (_S.AUTHENTICATING, _I.AUTH_REJECTED): _S.CLOSING,
        (_S.AWAITING_AUTH, _I.CLOSE_STARTED): _S.CLOSING,
        (_S.AUTHENTICATING, _I.CLOSE_STARTED): _S.CLOSING,
        (_S.AUTHENTICATED, _I.CLOSE_STARTED): _S.CLOSING,
        # close() is idempotent: closing again changes nothing and sends nothing.
        (_S.CLOSING, _I.CLOSE_STARTED): _S.CLOSING,
        (_S.CLOSED, _I.CLOSE_STARTED): _S.CLOSED,
        (_S.AWAITING_AUTH, _I.CONNECTION_LOST): _S.CLOSED,
        (_S.AUTHENTICATING, _I.CONNECTION_LOST): _S.CLOSED,
        (_S.AUTHENTICATED, _I.CONNECTION_LOST): _S.CLOSED,
        (_S.CLOSING, _I.CONNECTION_LOST): _S.CLOSED,
        # Both ends may notice a dead connection; the second report is a no-op.
        (_S.CLOSED, _I.CONNECTION_LOST): _S.CLOSED,
    }
)
"""Every allowed (state, input) pair and the state it leads to."""

_OPEN_STATES = frozenset({_S.AWAITING_AUTH, _S.AUTHENTICATING, _S.AUTHENTICATED})
# For the per-message tests: reading a member off its Enum class costs a
# Python-level lookup each time, a module global does not.
_AUTHENTICATING = _S.AUTHENTICATING
_AUTHENTICATED = _S.AUTHENTICATED


def next_state(state: ServerState, event: ServerInput) -> ServerState:
    """Return the state ``event`` leads to from ``state``, per :data:`TRANSITIONS`.

    Raises :class:`~lfws_core.errors.LocalProtocolError` for a pair the table
    does not allow.
    """
    try:
        return TRANSITIONS[state, event]
    except KeyError:
        raise LocalProtocolError(f"{event.name} is not allowed in state {state.name}") from None


# --- pending requests and catch-ups -----------------------------------------


# Private bookkeeping, built on every push: plain slotted classes, which
# build several times faster than frozen ones.
@dataclass(slots=True)
class _Request:
    """A request the adapter has not answered yet."""

    label: ClassVar[str] = "a"


@dataclass(slots=True)
class _AuthRequest(_Request):
    label = "an Authenticate"


@dataclass(slots=True)
class _StoreRequest(_Request):
    """One store for one or more consecutive pushes of a repository, answered push by push."""

    label = "a StoreEvents"
    repository: str
    # Per push message, in arrival order: its ids as pushed (duplicates
    # included) and the words of its error should the store fail.
    pushes: list[tuple[tuple[str, ...], str]]
    events: dict[str, SyncEvent]  # the first event of each id, in push order
    principal: object


@dataclass(slots=True)
class _CatchUpRequest(_Request):
    label = "a FetchEvents or ListRepositories"


@dataclass(slots=True)
class _FetchRequest(_CatchUpRequest):
    label = "a FetchEvents"
    repository: str
    after_sequence: int
    limit: int


@dataclass(slots=True)
class _ListRequest(_CatchUpRequest):
    label = "a ListRepositories"


_R = TypeVar("_R", bound=_Request)


@dataclass(slots=True)
class _CatchUp:
    """One catch-up request, paging through its repositories in turn."""

    repositories: deque[str]  # the current one first
    complete_with: str | None  # the repository of the final sync_complete
    failure: str
    after_sequence: int = 0
    remaining: int | None = None  # the client's limit still to serve
    filter: Mapping[str, JsonValue] = field(default_factory=dict)
    unlisted: bool = False  # the repositories are to be asked from the adapter first


_Received: TypeAlias = Message | InvalidMessage

_PUSH_EVENT_FAILURE = "Failed to push event"

# Server-only messages a client must not send, by wire type (the Dart server
# answers them as unknown types).
_SERVER_ONLY_TYPES: Mapping[type[ServerMessage], str] = MappingProxyType(
    {
        AuthSuccess: "auth_success",
        Events: "events",
        Ack: "ack",
        SyncComplete: "sync_complete",
        Error: "error",
    }
)


# --- the session -------------------------------------------------------------

_DEFAULT_CONFIG = ServerConfig()


class ServerSession:
    """The protocol state machine of one server connection (message level).

    Feed it with :meth:`connection_made`, :meth:`receive_text` (or
    :meth:`receive_message`), :meth:`handle_timer`, the verdict methods and
    :meth:`deliver`; after each call drain :meth:`drain_actions` and re-arm
    one timer at :meth:`next_deadline`.
    """

    def __init__(
        self,
        config: ServerConfig = _DEFAULT_CONFIG,
        *,
        handshake_headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        self._config = config
        self._handshake_headers = tuple(handshake_headers)
        self._state = ServerState.AWAITING_AUTH
        # Kept by _move and auth_accepted: read on every message and every
        # broadcast, where a set lookup of the state would cost more.
        self._open = True
        self.authenticated = False
        self._opened = False
        self._principal: object = None
        self._actions: list[ServerAction] = []
        # The last StoreEvents emitted, its place in _actions, and the
        # request a consecutive push of its repository may still join.
        self._open_store: _StoreRequest | None = None
        self._open_store_at = 0
        self._last_request_id = 0
        self._pending: dict[int, _Request] = {}
        # Lists, not deques: both are short, and an idle connection keeps
        # them empty (56 bytes each, where an empty deque takes 760).
        self._held: list[_Received] = []
        self._catchups: list[_CatchUp] = []
        self._auth_deadline: float | None = None
        self._next_ping: float | None = None
        self._pong_deadline: float | None = None

    # --- observation ----------------------------------------------------

    @property
    def config(self) -> ServerConfig:
        """The configuration of this session."""
        return self._config

    @property
    def state(self) -> ServerState:
        """The current state."""
        return self._state

    @property
    def principal(self) -> object:
        """What ``auth_accepted`` last gave; ``None`` until then."""
        return self._principal

    authenticated: bool
    """True when credentials were accepted and the connection is open (read-only).

    A re-authentication in progress keeps it true: the earlier verdict
    holds until the new one arrives.
    """

    def drain_actions(self) -> list[ServerAction]:
        """Return the actions emitted since the last call, in order."""
        store = self._open_store
        if store is not None:
            self._close_store(store)
        actions, self._actions = self._actions, []
        return actions

    def next_deadline(self) -> float | None:
        """Return when :meth:`handle_timer` must be called next, or ``None``."""
        # min() of those set, without building a list after every input.
        deadline = self._auth_deadline
        for candidate in (self._pong_deadline, self._next_ping):
            if candidate is not None and (deadline is None or candidate < deadline):
                deadline = candidate
        return deadline

    # --- the connection ---------------------------------------------------

    def connection_made(self, now: float) -> None:
        """Start the session: the WebSocket is open; arm the auth timeout and the ping."""
        if self._opened or self._state is not ServerState.AWAITING_AUTH:
            raise LocalProtocolError("connection_made() may be called once, first")
        self._opened = True
        self._auth_deadline = now + self._config.auth_timeout
        if self._config.ping_interval is not None:
            self._next_ping = now + self._config.ping_interval

    def connection_lost(self, now: float) -> None:
        """End the session: the connection is gone, the state is CLOSED for good."""
        self._move(ServerInput.CONNECTION_LOST)
        self._forget_connection()

    def close(self, code: int, reason: str, now: float) -> None:
        """Close the connection with ``code`` (e.g. 1001 on shutdown, 1013 when slow).

        Closing again, or after the connection is gone, does nothing.
        """
        if code not in _VALID_CLOSE_CODES or code in _RESERVED_CLOSE_CODES:
            raise LocalProtocolError(f"{code} is not a close code an endpoint may send")
        self._close(code, reason)

    def handle_timer(self, now: float) -> None:
        """Fire every timer due at ``now`` (see :meth:`next_deadline`)."""
        if self._auth_deadline is not None and now >= self._auth_deadline:
            self._send(Error(message="Authentication timeout"))
            self._close(CloseCode.POLICY_VIOLATION, "authentication timeout")
            return
        if self._pong_deadline is not None and now >= self._pong_deadline:
            self._close(CloseCode.INTERNAL_ERROR, "heartbeat timeout")
            return
        interval = self._config.ping_interval
        if interval is not None and self._next_ping is not None and now >= self._next_ping:
            self._send(Ping())
            self._next_ping = now + interval
            if self._pong_deadline is None:
                self._pong_deadline = now + self._config.ping_timeout

    # --- input from the client ------------------------------------------

    def receive_text(self, text: str, now: float) -> None:
        """Handle a text message from the client.

        Invalid input is answered with an ``error`` message and reported with
        :class:`~lfws_core.actions.ProtocolErrorReported`; it is not fatal. A
        text over ``max_message_size`` closes the connection (1009).
        """
        if not self._receiving():
            return
        limit = self._config.max_message_size
        if size := utf8_size_over(text, limit):
            self._actions.append(
                ProtocolErrorReported(reason=f"Message too big: {size} bytes (limit {limit})")
            )
            self._close(CloseCode.MESSAGE_TOO_BIG, "message too big")
            return
        received: _Received
        try:
            received = decode_message(text)
        except InvalidMessage as exc:
            received = exc
        if type(received) is PushEvent and self._state is _AUTHENTICATED:
            # The usual message, straight to where _dispatch would take it.
            self._store(received.repository, (received.event,), _PUSH_EVENT_FAILURE)
        else:
            self._accept(received, now)

    def receive_message(self, message: Message, now: float) -> None:
        """Handle a decoded message from the client (as :meth:`receive_text`)."""
        if self._receiving():
            self._accept(message, now)

    # --- verdicts from the adapter ----------------------------------------

    def auth_accepted(self, request_id: int, principal: object, now: float) -> None:
        """Accept the credentials of ``Authenticate(request_id)``; send ``auth_success``."""
        if self._take(request_id, _AuthRequest) is None or not self._open:
            return
        self._move(ServerInput.AUTH_ACCEPTED)
        self.authenticated = True
        self._principal = principal
        self._auth_deadline = None
        self._send(AuthSuccess())
        while self._held and self._state is ServerState.AUTHENTICATED:
            self._dispatch(self._held.pop(0), now)

    def auth_rejected(self, request_id: int, reason: str, now: float) -> None:
        """Refuse the credentials of ``Authenticate(request_id)``: ``error``, then close 1008."""
        if self._take(request_id, _AuthRequest) is None or not self._open:
            return
        self._send(Error(message=f"Authentication failed: {reason}"))
        self._close(CloseCode.POLICY_VIOLATION, reason, ServerInput.AUTH_REJECTED)

    def events_stored(
        self,
        request_id: int,
        stored: Sequence[SyncEvent],
        duplicates: Sequence[str],
        now: float,
    ) -> None:
        """``StoreEvents(request_id)`` committed.

        ``stored`` are the newly stored events (with their ``serverSequence``),
        ``duplicates`` the ids that were stored before; together they must be
        exactly the ids of the request.
        """
        request = self._take(request_id, _StoreRequest)
        if request is None:
            return
        reported = [event.event_id for event in stored]
        reported += duplicates
        requested = request.events.keys()  # every id of every push, once
        if len(reported) != len(requested) or requested ^ reported:
            raise LocalProtocolError(
                "stored events and duplicates must be exactly the ids of the request"
            )
        for event in stored:
            if event.server_sequence is None:
                raise LocalProtocolError("stored events must carry their serverSequence")
        # Each push gets its own ack, as if it had been stored alone, and the
        # first push of an event id broadcasts it.
        repository = request.repository
        pushes = request.pushes
        if len(pushes) == 1:  # the usual case, in short
            self._send_ack(repository, pushes[0][0])
            if stored:
                self._actions.append(_events_stored(repository, tuple(stored)))
            return
        unclaimed = {event.event_id: event for event in stored}
        for ids, _ in pushes:
            self._send_ack(repository, ids)
            if unclaimed:
                mine = [unclaimed.pop(i) for i in dict.fromkeys(ids) if i in unclaimed]
                if mine:
                    self._actions.append(_events_stored(repository, tuple(mine)))

    def store_failed(
        self,
        request_id: int,
        reason: str,
        now: float,
        *,
        permanent: bool = False,
        code: str | None = None,
    ) -> None:
        """``StoreEvents(request_id)`` failed; nothing is acknowledged.

        The ``error`` names the events (``eventIds``) and a ``code``. By
        default the failure is transient (code ``unavailable``): the client
        keeps the events and sends them again. ``permanent`` means the
        authorizer or the store refused them for good (code ``forbidden``
        unless ``code`` says otherwise, one of
        :data:`~lfws_core.messages.PERMANENT_ERROR_CODES`): the client gives
        them up. A ``code`` must agree with ``permanent``.
        """
        if code is None:
            code = "forbidden" if permanent else "unavailable"
        elif not isinstance(code, str) or not code:
            raise LocalProtocolError(f"code must be a non-empty string, not {code!r}")
        elif (code in PERMANENT_ERROR_CODES) != permanent:
            kind = "permanent" if permanent else "transient"
            raise LocalProtocolError(f"code {code!r} does not name a {kind} failure")
        request = self._take(request_id, _StoreRequest)
        if request is None:
            return
        if len(request.pushes) > 1:
            # Stored together, failed together: each push is tried again alone,
            # so that one push's failure is no other's (as before they shared).
            for ids, failure in request.pushes:
                events = {event_id: request.events[event_id] for event_id in ids}
                alone = _StoreRequest(
                    request.repository, [(ids, failure)], events, request.principal
                )
                self._actions.append(self._store_action(self._register(alone), alone))
            return
        ((ids, failure),) = request.pushes
        unique = tuple(dict.fromkeys(ids))
        self._send(Error(message=f"{failure}: {reason}", event_ids=unique, code=code))

    def events_fetched(self, request_id: int, events: Sequence[SyncEvent], now: float) -> None:
        """``FetchEvents(request_id)`` returned ``events``, in sequence order."""
        request = self._take(request_id, _FetchRequest)
        if request is None or not self._open:
            return
        end = _page_end(events, request.after_sequence, request.limit)
        catchup = self._catchups[0]
        self._send_events(request.repository, events)
        if catchup.remaining is not None:
            catchup.remaining -= len(events)
        if len(events) == request.limit and catchup.remaining != 0:
            catchup.after_sequence = end
        else:
            catchup.repositories.popleft()
            catchup.after_sequence = 0
        self._serve_catchups()

    def fetch_failed(self, request_id: int, reason: str, now: float) -> None:
        """``FetchEvents`` or ``ListRepositories`` (``request_id``) failed.

        The client gets ``error`` and the catch-up request ends there, without
        ``sync_complete`` (as the Dart server does): it was not answered in
        full, so the client must not take itself to be caught up.
        """
        if self._take(request_id, _CatchUpRequest) is None or not self._open:
            return
        catchup = self._catchups.pop(0)
        self._send(Error(message=f"{catchup.failure}: {reason}"))
        self._serve_catchups()

    def repositories_listed(self, request_id: int, names: Sequence[str], now: float) -> None:
        """``ListRepositories(request_id)`` returned ``names``."""
        if self._take(request_id, _ListRequest) is None or not self._open:
            return
        self._catchups[0].repositories = deque(dict.fromkeys(names))
        self._serve_catchups()

    # --- input from the other connections ----------------------------------

    def deliver(
        self,
        repository: str,
        events: Sequence[SyncEvent],
        now: float,
        *,
        text: str | None = None,
    ) -> bool:
        """Send events another connection stored; return whether they were sent.

        ``text`` is the encoded ``events`` message when the caller encoded it
        once for every connection (one of :func:`encode_events`, so that it
        fits ``max_message_size``); without it, the session encodes and
        splits ``events`` itself. Only an authenticated, open connection
        gets them; an empty ``events`` sends nothing.
        """
        if not self.authenticated or not events:
            return False
        if text is None:
            self._send_events(repository, events)
        else:
            self._actions.append(_send_message(text))
        return True

    # --- internals ----------------------------------------------------------

    def _move(self, event: ServerInput) -> None:
        self._state = state = next_state(self._state, event)
        if state not in _OPEN_STATES:
            self._open = self.authenticated = False

    def _send(self, message: ServerMessage) -> None:
        # Nothing may follow our close frame: late answers are dropped here.
        if self._open:
            self._actions.append(_send_message(encode_message(message)))

    def _send_ack(self, repository: str, ids: tuple[str, ...]) -> None:
        if self._open:
            self._actions.append(_send_message(encode_push_ack(repository, ids)))

    def _send_events(self, repository: str, events: Sequence[SyncEvent]) -> None:
        limit = self._config.max_message_size
        for message in encode_events(repository, events, limit):
            if message.oversized:
                self._actions.append(
                    OversizedEventSent(
                        repository=repository,
                        event_id=message.events[0].event_id,
                        size=utf8_size_over(message.text, limit),
                        limit=limit,
                    )
                )
            self._actions.append(_send_message(message.text))

    def _close(
        self, code: int, reason: str, event: ServerInput = ServerInput.CLOSE_STARTED
    ) -> None:
        was_open = self._open
        self._move(event)
        if was_open:
            self._forget_connection()
            self._actions.append(CloseConnection(code=code, reason=_close_reason(reason)))

    def _forget_connection(self) -> None:
        # Pending requests stay known: their verdicts may still arrive.
        self._held.clear()
        self._catchups.clear()
        self._auth_deadline = self._next_ping = self._pong_deadline = None

    def _register(self, request: _Request) -> int:
        self._last_request_id += 1
        self._pending[self._last_request_id] = request
        return self._last_request_id

    def _take(self, request_id: int, kind: type[_R]) -> _R | None:
        request = self._pending.get(request_id)
        if isinstance(request, kind):
            del self._pending[request_id]
            return request
        if self._state is ServerState.CLOSED:
            return None
        raise LocalProtocolError(f"{request_id} is not {kind.label} request awaiting an answer")

    def _receiving(self) -> bool:
        if not self._opened:
            raise LocalProtocolError("connection_made() must come before received messages")
        # Any message at all proves the client alive.
        self._pong_deadline = None
        return self._open

    def _accept(self, received: _Received, now: float) -> None:
        if self._state is not _AUTHENTICATING:
            self._dispatch(received, now)
        elif len(self._held) < self._config.max_queued_before_auth:
            self._held.append(received)
        else:
            reason = "Too many messages while authenticating"
            self._report(reason)
            self._close(CloseCode.POLICY_VIOLATION, reason.lower())

    def _report(self, reason: str) -> None:
        self._send(Error(message=reason))
        self._actions.append(ProtocolErrorReported(reason=reason))

    def _dispatch(self, received: _Received, now: float) -> None:
        authenticated = self._state is _AUTHENTICATED
        match received:
            case InvalidMessage(reason=reason):
                self._report(reason)
            case Auth():
                self._authenticate(received, now)
            case Ping():
                self._send(Pong())
            case Pong():
                pass  # liveness only, recorded on arrival
            case EventsReceived(repository=repository, count=count):
                # Dart ignores it before auth too; an unauthenticated count means nothing.
                if authenticated:
                    self._actions.append(EventsConfirmed(repository=repository, count=count))
            case PushEvent() | PushEventsBatch() | RequestEvents() | RequestAllEvents() if (
                not authenticated
            ):
                self._send(Error(message="Not authenticated"))
            case PushEvent(repository=repository, event=event):
                self._store(repository, (event,), _PUSH_EVENT_FAILURE)
            case PushEventsBatch(repository=repository, events=events):
                self._store(repository, events, "Failed to push events batch")
            case RequestEvents():
                remaining = None if received.limit is None else max(received.limit, 0)
                self._queue_catchup(
                    _CatchUp(
                        repositories=deque([received.repository]),
                        complete_with=received.repository,
                        failure="Failed to fetch events",
                        after_sequence=received.after_sequence or 0,
                        remaining=remaining,
                        filter=received.filter,
                    )
                )
            case RequestAllEvents(repository=repository):
                self._queue_catchup(
                    _CatchUp(
                        repositories=deque([] if repository is None else [repository]),
                        complete_with=None,
                        failure="Failed to fetch all events",
                        unlisted=repository is None,
                    )
                )
            case _:
                self._report(f"Unknown message type: {_SERVER_ONLY_TYPES[type(received)]}")

    def _authenticate(self, message: Auth, now: float) -> None:
        self._move(ServerInput.AUTH_REQUESTED)
        # A first auth keeps the budget armed at connection_made; a re-auth gets its own.
        if self._auth_deadline is None:
            self._auth_deadline = now + self._config.auth_timeout
        request_id = self._register(_AuthRequest())
        self._actions.append(
            Authenticate(
                request_id=request_id,
                token=message.token,
                headers=message.headers,
                handshake_headers=self._handshake_headers,
            )
        )

    def _store(self, repository: str, events: Sequence[SyncEvent], failure: str) -> None:
        limit = self._config.max_batch_length
        if len(events) > limit:
            self._send(Error(message=f"Batch too large: {len(events)} events (limit {limit})"))
            return
        if not events:
            self._send_ack(repository, ())
            return
        ids = tuple([event.event_id for event in events])
        actions = self._actions
        store = self._open_store
        if store is not None:
            if self._open_store_at == len(actions) - 1 and store.repository == repository:
                # The pushes of one read become one store (one transaction);
                # each still gets its own ack.
                store.pushes.append((ids, failure))
                for event in events:
                    store.events.setdefault(event.event_id, event)
                return
            self._close_store(store)
        first: dict[str, SyncEvent] = {}
        for event in events:
            first.setdefault(event.event_id, event)
        request = _StoreRequest(repository, [(ids, failure)], first, self._principal)
        self._open_store = request
        self._open_store_at = len(actions)
        actions.append(self._store_action(self._register(request), request))

    def _close_store(self, store: _StoreRequest) -> None:
        """Put every event of the open ``store`` in its action: no push can join it any more."""
        self._open_store = None
        if len(store.pushes) > 1:  # joined by later pushes
            at = self._open_store_at
            action = self._actions[at]
            assert isinstance(action, StoreEvents)
            self._actions[at] = self._store_action(action.request_id, store)

    def _store_action(self, request_id: int, request: _StoreRequest) -> StoreEvents:
        return _store_events(
            request_id, request.repository, tuple(request.events.values()), request.principal
        )

    def _queue_catchup(self, catchup: _CatchUp) -> None:
        self._catchups.append(catchup)
        if len(self._catchups) == 1:
            self._serve_catchups()

    def _serve_catchups(self) -> None:
        """Ask for the next page of the current catch-up, or finish it."""
        while self._catchups:
            catchup = self._catchups[0]
            if catchup.unlisted:
                catchup.unlisted = False
                request_id = self._register(_ListRequest())
                self._actions.append(
                    ListRepositories(request_id=request_id, principal=self._principal)
                )
                return
            if catchup.repositories and catchup.remaining != 0:
                self._fetch(catchup, catchup.repositories[0])
                return
            self._send(SyncComplete(repository=catchup.complete_with))
            self._catchups.pop(0)

    def _fetch(self, catchup: _CatchUp, repository: str) -> None:
        limit = self._config.page_size
        if catchup.remaining is not None:
            limit = min(limit, catchup.remaining)
        request = _FetchRequest(repository, catchup.after_sequence, limit)
        self._actions.append(
            FetchEvents(
                request_id=self._register(request),
                repository=repository,
                after_sequence=catchup.after_sequence,
                limit=limit,
                filter=catchup.filter,
                principal=self._principal,
            )
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class EncodedEvents:
    """One ``events`` message of :func:`encode_events`: its events and its text."""

    events: tuple[SyncEvent, ...]
    text: str
    oversized: bool = False
    """A lone event over the size limit even alone, sent anyway."""


def encode_events(
    repository: str, events: Sequence[SyncEvent], max_size: int
) -> list[EncodedEvents]:
    """Encode ``events`` as ``events`` messages of at most ``max_size`` UTF-8 bytes, in order.

    The usual case costs one encoding: everything fits one message. A list
    that does not is split (:func:`~lfws_core.codec.encode_to_fit`), so a
    client whose limit is ``max_size`` can read every message.

    An event too big for a message of its own (stored under a larger limit)
    still gets one, marked ``oversized``: the server never withholds a stored
    event, and the client's own limit, which may well be larger, decides.
    Skipping it instead would move the client's cursor past an event it
    then never receives, even once the limits are fixed.
    """

    def encode(run: tuple[SyncEvent, ...]) -> str:
        return encode_message(Events(repository=repository, events=run))

    return [
        EncodedEvents(events=part.items, text=part.text, oversized=bool(part.oversize))
        for part in encode_to_fit(events, encode, max_size)
    ]


def _page_end(events: Sequence[SyncEvent], after_sequence: int, limit: int) -> int:
    """Check a fetched page and return the sequence it ends at."""
    if len(events) > limit:
        raise LocalProtocolError(f"fetched {len(events)} events for a limit of {limit}")
    end = after_sequence
    for event in events:
        if event.server_sequence is None or event.server_sequence <= end:
            raise LocalProtocolError(
                "fetched events must carry increasing serverSequence values after the cursor"
            )
        end = event.server_sequence
    return end


def _close_reason(reason: str) -> str:
    encoded = reason.encode("utf-8", "replace")[:_MAX_CLOSE_REASON_BYTES]
    # Cutting may split a character: drop the broken tail rather than fail.
    return encoded.decode("utf-8", "ignore")
