"""The server session, alone and behind its WebSocket, driven by a fuzzed script.

The script (see :mod:`fuzz.targets._input`) interleaves what a client sends
with what an adapter does: answer any pending request in any order (or fail
it), deliver events other connections stored, let time pass, close, lose the
transport. The adapter plays by the rules, so ``LocalProtocolError`` is
never expected, except from the deliberate misuse records, which must raise
it (or be ignored once the connection is gone) and change nothing.

Records: ``A`` answer a pending request (or fail it), ``W`` time passes,
``D`` deliver stored events, ``C`` close, ``L`` transport lost, ``M``
misuse; at the byte level also ``H`` answer a plain HTTP request and ``E``
end of input. Any other op delivers its payload: a text (session) or bytes
(connection).

Checked after every step:

* nothing raises out of the session or the connection;
* every text the server sends decodes as a server message; nothing follows
  its close; at the byte level every frame is well formed;
* no ``events``, ``ack`` or ``sync_complete`` and no store, fetch or list
  request before the credentials were accepted, and every request carries
  the principal accepted last;
* catch-up requests stay within the page size; pages are asked after the
  cursor the client gave.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lfws_core.actions import (
    Action,
    Authenticate,
    CloseConnection,
    CloseTransport,
    FetchEvents,
    HttpRequestReceived,
    ListRepositories,
    SendBytes,
    SendMessage,
    StoreEvents,
)
from lfws_core.codec import decode_message, encode_message
from lfws_core.connection import ServerConnection
from lfws_core.errors import LocalProtocolError
from lfws_core.events import SyncEvent
from lfws_core.messages import Ack, Events, Message, ServerMessage, SyncComplete
from lfws_core.server import ServerConfig, ServerSession, ServerState
from lfws_core.testing import MemoryEventLog
from lfws_core.ws import ServerConfig as WsServerConfig
from lfws_core.ws import encode_server_text_frame

from ._input import Payload, records
from ._wire import FrameReader
from .ws import MAX_HANDSHAKE_SIZE, MAX_MESSAGE_SIZE

__all__ = ["SESSION_CONFIG", "WS_CONFIG", "fuzz_server_connection", "fuzz_server_session"]

SESSION_CONFIG = ServerConfig(
    max_batch_length=4,
    page_size=3,
    max_message_size=MAX_MESSAGE_SIZE,
    auth_timeout=10.0,
    ping_interval=25.0,
    ping_timeout=10.0,
    max_queued_before_auth=4,
)
WS_CONFIG = WsServerConfig(
    path="/sync",
    allowed_origins=frozenset({"https://app.example"}),
    allow_missing_origin=True,
    max_handshake_size=MAX_HANDSHAKE_SIZE,
    max_message_size=MAX_MESSAGE_SIZE,
)

_STEPS = (0.0, 0.5, 1.0, 5.0, 9.9, 10.0, 25.0, 60.0)
_CLOSE_CODES = (1000, 1001, 1011, 1013, 4000)
_BAD_CLOSE_CODES = (999, 1004, 1005, 1006, 1015, 5000)
_STORE_FAILURES = ("unavailable", "forbidden", "invalid")
_Request = Authenticate | StoreEvents | FetchEvents | ListRepositories
_AFTER_AUTH = (Events, Ack, SyncComplete)


@dataclass
class _Adapter:
    """Answers a session's requests from an in-memory log, in the script's order."""

    log: MemoryEventLog = field(default_factory=MemoryEventLog)
    pending: list[_Request] = field(default_factory=list)
    http: list[HttpRequestReceived] = field(default_factory=list)
    principal: object = None
    accepted = 0
    now = 0.0
    close_sent = False

    def saw(self, action: Action) -> None:
        """Check one action and keep the requests for later answers."""
        if isinstance(action, _Request):
            if not isinstance(action, Authenticate):
                assert self.accepted, f"{action!r} before the credentials were accepted"
                assert action.principal == self.principal, f"{action!r}: stale principal"
            if isinstance(action, FetchEvents):
                assert 1 <= action.limit <= SESSION_CONFIG.page_size
                assert action.after_sequence >= 0
            self.pending.append(action)
        elif isinstance(action, HttpRequestReceived):
            self.http.append(action)
        elif isinstance(action, SendMessage):
            assert not self.close_sent, f"{action.text!r} sent after the close"
            self.sent(decode_message(action.text))
        elif isinstance(action, CloseConnection):
            assert not self.close_sent, "closed twice"
            self.close_sent = True

    def sent(self, message: Message) -> None:
        assert isinstance(message, ServerMessage), f"the server sent {message!r}"
        if isinstance(message, _AFTER_AUTH):
            assert self.accepted, f"{message!r} before the credentials were accepted"

    def answer(self, session: ServerSession, payload: Payload) -> None:
        """Answer (or fail) the pending request the payload picks."""
        if not self.pending:
            return
        request = self.pending.pop(payload.below(len(self.pending)))
        fail = payload.flag()
        rid, now = request.request_id, self.now
        if isinstance(request, Authenticate):
            if fail:
                session.auth_rejected(rid, "refused by the fuzzer", now)
            else:
                self.accepted += 1
                self.principal = f"principal-{self.accepted}"
                session.auth_accepted(rid, self.principal, now)
        elif fail:
            if isinstance(request, StoreEvents):
                code = _STORE_FAILURES[payload.below(len(_STORE_FAILURES))]
                session.store_failed(
                    rid, "refused", now, permanent=code != "unavailable", code=code
                )
            else:
                session.fetch_failed(rid, "disk unreadable", now)
        elif isinstance(request, StoreEvents):
            stored, duplicates = self.log.store(request.repository, request.events)
            session.events_stored(rid, stored, duplicates, now)
        elif isinstance(request, FetchEvents):
            events = self.log.fetch(request.repository, request.after_sequence, request.limit)
            session.events_fetched(rid, events, now)
        else:
            session.repositories_listed(rid, self.log.repositories(), now)

    def misuse(self, session: ServerSession, payload: Payload) -> None:
        """Make a call the API forbids: it must raise (or be ignored once closed)."""
        state = session.state
        try:
            if payload.flag():
                session.close(_BAD_CLOSE_CODES[payload.below(len(_BAD_CLOSE_CODES))], "", self.now)
            else:
                session.auth_accepted(10**9, "nobody", self.now)
        except LocalProtocolError:
            pass
        else:
            assert state is ServerState.CLOSED, "misuse was accepted"
        assert session.state is state
        assert not session.drain_actions(), "misuse changed something"

    def later(self, payload: Payload, deadline: float | None) -> float:
        """Let time pass: to the next deadline or by one of a few steps."""
        step = payload.below(len(_STEPS) + 1)
        if step == len(_STEPS) and deadline is not None:
            self.now = max(self.now, deadline)
        else:
            self.now += _STEPS[step % len(_STEPS)]
        return self.now

    def delivery(self, payload: Payload) -> tuple[str, tuple[SyncEvent, ...]] | None:
        """Events "another connection" stored: a slice of one repository's log."""
        names = self.log.repositories()
        if not names:
            return None
        name = names[payload.below(len(names))]
        events = tuple(self.log.events(name))
        start = payload.below(len(events))
        return name, events[start : start + 1 + payload.below(4)]


