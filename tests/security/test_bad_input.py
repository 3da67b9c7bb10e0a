"""The bad-input corpus: hostile bytes against a running server, one case per row.

Every case runs against the same live server (asyncio adapter, SQLite event
log, token authentication, a per-repository authorizer; see
:mod:`.live_server`) while a healthy client keeps editing. For each case:

* the server answers exactly as documented (``docs/protocol.md``): the
  ``error`` message, the close code and reason, or the HTTP status;
* the server stays up: ``/healthz`` answers 200 afterwards;
* the healthy client never lost its connection, and its next push is acked;
* the event log changed only where the case says it must (``stored``), and
  the rows that were there are untouched.
"""

from __future__ import annotations

import json
import os
import select
import socket
import struct
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lfws_core.close_codes import CloseCode
from lfws_core.messages import Ack, AuthSuccess, Events, Pong, SyncComplete

from .live_server import ADMIN, ORIGIN, USER, LiveServer, RawPeer, Snapshot, http

LIMIT = 64 * 1024
"""The server's max_message_size in this module (see live_server.OPTIONS)."""

# --- building blocks -------------------------------------------------------------


def frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    masked: bool = True,
    length: int | None = None,
) -> bytes:
    """A hand-made client frame; ``length`` overrides the declared payload length."""
    size = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | rsv << 4 | opcode])
    mask_bit = 0x80 if masked else 0
    if size < 126:
        head += bytes([mask_bit | size])
    elif size < 1 << 16:
        head += bytes([mask_bit | 126]) + struct.pack("!H", size)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", size)
    if not masked:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def wire(kind: str, **fields: object) -> str:
    return json.dumps({"type": kind, **fields}, separators=(",", ":"))


def event(**changes: object) -> dict[str, object]:
    """A valid insert event with a fresh id; ``changes`` replace fields (or ``DROP`` them)."""
    fields: dict[str, object] = {
        "_event_id": str(uuid.uuid4()),
        "_operation": 0,
        "_created_at": "2024-06-01T12:00:00.000Z",
        "_data_id": "doc-1",
        "_data": {"title": "hello"},
    }
    for name, value in changes.items():
        if value is DROP:
            del fields[name]
        else:
            fields[name] = value
    return fields


DROP = object()


def push(repository: str = "todos", **changes: object) -> str:
    return wire("push_event", repository=repository, event=event(**changes))


def upgrade(*lines: str, target: str = "/sync", method: str = "GET", version: str = "1.1") -> bytes:
    """An upgrade request; ``lines`` replace the default header of the same name ('' drops)."""
    headers = {
        "Host": "127.0.0.1",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version": "13",
    }
    for line in lines:
        name, _, value = line.partition(": ")
        headers.pop(name, None)
        if value:
            headers[name] = value
    head = [f"{method} {target} HTTP/{version}", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(head) + "\r\n\r\n").encode()


Attack = Callable[[LiveServer], None]


@dataclass(frozen=True)
class Case:
    name: str
    attack: Attack
    stored: Mapping[str, int] = field(default_factory=dict)
    """How many events each repository gains, by design (none elsewhere)."""


def answered(
    text: str,
    error: str,
    *,
    token: str | None = USER,
    event_ids: tuple[str, ...] = (),
    code: str | None = None,
) -> Attack:
    """``text`` (after auth, unless ``token`` is None) gets exactly this ``error``; no close."""

    def attack(live: LiveServer) -> None:
        with RawPeer(live.port) as peer:
            peer.authenticate(token) if token else peer.open()
            peer.send(text)
            peer.expect_error(error, event_ids=event_ids, code=code)
            peer.still_open()

    return attack


def forbidden(repository: str, *, batch: bool = False, token: str = USER) -> Attack:
    """A push the authorizer refuses: refused for good (``forbidden``), naming the events."""
    ids = (str(uuid.uuid4()), str(uuid.uuid4())) if batch else (str(uuid.uuid4()),)
    events = [event(_event_id=event_id) for event_id in ids]
    if batch:
        text = wire("push_events_batch", repository=repository, events=events)
        message = f"Failed to push events batch: no write access to {repository}"
    else:
        text = wire("push_event", repository=repository, event=events[0])
        message = f"Failed to push event: no write access to {repository}"
    return answered(text, message, token=token, event_ids=ids, code="forbidden")


def ignored(text: str, *, token: str | None = USER) -> Attack:
    """``text`` (after auth, unless ``token`` is None) gets no answer at all; no close."""

    def attack(live: LiveServer) -> None:
        with RawPeer(live.port) as peer:
            peer.authenticate(token) if token else peer.open()
            peer.send(text)
            peer.still_open()
            assert peer.errors() == []

    return attack


def closes(data: bytes, code: int, reason: str) -> Attack:
    """Raw ``data`` after auth makes the server close with ``code`` and ``reason``."""

    def attack(live: LiveServer) -> None:
        with RawPeer(live.port) as peer:
            peer.authenticate()
            peer.send_raw(data)
            peer.expect_close(code, reason)

    return attack


def refused(request: bytes, status: int, body: bytes, *, prefix: bool = False) -> Attack:
    """The raw HTTP ``request`` is answered with ``status`` and ``body`` (or a body prefix)."""

    def attack(live: LiveServer) -> None:
        got_status, headers, got_body = http(live.port, request)
        assert got_status == status, (got_status, got_body)
        assert got_body.startswith(body) if prefix else got_body == body, got_body
        if status >= 400:
            assert headers["connection"] == "close"

    return attack


# --- the cases that need more than one step ------------------------------------------------


def too_many_before_the_verdict(live: LiveServer) -> None:
    # Everything arrives in one read, before the authenticator's verdict.
    with RawPeer(live.port) as peer:
        peer.open()
        peer.send(wire("auth", token=USER), *[wire("ping")] * 40)
        peer.expect_close(CloseCode.POLICY_VIOLATION, "too many messages while authenticating")
        assert peer.errors() == ["Too many messages while authenticating"]


def refused_credentials(token: str | None, **headers: str) -> Attack:
    def attack(live: LiveServer) -> None:
        with RawPeer(live.port) as peer:
            peer.open()
            peer.send(wire("auth", **({"token": token} if token else {}), **headers))
            peer.expect_close(CloseCode.POLICY_VIOLATION, "invalid or missing token")
            assert peer.errors() == ["Authentication failed: invalid or missing token"]

    return attack


def silent_until_the_auth_timeout(live: LiveServer) -> None:
    with RawPeer(live.port) as peer:
        started = time.monotonic()
        peer.open()
        peer.expect_close(CloseCode.POLICY_VIOLATION, "authentication timeout")
        assert peer.errors() == ["Authentication timeout"]
        assert 0.9 < time.monotonic() - started < 4


def pushes_before_auth_then_auth(live: LiveServer) -> None:
    with RawPeer(live.port) as peer:
        peer.open()
        peer.send(*[push() for _ in range(200)])
        peer.read_until(lambda: len(peer.errors()) == 200)
        assert set(peer.errors()) == {"Not authenticated"}
        peer.send(wire("auth", token=USER))
        peer.still_open()
        assert not any(isinstance(m, Ack) for m in peer.messages)


def refused_reauth_closes(live: LiveServer) -> None:
    with RawPeer(live.port) as peer:
        peer.authenticate()
        peer.send(wire("auth", token="stolen"))
        peer.expect_close(CloseCode.POLICY_VIOLATION, "invalid or missing token")
        assert peer.errors() == ["Authentication failed: invalid or missing token"]


def admin_stores(live: LiveServer, repository: str) -> str:
    """Store one event in ``repository`` as the admin; return its id."""
    event_id = str(uuid.uuid4())
    with RawPeer(live.port) as admin:
        admin.authenticate(ADMIN)
        admin.send(push(repository, _event_id=event_id))
        admin.read_until(lambda: any(isinstance(m, Ack) for m in admin.messages))
    return event_id


def no_catch_up_leak(live: LiveServer) -> None:
    secret = admin_stores(live, "secret")
    shared = admin_stores(live, "shared")
    with RawPeer(live.port) as peer:
        peer.authenticate()
        peer.send(wire("request_all_events"))
        peer.read_until(lambda: any(isinstance(m, SyncComplete) for m in peer.messages))
        received = peer.received()
        assert secret not in received
        assert received[shared] == "shared"
        assert "secret" not in received.values()
        assert peer.errors() == []


def no_broadcast_leak(live: LiveServer) -> None:
    with RawPeer(live.port) as user, RawPeer(live.port) as admin:
        user.authenticate()
        admin.authenticate(ADMIN)
        secret, public = str(uuid.uuid4()), str(uuid.uuid4())
        admin.send(push("secret", _event_id=secret), push("todos", _event_id=public))
        # Broadcasts reach a connection in order: the secret one would come first.
        user.read_until(lambda: public in user.received())
        assert "secret" not in user.received().values()


def reauth_as_less_privileged(live: LiveServer) -> None:
    with RawPeer(live.port) as peer, RawPeer(live.port) as admin:
        peer.authenticate(ADMIN)
        admin.authenticate(ADMIN)
        peer.send(wire("auth", token=USER))
        peer.read_until(lambda: sum(isinstance(m, AuthSuccess) for m in peer.messages) == 2)
        peer.send(push("secret", _event_id="after-downgrade"))
        peer.expect_error(
            "Failed to push event: no write access to secret",
            event_ids=("after-downgrade",),
            code="forbidden",
        )
        secret, public = str(uuid.uuid4()), str(uuid.uuid4())
        admin.send(push("secret", _event_id=secret), push("todos", _event_id=public))
        peer.read_until(lambda: public in peer.received())
        assert secret not in peer.received()