def fuzz_server_session(data: bytes) -> None:
    adapter = _Adapter()
    session = ServerSession(SESSION_CONFIG, handshake_headers=(("origin", "https://app.example"),))
    session.connection_made(0.0)
    for op, payload in records(data):
        now = adapter.now
        match chr(op):
            case "A":
                adapter.answer(session, payload)
            case "W":
                session.handle_timer(adapter.later(payload, session.next_deadline()))
            case "D":
                picked = adapter.delivery(payload)
                if picked is not None:
                    session.deliver(*picked, now)
            case "C":
                code = _CLOSE_CODES[payload.below(len(_CLOSE_CODES))]
                session.close(code, payload.text(), now)
            case "L":
                session.connection_lost(now)
            case "M":
                adapter.misuse(session, payload)
            case _:
                session.receive_text(payload.text(), now)
        for action in session.drain_actions():
            adapter.saw(action)
        if session.state is ServerState.CLOSED:
            assert session.next_deadline() is None


class _Output:
    """What a ServerConnection writes: an HTTP head, then frames, then the end."""

    def __init__(self) -> None:
        self.head = b""
        self.status: int | None = None
        self.frames = FrameReader(masked=False)
        self.closed = False
        self.seen = 0

    def write(self, data: bytes) -> None:
        assert not self.closed, "bytes written after CloseTransport"
        if self.status is not None:
            assert self.status == 101, "bytes written after an HTTP response"
            self.frames.feed(data)
            return
        self.head += data
        head, found, rest = self.head.partition(b"\r\n\r\n")
        if found:
            assert head.startswith(b"HTTP/1.1 "), f"not an HTTP response: {head[:40]!r}"
            self.status = int(head[9:12])
            if self.status == 101:
                self.frames.feed(rest)

    def close(self) -> None:
        assert not self.closed, "CloseTransport twice"
        self.closed = True
        self.frames.end()

    def new_messages(self) -> list[Message]:
        messages = self.frames.messages[self.seen :]
        self.seen = len(self.frames.messages)
        return messages


def fuzz_server_connection(data: bytes) -> None:
    adapter = _Adapter()
    output = _Output()
    lost = False
    connection = ServerConnection(
        SESSION_CONFIG, WS_CONFIG, handshake_timeout=10.0, close_timeout=5.0
    )
    connection.transport_made(0.0)
    for op, payload in records(data):
        now = adapter.now
        session = connection.session
        match chr(op):
            case "A":
                if session is not None:
                    adapter.answer(session, payload)
            case "W":
                connection.handle_timer(adapter.later(payload, connection.next_deadline()))
            case "D":
                picked = adapter.delivery(payload)
                if picked is not None:
                    repository, events = picked
                    text = encode_message(Events(repository=repository, events=events))
                    connection.deliver(
                        repository, events, now, text=text, frame=encode_server_text_frame(text)
                    )
            case "C":
                if session is not None:
                    code = _CLOSE_CODES[payload.below(len(_CLOSE_CODES))]
                    session.close(code, payload.text(), now)
            case "H":
                if adapter.http and not (lost or output.closed):
                    adapter.http.pop()
                    status = (200, 404, 405, 503)[payload.below(4)]
                    connection.send_http_response(status, [("X-Fuzz", "1")], payload.rest())
            case "L":
                lost = True
                connection.transport_lost(now)
            case "M":
                if session is not None:
                    adapter.misuse(session, payload)
            case "E":
                connection.receive_data(b"", now)
            case _:
                connection.receive_data(payload.rest(), now)
        for action in connection.drain_actions(now):
            if isinstance(action, SendBytes):
                output.write(action.data)
            elif isinstance(action, CloseTransport):
                output.close()
            else:
                adapter.saw(action)
        for message in output.new_messages():
            adapter.sent(message)