def replayed_within_a_batch(live: LiveServer) -> None:
    first = event()
    again = {**first, "_data": {"title": "changed"}}
    with RawPeer(live.port) as peer:
        peer.authenticate()
        peer.send(wire("push_events_batch", repository="todos", events=[first, again]))
        peer.read_until(lambda: any(isinstance(m, Ack) for m in peer.messages))
    [ack] = [m for m in peer.messages if isinstance(m, Ack)]
    ids = (first["_event_id"], first["_event_id"])
    assert (ack.event_ids, dict(ack.repositories)) == (ids, {"todos": ids})
    [stored] = [e for e in live.snapshot()["todos"] if e["_event_id"] == first["_event_id"]]
    assert stored["_data"] == {"title": "hello"}


def replayed_across_connections(live: LiveServer) -> None:
    original = event()
    for data, token in (({"title": "hello"}, USER), ({"title": "overwritten?"}, ADMIN)):
        with RawPeer(live.port) as peer:
            peer.authenticate(token)
            peer.send(wire("push_event", repository="todos", event={**original, "_data": data}))
            peer.read_until(lambda: any(isinstance(m, Ack) for m in peer.messages))
            [ack] = [m for m in peer.messages if isinstance(m, Ack)]
            assert ack.event_ids == (original["_event_id"],)
    [stored] = [e for e in live.snapshot()["todos"] if e["_event_id"] == original["_event_id"]]
    assert stored["_data"] == {"title": "hello"}


def cursor_past_the_end(after: int) -> Attack:
    def attack(live: LiveServer) -> None:
        with RawPeer(live.port) as peer:
            peer.authenticate()
            peer.send(wire("request_events", repository="todos", afterSequence=after))
            peer.read_until(lambda: any(isinstance(m, SyncComplete) for m in peer.messages))
            assert [m for m in peer.messages if isinstance(m, Events | SyncComplete)] == [
                SyncComplete(repository="todos")
            ]

    return attack


def websocket_ping_flood(live: LiveServer) -> None:
    with RawPeer(live.port) as peer:
        peer.authenticate()
        peer.send_raw(b"".join(frame(0x9, b"12345678") for _ in range(2000)))
        peer.read_until(lambda: peer.pongs == 2000)
        peer.still_open()


def message_ping_flood(live: LiveServer) -> None:
    with RawPeer(live.port) as peer:
        peer.authenticate()
        peer.send(*[wire("ping")] * 2000)
        peer.read_until(lambda: sum(isinstance(m, Pong) for m in peer.messages) == 2000)
        peer.still_open()


def ping_flood_without_reading(live: LiveServer) -> None:
    # The pongs pile up in the server's send buffer: the client is too slow.
    with RawPeer(live.port, receive_buffer=4096) as peer:
        peer.authenticate()
        burst = frame(0x9, b"p" * 125) * 500
        for _ in range(400):
            peer.send_raw(burst)
            # Stop once the server gave up on us: pings it has not read when
            # it closes the socket would make the kernel reset the connection.
            if not live.is_authenticated(peer.name):
                break
        peer.expect_close(CloseCode.TRY_AGAIN_LATER, "client too slow: resume from your cursor")


def pong_flood(live: LiveServer) -> None:
    with RawPeer(live.port) as peer:
        peer.authenticate()
        peer.send_raw(b"".join(frame(0xA, b"unsolicited") for _ in range(2000)))
        peer.still_open()


def slowloris(dribble: bool) -> Attack:
    """Half a request head, then silence or a byte at a time: dropped at handshake_timeout."""

    def attack(live: LiveServer) -> None:
        with socket.create_connection(("127.0.0.1", live.port), timeout=5) as sock:
            started = time.monotonic()
            request = upgrade()
            sock.sendall(request[:40])
            received = b""
            if dribble:
                sock.settimeout(0.1)
                for byte in request[40:]:
                    try:
                        sock.sendall(bytes([byte]))
                        received = sock.recv(100)
                    except TimeoutError:
                        continue
                    except OSError:
                        break
                    if not received:
                        break
            else:
                received = sock.recv(100)
            assert received == b"", received
            assert 0.4 < time.monotonic() - started < 3

    return attack


def many_slowloris(live: LiveServer) -> None:
    sockets = [socket.create_connection(("127.0.0.1", live.port), timeout=5) for _ in range(15)]
    try:
        for sock in sockets:
            sock.sendall(b"GET /sync HTTP/1.1\r\nHost: x\r\n")
        live.healthy_push_is_acked()  # while they hang on
        for sock in sockets:
            assert sock.recv(100) == b""
    finally:
        for sock in sockets:
            sock.close()


def connection_flood(live: LiveServer) -> None:
    # max_connections is 24 and the healthy client holds one.
    sockets = [socket.create_connection(("127.0.0.1", live.port), timeout=5) for _ in range(30)]
    refusal = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    try:
        # The refusals come at once; the accepted wait for a head (handshake_timeout 0.5 s).
        answered: dict[socket.socket, bytes] = {}
        deadline = time.monotonic() + 0.3
        while len(answered) < 7 and time.monotonic() < deadline:
            readable, _, _ = select.select([s for s in sockets if s not in answered], [], [], 0.05)
            for sock in readable:
                answered[sock] = sock.recv(200)
        assert list(answered.values()) == [refusal] * 7
        live.healthy_push_is_acked()  # while the server is full
        for sock in sockets:
            if sock not in answered:
                assert sock.recv(200) == b""  # dropped at the handshake timeout
    finally:
        for sock in sockets:
            sock.close()


def reset_flood(live: LiveServer) -> None:
    for _ in range(200):
        sock = socket.create_connection(("127.0.0.1", live.port), timeout=5)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()  # RST


def wrong_origin(origin: str) -> Attack:
    def attack(live: LiveServer) -> None:
        with RawPeer(live.port, origin=origin) as peer:
            peer.flush()
            peer.read_to_end()
        assert peer.rejected is not None
        assert (peer.rejected.status, peer.rejected.body) == (403, b"origin not allowed")

    return attack


def exactly_at_the_limit(live: LiveServer) -> None:
    text = wire("ping")
    with RawPeer(live.port) as peer:
        peer.authenticate()
        peer.send(text + " " * (LIMIT - len(text)))
        peer.read_until(lambda: any(isinstance(m, Pong) for m in peer.messages))
        peer.send(text + " " * (LIMIT - len(text) + 1))
        peer.expect_close(CloseCode.MESSAGE_TOO_BIG, f"message larger than {LIMIT} bytes")


def duplicate_repository_stores_in_the_last(live: LiveServer) -> None:
    # Duplicate keys: the last one wins (as Dart's jsonDecode), never the first.
    stored = event()
    text = '{"type":"push_event","repository":"secret","repository":"todos","event":%s}'
    with RawPeer(live.port) as peer:
        peer.authenticate()
        peer.send(text % json.dumps(stored))
        peer.read_until(lambda: any(isinstance(m, Ack) for m in peer.messages))
        assert peer.errors() == []
    assert stored["_event_id"] in {e["_event_id"] for e in live.snapshot()["todos"]}


def deep(levels: int) -> str:
    return '{"type":"ping","x":' + "[" * levels + "]" * levels + "}"


E = event(_event_id="fixed-id")  # for cases that never store it

# --- the corpus -----------------------------------------------------------------------

NOT_AUTHENTICATED = "Not authenticated"

CASES = [
    # Malformed JSON and its strict grammar.
    Case(
        "json-truncated",
        answered('{"type": "ping"', "not valid JSON: Expecting ',' delimiter at line 1 column 16"),
    ),
    Case(
        "json-single-quotes",
        answered(
            "{'type': 'ping'}",
            "not valid JSON: Expecting property name enclosed in double quotes at line 1 column 2",
        ),
    ),
    Case(
        "json-trailing-data",
        answered('{"type":"ping"} x', "trailing data after the JSON value at line 1 column 17"),
    ),
    Case("json-empty", answered("", "empty message")),
    Case("json-blank", answered("  \n ", "empty message")),
    Case("json-bom", answered('\ufeff{"type":"ping"}', "starts with a byte order mark (BOM)")),
    Case(
        "json-nan",
        answered('{"type":"ping","x":NaN}', "NaN is not valid JSON (numbers must be finite)"),
    ),
    Case(
        "json-infinity",
        answered(
            '{"type":"ping","x":-Infinity}', "-Infinity is not valid JSON (numbers must be finite)"
        ),
    ),
    Case(
        "json-float-overflow",
        answered('{"type":"ping","x":1e400}', "number 1e400 is too large for a float"),
    ),
    Case(
        "json-int-over-64-bits",
        answered(
            '{"type":"ping","x":18446744073709551616}', "integer outside the 64-bit signed range"
        ),
    ),
    Case(
        "json-int-5000-digits",
        answered(
            '{"type":"ping","x":' + "9" * 5000 + "}", "integer outside the 64-bit signed range"
        ),
    ),
    Case("json-nesting-65", answered(deep(64), "nesting deeper than 64 levels")),
    Case("json-nesting-30000", answered(deep(30000), "nesting deeper than 64 levels")),
    Case("json-nesting-64-ok", ignored('{"type":"pong","x":' + "[" * 63 + "]" * 63 + "}")),
    Case(
        "json-escaped-lone-surrogate",
        answered(push(_data={"t": "\ud800"}), "lone surrogate in a string"),
    ),
    Case(
        "json-duplicate-type-last-wins",
        answered('{"type":"ping","type":"subscribe"}', "unknown message type 'subscribe'"),
    ),
    Case(
        "json-duplicate-repository-last-wins",
        answered(
            '{"type":"push_event","repository":"todos","repository":"secret","event":'
            + json.dumps(event(_event_id="dup-key-1"))
            + "}",
            "Failed to push event: no write access to secret",
            event_ids=("dup-key-1",),
            code="forbidden",
        ),
    ),
    Case(
        "json-duplicate-repository-stores-in-the-last",
        duplicate_repository_stores_in_the_last,
        {"todos": 1},
    ),
    Case(
        "before-auth-events-received-ignored",
        ignored(wire("events_received", repository="todos", count=3), token=None),
    ),
    # Not a message.
    Case("not-an-object-array", answered('[{"type":"ping"}]', "a message must be a JSON object")),
    Case("not-an-object-string", answered('"ping"', "a message must be a JSON object")),
    Case("not-an-object-null", answered("null", "a message must be a JSON object")),
    Case("type-missing", answered('{"repository":"todos"}', "message is missing type")),
    Case("type-not-a-string", answered('{"type":7}', "message type must be a string")),
    Case("type-null", answered('{"type":null}', "message type must be a string")),
    Case("type-unknown", answered('{"type":"subscribe"}', "unknown message type 'subscribe'")),
    Case("type-unknown-long", answered(wire("x" * 5000), f"unknown message type '{'x' * 40}'")),
    Case(
        "type-server-only-ack", answered(wire("ack", eventIds=["a"]), "Unknown message type: ack")
    ),
    Case(
        "type-server-only-events",
        answered(wire("events", repository="todos", events=[]), "Unknown message type: events"),
    ),
    Case(
        "type-server-only-auth-success",
        answered(wire("auth_success"), "Unknown message type: auth_success"),
    ),
    Case(
        "type-server-only-sync-complete",
        answered(wire("sync_complete"), "Unknown message type: sync_complete"),
    ),
    Case(
        "type-server-only-error",
        answered(wire("error", message="x"), "Unknown message type: error"),
    ),
    # Missing fields and wrong types.
    Case(
        "push-missing-repository",
        answered(wire("push_event", event=E), "push_event is missing repository"),
    ),
    Case(
        "push-empty-repository",
        answered(push(""), "push_event repository must be a non-empty string"),
    ),
    Case(
        "push-repository-not-a-string",
        answered(
            wire("push_event", repository=5, event=E),
            "push_event repository must be a non-empty string",
        ),
    ),
    Case(
        "push-missing-event",
        answered(wire("push_event", repository="todos"), "push_event is missing event"),
    ),
    Case(
        "push-event-not-an-object",
        answered(
            wire("push_event", repository="todos", event=[E]),
            "push_event event: an event must be a JSON object",
        ),
    ),
    Case(
        "event-missing-id",
        answered(push(_event_id=DROP), "push_event event: event is missing _event_id"),
    ),
    Case(
        "event-empty-id",
        answered(push(_event_id=""), "push_event event: event _event_id must not be empty"),
    ),
    Case(
        "event-id-not-a-string",
        answered(push(_event_id=12), "push_event event: event _event_id must be a string"),
    ),
    Case(
        "event-unknown-operation",
        answered(push(_operation=5), "push_event event: unknown _operation 5"),
    ),
    Case(
        "event-operation-bool",
        answered(
            push(_operation=True),
            "push_event event: _operation must be 0, 1, 2 or an operation name",
        ),
    ),
    Case(
        "event-bad-date",
        answered(
            push(_created_at="yesterday"),
            "push_event event: _created_at is not ISO-8601: 'yesterday'",
        ),
    ),
    Case(
        "event-date-out-of-range",
        answered(push(_created_at=10**18), "push_event event: _created_at is out of range"),
    ),
    Case(
        "event-missing-data",
        answered(push(_data=DROP), "push_event event: event _data is required for insert"),
    ),
    Case(
        "event-data-not-an-object",
        answered(push(_data=[1]), "push_event event: event _data must be an object or null"),
    ),
    Case(
        "event-negative-sequence",
        answered(
            push(serverSequence=-1),
            "push_event event: event serverSequence must be a positive integer",
        ),
    ),
    Case(
        "batch-not-a-list",
        answered(
            wire("push_events_batch", repository="todos", events={}),
            "push_events_batch events must be a list of events",
        ),
    ),
    Case(
        "batch-one-bad-event-stores-none",
        answered(
            wire("push_events_batch", repository="todos", events=[event(), event(_data_id=DROP)]),
            "push_events_batch events: event is missing _data_id",
        ),
    ),
    Case(
        "batch-too-large-stores-none",
        answered(
            wire("push_events_batch", repository="todos", events=[event() for _ in range(51)]),
            "Batch too large: 51 events (limit 50)",
        ),
    ),
    Case(
        "auth-token-not-a-string",
        answered(wire("auth", token=1), "auth token must be a string or null"),
    ),
    Case(
        "auth-header-not-a-string",
        answered(wire("auth", token=USER, **{"x-app": 2}), "auth header 'x-app' must be a string"),
    ),
    Case(
        "received-negative-count",
        answered(
            wire("events_received", repository="todos", count=-1),
            "events_received count must be an integer >= 0",
        ),
    ),
    Case(
        "request-all-empty-repository",
        answered(
            wire("request_all_events", repository=""),
            "request_all_events repository must be a non-empty string",
        ),
    ),
    # Cursors.
    Case(
        "cursor-negative",
        answered(
            wire("request_events", repository="todos", afterSequence=-1),
            "request_events afterSequence must be an integer >= 0",
        ),
    ),
    Case(
        "cursor-over-64-bits",
        answered(
            wire("request_events", repository="todos", afterSequence=2**63),
            "integer outside the 64-bit signed range",
        ),
    ),
    Case(
        "cursor-a-string",
        answered(
            wire("request_events", repository="todos", afterSequence="5"),
            "request_events afterSequence must be an integer >= 0",
        ),
    ),
    Case(
        "cursor-a-float",
        answered(
            wire("request_events", repository="todos", afterSequence=1.5),
            "request_events afterSequence must be an integer >= 0",
        ),
    ),
    Case(
        "cursor-a-bool",
        answered(
            wire("request_events", repository="todos", afterSequence=True),
            "request_events afterSequence must be an integer >= 0",
        ),
    ),
    Case(
        "cursor-limit-zero",
        answered(
            wire("request_events", repository="todos", limit=0),
            "request_events limit must be an integer >= 1",
        ),
    ),
    Case("cursor-max-int64", cursor_past_the_end(2**63 - 1)),
    Case("cursor-past-the-end", cursor_past_the_end(10**9)),
    # Before authentication.
    Case("before-auth-push", answered(push(), NOT_AUTHENTICATED, token=None)),
    Case(
        "before-auth-batch",
        answered(
            wire("push_events_batch", repository="todos", events=[event()]),
            NOT_AUTHENTICATED,
            token=None,
        ),
    ),
    Case(
        "before-auth-request-events",
        answered(
            wire("request_events", repository="todos", afterSequence=0),
            NOT_AUTHENTICATED,
            token=None,
        ),
    ),
    Case(
        "before-auth-request-all",
        answered(wire("request_all_events"), NOT_AUTHENTICATED, token=None),
    ),
    Case("before-auth-200-pushes", pushes_before_auth_then_auth),
    Case("before-auth-no-auth-at-all", silent_until_the_auth_timeout),
    Case("before-auth-flood-during-verdict", too_many_before_the_verdict),
    Case("auth-wrong-token", refused_credentials("stolen")),
    Case("auth-no-token", refused_credentials(None)),
    Case("auth-wrong-bearer-header", refused_credentials(None, authorization="Bearer stolen")),
    Case("auth-refused-reauth", refused_reauth_closes),
    # Repositories the principal may not access.
    Case("authz-push-secret", forbidden("secret")),
    Case("authz-batch-secret", forbidden("secret", batch=True)),
    Case("authz-push-read-only", forbidden("shared")),
    Case(
        "authz-request-secret",
        answered(
            wire("request_events", repository="secret", afterSequence=0),
            "Failed to fetch events: no read access to secret",
        ),
    ),
    Case(
        "authz-request-all-secret",
        answered(
            wire("request_all_events", repository="secret"),
            "Failed to fetch all events: no read access to secret",
        ),
    ),
    Case("authz-failing-authorizer-denies-writes", forbidden("explodes", token=ADMIN)),
    Case(
        "authz-failing-authorizer-denies-reads",
        answered(
            wire("request_events", repository="explodes", afterSequence=0),
            "Failed to fetch events: no read access to explodes",
            token=ADMIN,
        ),
    ),
    Case("authz-no-catch-up-leak", no_catch_up_leak, {"secret": 1, "shared": 1}),
    Case("authz-no-broadcast-leak", no_broadcast_leak, {"secret": 1, "todos": 1}),
    Case("authz-reauth-downgrades", reauth_as_less_privileged, {"secret": 1, "todos": 1}),
    # Replayed event ids.
    Case("replay-within-a-batch", replayed_within_a_batch, {"todos": 1}),
    Case("replay-across-connections", replayed_across_connections, {"todos": 1}),
    # WebSocket framing.
    Case(
        "frame-binary",
        closes(
            frame(0x2, b"\x00\x01"), CloseCode.UNSUPPORTED_DATA, "binary messages are not supported"
        ),
    ),
    Case(
        "frame-unmasked",
        closes(
            frame(0x1, b'{"type":"ping"}', masked=False),
            CloseCode.PROTOCOL_ERROR,
            "client frames must be masked",
        ),
    ),
    Case(
        "frame-reserved-bits",
        closes(
            frame(0x1, b"{}", rsv=4),
            CloseCode.PROTOCOL_ERROR,
            "reserved bits set but no extension was negotiated",
        ),
    ),
    Case(
        "frame-unknown-opcode",
        closes(frame(0x3, b""), CloseCode.PROTOCOL_ERROR, "unknown opcode 0x3"),
    ),
    Case(
        "frame-unknown-control-opcode",
        closes(frame(0xB, b""), CloseCode.PROTOCOL_ERROR, "unknown opcode 0xb"),
    ),
    Case(
        "frame-fragmented-ping",
        closes(frame(0x9, b"x", fin=False), CloseCode.PROTOCOL_ERROR, "fragmented control frame"),
    ),
    Case(
        "frame-long-ping",
        closes(
            frame(0x9, b"x" * 126), CloseCode.PROTOCOL_ERROR, "control frame payload over 125 bytes"
        ),
    ),
    Case(
        "frame-stray-continuation",
        closes(
            frame(0x0, b"x"),
            CloseCode.PROTOCOL_ERROR,
            "continuation frame without a message to continue",
        ),
    ),
    Case(
        "frame-interleaved-message",
        closes(
            frame(0x1, b"{", fin=False) + frame(0x1, b"{}"),
            CloseCode.PROTOCOL_ERROR,
            "new message before the previous one ended",
        ),
    ),
    Case(
        "frame-length-msb",
        closes(
            frame(0x1, b"", length=1 << 63),
            CloseCode.PROTOCOL_ERROR,
            "frame length has its most significant bit set",
        ),
    ),
    Case(
        "frame-declared-too-big",
        closes(
            frame(0x1, b"", length=LIMIT + 1),
            CloseCode.MESSAGE_TOO_BIG,
            f"message larger than {LIMIT} bytes",
        ),
    ),
    Case(
        "frame-fragments-too-big",
        closes(
            frame(0x1, b" " * 30000, fin=False)
            + frame(0x0, b" " * 30000, fin=False)
            + frame(0x0, b" " * 6000),
            CloseCode.MESSAGE_TOO_BIG,
            f"message larger than {LIMIT} bytes",
        ),
    ),
    Case("frame-message-at-the-limit", exactly_at_the_limit),
    Case(
        "frame-close-one-byte",
        closes(frame(0x8, b"\x03"), CloseCode.PROTOCOL_ERROR, "close frame with a 1-byte payload"),
    ),
    Case(
        "frame-close-bad-code",
        closes(
            frame(0x8, struct.pack("!H", 999)), CloseCode.PROTOCOL_ERROR, "invalid close code 999"
        ),
    ),
    Case(
        "frame-close-reserved-code",
        closes(
            frame(0x8, struct.pack("!H", 1005)), CloseCode.PROTOCOL_ERROR, "invalid close code 1005"
        ),
    ),
    Case(
        "frame-close-bad-utf8-reason",
        closes(
            frame(0x8, struct.pack("!H", 1000) + b"\xff"),
            CloseCode.INVALID_PAYLOAD,
            "close reason is not valid UTF-8",
        ),
    ),
    # Invalid UTF-8 and lone surrogates on the wire.
    Case(
        "utf8-invalid-byte",
        closes(
            frame(0x1, b'{"type":"ping","x":"\xff"}'),
            CloseCode.INVALID_PAYLOAD,
            "text message is not valid UTF-8",
        ),
    ),
    Case(
        "utf8-overlong",
        closes(
            frame(0x1, b'{"type":"\xc0\xaf"}'),
            CloseCode.INVALID_PAYLOAD,
            "text message is not valid UTF-8",
        ),
    ),
    Case(
        "utf8-encoded-surrogate",
        closes(
            frame(0x1, b'{"type":"\xed\xa0\x80"}'),
            CloseCode.INVALID_PAYLOAD,
            "text message is not valid UTF-8",
        ),
    ),
    Case(
        "utf8-split-across-fragments",
        closes(
            frame(0x1, b'{"x":"\xe2\x82', fin=False) + frame(0x0, b'"}'),
            CloseCode.INVALID_PAYLOAD,
            "text message is not valid UTF-8",
        ),
    ),
    # Floods.
    Case("flood-websocket-pings", websocket_ping_flood),
    Case("flood-message-pings", message_ping_flood),
    Case("flood-pings-never-read", ping_flood_without_reading),
    Case("flood-unsolicited-pongs", pong_flood),
    Case("flood-connections", connection_flood),
    Case("flood-connection-resets", reset_flood),
    Case("slowloris-silent", slowloris(dribble=False)),
    Case("slowloris-dribble", slowloris(dribble=True)),
    Case("slowloris-many", many_slowloris),
    # Bad HTTP and bad upgrades.
    Case("http-garbage", refused(b"GARBAGE\r\n\r\n", 400, b"invalid HTTP request: ", prefix=True)),
    Case(
        "http-bad-header-name",
        refused(
            b"GET /sync HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n",
            400,
            b"invalid HTTP request: ",
            prefix=True,
        ),
    ),
    Case(
        "http-head-too-large",
        refused(upgrade("X-Padding: " + "a" * 20000), 431, b"request head larger than 16384 bytes"),
    ),
    Case(
        "http-not-found",
        refused(
            b"GET /admin HTTP/1.1\r\nHost: x\r\n\r\n",
            404,
            b"not found; the WebSocket endpoint is /sync\n",
        ),
    ),
    Case(
        "http-post",
        refused(
            b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
            405,
            b"method not allowed\n",
        ),
    ),
    Case(
        "upgrade-wrong-path",
        refused(upgrade(target="/other"), 404, b"no WebSocket endpoint at /other"),
    ),
    Case(
        "upgrade-post",
        refused(upgrade(method="POST"), 400, b"a WebSocket upgrade is an HTTP/1.1 GET"),
    ),
    Case(
        "upgrade-http-1.0",
        refused(upgrade(version="1.0"), 400, b"a WebSocket upgrade is an HTTP/1.1 GET"),
    ),
    Case(
        "upgrade-no-connection-header",
        refused(upgrade("Connection: keep-alive"), 400, b"missing Connection: Upgrade"),
    ),
    Case(
        "upgrade-no-version",
        refused(upgrade("Sec-WebSocket-Version: "), 400, b"missing Sec-WebSocket-Version"),
    ),
    Case(
        "upgrade-old-version",
        refused(upgrade("Sec-WebSocket-Version: 8"), 426, b"unsupported Sec-WebSocket-Version"),
    ),
    Case(
        "upgrade-no-key",
        refused(upgrade("Sec-WebSocket-Key: "), 400, b"missing or malformed Sec-WebSocket-Key"),
    ),
    Case(
        "upgrade-short-key",
        refused(
            upgrade("Sec-WebSocket-Key: c2hvcnQ="), 400, b"missing or malformed Sec-WebSocket-Key"
        ),
    ),
    Case(
        "upgrade-key-not-base64",
        refused(
            upgrade("Sec-WebSocket-Key: not base64 at all!!"),
            400,
            b"missing or malformed Sec-WebSocket-Key",
        ),
    ),
    Case("origin-wrong", wrong_origin("https://evil.example")),
    Case("origin-null", wrong_origin("null")),
    Case("origin-lookalike", wrong_origin(ORIGIN + ".evil.example")),
]


# --- the test ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = LiveServer(Path(tmp_path_factory.mktemp("bad-input")) / "events.db")
    server.start()
    yield server
    server.stop()


def assert_only(before: Snapshot, after: Snapshot, stored: Mapping[str, int]) -> None:
    """Old rows unchanged; each repository gained exactly ``stored[name]`` rows."""
    for name in before.keys() | after.keys() | stored.keys():
        old, new = before.get(name, []), after.get(name, [])
        assert new[: len(old)] == old, f"rows of {name} changed"
        assert len(new) - len(old) == stored.get(name, 0), f"{name}: {len(new) - len(old)} new"


def test_the_corpus_is_large_and_named_uniquely() -> None:
    assert len(CASES) >= 60
    assert len({case.name for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_bad_input(live: LiveServer, case: Case) -> None:
    live.wait_for_connections(1)  # only the healthy client
    before, states = live.snapshot(), live.healthy_states()

    case.attack(live)

    live.wait_for_connections(1)
    assert_only(before, live.snapshot(), case.stored)
    status, _, body = http(live.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (status, json.loads(body)["status"]) == (200, "ok")
    live.healthy_push_is_acked()
    assert live.healthy_states() == states, "the healthy client lost its connection"
