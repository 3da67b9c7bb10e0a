"""Byte-level connections: the sessions composed with the WebSocket layer.

Two ways in. :class:`~lfws_core.testing.ClientServerPair` joins real client
and server connections by in-memory transports, and the assertions read the
bytes on the wire back as frames and protocol messages. Hand-driven tests put
one connection against a scripted peer (a plain ``WsServer`` or ``WsClient``,
or raw bytes) to reach the races and failures a pair never produces.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from lfws_core.actions import (
    Action,
    ApplyEvents,
    Authenticate,
    CloseTransport,
    ConnectionState,
    ConnectionStateChanged,
    CredentialsNeeded,
    EventsConfirmed,
    FetchEvents,
    HandshakeRejected,
    HttpRequestReceived,
    ListRepositories,
    MarkSynced,
    OpenConnection,
    ReconnectScheduled,
    SendBytes,
    ServerErrorReported,
    SyncCompleted,
)
from lfws_core.client import ClientConfig, PushResult
from lfws_core.codec import decode_message, encode_message
from lfws_core.connection import (
    CLOSE_TIMEOUT,
    HANDSHAKE_TIMEOUT,
    ClientConnection,
    ServerConnection,
)
from lfws_core.errors import LocalProtocolError
from lfws_core.events import Operation, SyncEvent
from lfws_core.messages import (
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
    RequestAllEvents,
    RequestEvents,
    SyncComplete,
)
from lfws_core.server import ServerConfig, ServerState
from lfws_core.testing import ClientServerPair, SplitMix64
from lfws_core.ws import (
    Closed,
    Opened,
    PongReceived,
    TextMessage,
    UpgradeRequest,
    WsClient,
    WsEvent,
    WsServer,
    encode_server_text_frame,
)
from lfws_core.ws import ServerConfig as WsServerConfig

S = ConnectionState
T0 = datetime(2026, 1, 1, tzinfo=UTC)
URL = "ws://lfws.test/"

OP_TEXT, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x8, 0x9, 0xA


def event(n: int, data_id: str = "d1") -> SyncEvent:
    return SyncEvent(
        event_id=f"e{n}",
        operation=Operation.INSERT,
        data_id=data_id,
        created_at=T0 + timedelta(seconds=n),
        data={"n": n},
    )


# --- reading the wire, independently of the code under test -------------------


@dataclass(frozen=True)
class Frame:
    opcode: int
    fin: bool
    masked: bool
    payload: bytes  # unmasked


def parse_frames(data: bytes) -> list[Frame]:
    frames = []
    pos = 0
    while pos < len(data):
        first, second = data[pos], data[pos + 1]
        length = second & 0x7F
        pos += 2
        if length >= 126:
            size = 2 if length == 126 else 8
            length = int.from_bytes(data[pos : pos + size], "big")
            pos += size
        key = data[pos : pos + 4] if second & 0x80 else b"\0\0\0\0"
        pos += 4 if second & 0x80 else 0
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(data[pos : pos + length]))
        pos += length
        frames.append(Frame(first & 0x0F, bool(first & 0x80), bool(second & 0x80), payload))
    assert pos == len(data), "a frame was cut short"
    return frames


def after_http_head(chunks: list[bytes]) -> bytes:
    _, end, rest = b"".join(chunks).partition(b"\r\n\r\n")
    assert end, "no HTTP head"
    return rest


def messages(data: bytes, *, masked: bool) -> list[Message]:
    """Decode text frames, checking every one is (un)masked as its role requires."""
    frames = parse_frames(data)
    assert [f.masked for f in frames] == [masked] * len(frames)
    assert all(f.opcode == OP_TEXT and f.fin for f in frames)
    return [decode_message(f.payload.decode()) for f in frames]


def masked_frame(opcode: int, payload: bytes, key: bytes = b"\x0a\x0b\x0c\x0d") -> bytes:
    """A short frame as a client writes it (hand-made, for early frames)."""
    assert len(payload) < 126
    body = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + key + body


def server_frame(opcode: int, payload: bytes = b"") -> bytes:
    assert len(payload) < 126
    return bytes([0x80 | opcode, len(payload)]) + payload


def close_frame_payload(code: int, reason: str = "") -> bytes:
    return code.to_bytes(2, "big") + reason.encode()


# --- hand-driven clients: a ClientConnection against a scripted WsServer ---------


def new_client(url: str = URL, **changes: object) -> ClientConnection:
    return ClientConnection(
        ClientConfig(url=url, **changes),  # type: ignore[arg-type]
        random=lambda: 0.5,
        random_bytes=SplitMix64(7).bytes,
    )


class Peer:
    """The far end of a hand-driven client connection: a server WebSocket the test scripts."""

    def __init__(self, config: WsServerConfig | None = None) -> None:
        self.ws = WsServer(config)

    def take(self, actions: list[Action]) -> list[WsEvent]:
        """Feed every SendBytes of ``actions`` to the server WebSocket."""
        events: list[WsEvent] = []
        for action in actions:
            if isinstance(action, SendBytes):
                events += self.ws.receive_data(action.data)
        return events

    def read(self, actions: list[Action]) -> list[Message]:
        return [decode_message(e.text) for e in self.take(actions) if isinstance(e, TextMessage)]

    def say(self, connection: ClientConnection, message: Message, now: float) -> None:
        self.ws.send_text(encode_message(message))
        connection.receive_data(self.ws.data_to_send(), now)


def handshake(connection: ClientConnection, now: float = 0.0) -> Peer:
    """Start ``connection`` and open its WebSocket: the session is authenticating."""
    connection.session.start(now)
    connection.drain_actions(now)
    connection.transport_made(now)
    peer = Peer()
    [request] = peer.take(connection.drain_actions(now))
    assert isinstance(request, UpgradeRequest)
    peer.ws.accept()
    connection.receive_data(peer.ws.data_to_send(), now)
    return peer


def live(connection: ClientConnection, now: float = 0.0) -> Peer:
    """Take ``connection`` to LIVE against a scripted server."""
    peer = handshake(connection, now)
    assert peer.read(connection.drain_actions(now)) == [Auth(token=None, headers={})]
    peer.say(connection, AuthSuccess(), now)
    assert peer.read(connection.drain_actions(now)) == [RequestAllEvents()]
    peer.say(connection, SyncComplete(), now)
    connection.drain_actions(now)
    assert connection.session.state is S.LIVE
    return peer


# --- hand-driven servers: a ServerConnection against a WsClient or raw bytes -------


def ws_client() -> WsClient:
    return WsClient(host="lfws.test", random_bytes=SplitMix64(3).bytes)


def open_server(**kwargs: object) -> tuple[ServerConnection, WsClient]:
    """A server connection past the upgrade, and the WebSocket client at the far end."""
    server = ServerConnection(**kwargs)  # type: ignore[arg-type]
    server.transport_made(0.0)
    client = ws_client()
    server.receive_data(client.data_to_send(), 0.0)
    [response] = server.drain_actions(0.0)
    assert isinstance(response, SendBytes)
    assert isinstance(client.receive_data(response.data)[0], Opened)
    return server, client


def authenticated_server() -> tuple[ServerConnection, WsClient]:
    server, client = open_server()
    client.send_text(encode_message(Auth(token="t")))
    server.receive_data(client.data_to_send(), 0.0)
    [authenticate] = server.drain_actions(0.0)
    assert isinstance(authenticate, Authenticate) and server.session is not None
    server.session.auth_accepted(authenticate.request_id, "alice", 0.0)
    [reply] = server.drain_actions(0.0)
    assert isinstance(reply, SendBytes)
    assert client.receive_data(reply.data) == [TextMessage(text='{"type":"auth_success"}')]
    return server, client


GET_HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: lfws.test\r\n\r\n"


def upgrade_request(target: str = "/") -> bytes:
    return (
        f"GET {target} HTTP/1.1\r\nHost: lfws.test\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


# === the pair: protocol round trips over bytes ====================================


def test_round_trip_over_bytes() -> None:
    pair = ClientServerPair()
    pair.log.store("todos", [event(0)])
    alice, bob = pair.add_client(), pair.add_client()
    pair.run()
    assert alice.session.state is bob.session.state is S.LIVE
    e0 = event(0).with_sequence(1)
    for client in (alice, bob):  # the catch-up brought the stored event
        assert client.actions_of(ApplyEvents)[0].events == (e0,)
        assert client.replica.cursors == {"todos": 1}

    assert alice.push("todos", event(1)) is PushResult.SENT
    pair.run()

    e1 = event(1).with_sequence(2)
    assert alice.actions_of(MarkSynced) == [MarkSynced(repositories={"todos": ("e1",)})]
    assert alice.replica.outbox() == []
    assert bob.replica.knows("e1") and bob.replica.cursors == {"todos": 2}
    assert bob.replica.documents("todos") == {"d1": {"n": 1}}
    assert list(pair.log.events("todos")) == [e0, e1]

    a_link, b_link = alice.link, bob.link
    assert a_link is not None and b_link is not None
    # Clients mask every frame, the server none.
    assert messages(after_http_head(a_link.client_bytes), masked=True) == [
        Auth(),
        RequestAllEvents(),
        EventsReceived(repository="todos", count=1),
        PushEvent(repository="todos", event=event(1)),
    ]
    assert messages(after_http_head(a_link.server_bytes), masked=False) == [
        AuthSuccess(),
        Events(repository="todos", events=(e0,)),
        SyncComplete(),
        Ack(event_ids=("e1",), repositories={"todos": ("e1",)}),
    ]
    assert messages(after_http_head(b_link.client_bytes), masked=True) == [
        Auth(),
        RequestAllEvents(),
        EventsReceived(repository="todos", count=1),
        EventsReceived(repository="todos", count=1),
    ]
    broadcast = encode_server_text_frame(encode_message(Events(repository="todos", events=(e1,))))
    assert b_link.server_bytes[-1] == broadcast
    assert b_link.actions_of(EventsConfirmed)[-1] == EventsConfirmed(repository="todos", count=1)
    # The pusher does not get its own event back.
    assert alice.actions_of(ApplyEvents)[-1].events == (e0,)


def test_a_repository_named_in_the_config_is_fetched_directly() -> None:
    pair = ClientServerPair()
    pair.log.store("todos", [event(0), event(1)])
    client = pair.add_client(ClientConfig(url=URL, repositories=("todos",)))
    pair.run()
    link = client.link
    assert link is not None
    assert link.actions_of(ListRepositories) == []
    [fetch] = link.actions_of(FetchEvents)
    assert (fetch.repository, fetch.after_sequence) == ("todos", 0)
    assert client.replica.cursors == {"todos": 2}


def test_consecutive_writes_leave_as_one_send_bytes() -> None:
    connection = new_client()
    peer = live(connection)
    for n in range(3):
        connection.session.push("todos", event(n), 1.0)
    actions = connection.drain_actions(1.0)
    assert len(actions) == 1 and isinstance(actions[0], SendBytes)
    assert peer.read(actions) == [PushEvent(repository="todos", event=event(n)) for n in range(3)]
    assert connection.drain_actions(1.0) == []


def test_close_runs_the_close_handshake() -> None:
    pair = ClientServerPair()
    client = pair.add_client()
    pair.run()
    link = client.link
    assert link is not None
    client.session.close(pair.now)
    pair.run()
    [close] = parse_frames(link.client_bytes[-1])
    assert close.masked and close.opcode == OP_CLOSE
    assert close.payload == close_frame_payload(1000, "client closed")
    assert [f.opcode for f in parse_frames(link.server_bytes[-1])] == [OP_CLOSE]
    assert isinstance(client.actions[-1], CloseTransport)
    assert isinstance(link.server_actions[-1], CloseTransport)
    assert link.closed and link.server.session is not None
    assert link.server.session.state is ServerState.CLOSED
    assert client.session.state is S.CLOSED
    assert client.actions_of(ReconnectScheduled) == []
    assert pair.next_deadline() is None


def test_close_timeout_drops_the_transport_when_the_peer_never_answers() -> None:
    pair = ClientServerPair()
    client = pair.add_client()
    pair.run()
    pair.stall(client)
    client.session.close(pair.now)
    pair.run()
    assert parse_frames(client.actions_of(SendBytes)[-1].data)[0].opcode == OP_CLOSE
    assert client.actions_of(CloseTransport) == []
    assert pair.next_deadline() == pair.now + CLOSE_TIMEOUT
    pair.advance(CLOSE_TIMEOUT - 0.01)
    assert client.actions_of(CloseTransport) == []
    pair.advance(0.01)
    assert isinstance(client.actions[-1], CloseTransport)
    assert client.connection.next_deadline() is None


def test_close_timeout_by_hand() -> None:
    connection = new_client()
    live(connection)
    connection.session.close(10.0)
    actions = connection.drain_actions(10.0)
    assert [type(a) for a in actions] == [SendBytes, ConnectionStateChanged]
    assert connection.next_deadline() == 10.0 + CLOSE_TIMEOUT
    connection.handle_timer(14.0)
    assert connection.drain_actions(14.0) == []
    connection.handle_timer(15.0)
    assert connection.drain_actions(15.0) == [CloseTransport()]
    connection.receive_data(server_frame(OP_CLOSE, close_frame_payload(1000)), 16.0)
    assert connection.drain_actions(16.0) == []


@pytest.mark.parametrize(
    ("url", "ws_config", "status"),
    [
        ("ws://lfws.test/elsewhere", None, 404),
        (URL, WsServerConfig(allowed_origins=frozenset({"https://app.test"})), 403),
    ],
)
def test_a_refused_handshake_fails_the_connection(
    url: str, ws_config: WsServerConfig | None, status: int
) -> None:
    pair = ClientServerPair(ws_config=ws_config)
    client = pair.add_client(ClientConfig(url=url))
    pair.run()
    link = client.link
    assert link is not None
    [rejected] = link.actions_of(HandshakeRejected)
    assert rejected.status == status
    assert link.server.session is None and link.closed
    assert isinstance(link.server_actions[-1], CloseTransport)
    state = client.actions_of(ConnectionStateChanged)[-1]
    assert state.state is S.WAITING_TO_RECONNECT
    assert state.reason.startswith(f"connection failed: handshake refused: HTTP {status} ")
    [retry] = client.actions_of(ReconnectScheduled)
    assert CloseTransport() in client.actions
    pair.run(until=retry.at)
    assert len(client.links) == 2


def test_a_failed_transport_schedules_a_reconnect() -> None:
    pair = ClientServerPair()
    pair.accepting = False
    client = pair.add_client()
    pair.run()
    assert client.links == []
    assert client.session.state is S.WAITING_TO_RECONNECT
    assert client.session.reason == "connection failed: connection refused"
    [retry] = client.actions_of(ReconnectScheduled)
    pair.accepting = True
    pair.run(until=retry.at)
    assert client.session.state is S.LIVE


def test_a_failed_transport_forgets_the_request() -> None:
    connection = new_client()
    connection.session.start(0.0)
    connection.drain_actions(0.0)
    connection.transport_failed(1.0, "no route to host")
    assert connection.session.state is S.WAITING_TO_RECONNECT
    with pytest.raises(LocalProtocolError):
        connection.transport_made(1.0)


def test_end_of_input_mid_connection_reconnects() -> None:
    pair = ClientServerPair()
    client = pair.add_client()
    pair.run()
    old = client.link
    assert old is not None
    before = len(client.actions)
    client.connection.receive_data(b"", pair.now)  # the server's side closed the TCP stream
    pair.run()
    assert [type(a) for a in client.actions[before:]] == [
        CloseTransport,
        ConnectionStateChanged,
        ReconnectScheduled,
    ]
    assert client.session.state is S.WAITING_TO_RECONNECT
    assert client.session.reason == "connection lost: connection lost without a close frame (1006)"
    # The end of input of the client's close reaches the server.
    assert old.server.session is not None and old.server.session.state is ServerState.CLOSED
    assert old.closed
    [retry] = client.actions_of(ReconnectScheduled)
    pair.run(until=retry.at)
    assert client.session.state is S.LIVE and len(client.links) == 2


def test_a_dropped_transport_is_lost_on_both_sides() -> None:
    pair = ClientServerPair()
    client = pair.add_client()
    pair.run()
    link = client.link
    assert link is not None
    before = len(client.actions)
    pair.drop(client)
    pair.run()
    assert client.session.reason == "connection lost: connection reset"
    assert CloseTransport() not in client.actions[before:]  # nothing left to close
    assert link.server.session is not None
    assert link.server.session.state is ServerState.CLOSED
    assert link.closed


def test_the_server_closes_the_socket_after_its_close_handshake() -> None:
    pair = ClientServerPair()
    client = pair.add_client()
    pair.run()
    link = client.link
    assert link is not None and link.server.session is not None
    before = len(client.actions)
    link.server.session.close(1001, "going away", pair.now)
    pair.run()
    assert client.session.reason == "connection lost: going away (1001)"
    assert isinstance(link.server_actions[-1], CloseTransport)
    assert CloseTransport() in client.actions[before:]
    assert link.closed


def test_refused_credentials_and_new_ones() -> None:
    pair = ClientServerPair(authenticate=lambda a: None if a.token == "good" else "bad token")
    client = pair.add_client(ClientConfig(url=URL, token="bad"))
    pair.run()
    [needed] = client.actions_of(CredentialsNeeded)
    assert needed.reason.startswith("authentication refused: Authentication failed: bad token")
    assert client.session.state is S.NEEDS_CREDENTIALS
    client.session.update_credentials(token="good", headers={}, now=pair.now)
    pair.run()
    assert client.session.state is S.LIVE
    link = client.link
    assert link is not None and link.server.session is not None
    assert link.server.session.principal == "good"


def test_heartbeats_keep_a_quiet_link_alive() -> None:
    pair = ClientServerPair(server_config=ServerConfig(ping_interval=20.0))
    client = pair.add_client()
    pair.run()
    pair.advance(95.0)
    link = client.link
    assert client.session.state is S.LIVE and len(client.links) == 1 and link is not None
    sent = messages(after_http_head(link.client_bytes), masked=True)
    received = messages(after_http_head(link.server_bytes), masked=False)
    assert sent.count(Ping()) == 3 and received.count(Pong()) == 3
    assert received.count(Ping()) == 4 and sent.count(Pong()) == 4


def test_the_clock_does_not_go_back() -> None:
    pair = ClientServerPair(now=5.0)
    pair.add_client()
    with pytest.raises(ValueError, match="cannot go back"):
        pair.run(until=4.0)


# === stale news from a connection the session gave up ===============================


def test_a_heartbeat_timeout_hides_the_old_websocket_from_the_session() -> None:
    pair = ClientServerPair()
    client = pair.add_client(ClientConfig(url=URL, reconnect_delay=20.0))
    pair.run()
    pair.stall(client)
    pair.advance(41.0)  # a ping at 30s, no answer by 40s
    assert client.session.state is S.WAITING_TO_RECONNECT
    reason = client.session.reason
    assert reason == "no message for 10.0s after a ping"
    [close] = parse_frames(client.actions_of(SendBytes)[-1].data)
    assert close.opcode == OP_CLOSE and close.payload == close_frame_payload(1011, reason)
    # Late bytes of the old WebSocket: a message, then the close that answers ours.
    before = len(client.actions)
    late = encode_server_text_frame('{"type":"events","repository":"todos","events":[]}')
    client.connection.receive_data(late, pair.now)
    client.connection.receive_data(server_frame(OP_CLOSE, close_frame_payload(1000)), pair.now)
    pair.run()
    assert client.actions[before:] == [CloseTransport()]
    assert client.session.state is S.WAITING_TO_RECONNECT and client.session.reason == reason
    client.connection.transport_lost(pair.now, "reset after close")  # too late to matter
    assert client.session.reason == reason


def test_a_reconnect_first_closes_the_transport_still_closing() -> None:
    pair = ClientServerPair()
    client = pair.add_client()  # reconnects within 3s, before the 5s close timeout
    pair.run()
    old = client.link
    pair.stall(client)
    pair.advance(41.0)
    [retry] = client.actions_of(ReconnectScheduled)
    assert retry.at < 40.0 + CLOSE_TIMEOUT
    pair.run(until=retry.at)
    *_, opened = (i for i, a in enumerate(client.actions) if isinstance(a, OpenConnection))
    assert client.actions[opened - 1] == CloseTransport()
    assert client.link is not old
    assert client.session.state is S.LIVE


def test_stale_news_by_hand() -> None:
    connection = new_client(reconnect_delay=2.0)
    live(connection)
    connection.handle_timer(30.0)  # a ping
    connection.drain_actions(30.0)
    connection.handle_timer(40.0)  # no answer: given up
    actions = connection.drain_actions(40.0)
    assert [type(a) for a in actions] == [SendBytes, ConnectionStateChanged, ReconnectScheduled]
    assert connection.next_deadline() == 41.0  # the reconnect (1s) comes before 45s
    connection.receive_data(encode_server_text_frame('{"type":"auth_success"}'), 40.5)
    connection.transport_lost(40.6, "")  # the old transport: the session never hears
    assert connection.drain_actions(40.6) == []
    assert connection.session.reason == "no message for 10.0s after a ping"


# === client details ==============================================================


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("ws://lfws.test/", "lfws.test"),
        ("ws://lfws.test:80/", "lfws.test"),
        ("wss://lfws.test/sync", "lfws.test"),
        ("wss://lfws.test:80/", "lfws.test:80"),
        ("ws://[::1]:8080/sync?v=1", "[::1]:8080"),
        ("ws://[::1]/", "[::1]"),
    ],
)
def test_the_host_header_names_a_port_only_when_it_is_not_the_default(url: str, host: str) -> None:
    connection = new_client(url)
    connection.session.start(0.0)
    [_, open_connection] = connection.drain_actions(0.0)
    assert isinstance(open_connection, OpenConnection)
    connection.transport_made(0.0)
    [request] = connection.drain_actions(0.0)
    assert isinstance(request, SendBytes)
    head = request.data.decode()
    assert head.startswith(f"GET {open_connection.resource} HTTP/1.1\r\n")
    assert f"\r\nHost: {host}\r\n" in head


def test_transport_made_without_a_request_is_misuse() -> None:
    connection = new_client()
    with pytest.raises(LocalProtocolError):
        connection.transport_made(0.0)
    connection.session.start(0.0)
    connection.drain_actions(0.0)
    connection.transport_made(0.0)
    with pytest.raises(LocalProtocolError):  # once per OpenConnection
        connection.transport_made(0.0)


def test_nothing_happens_before_a_transport() -> None:
    connection = new_client()
    connection.receive_data(b"HTTP/1.1 101 Switching Protocols\r\n\r\n", 0.0)
    connection.transport_lost(0.0, "")
    assert connection.drain_actions(0.0) == []
    assert connection.next_deadline() is None
    assert connection.session.state is S.IDLE


def test_connect_timeout_abandons_the_transport_being_opened() -> None:
    connection = new_client()
    connection.session.start(0.0)
    connection.drain_actions(0.0)
    connection.handle_timer(10.0)
    actions = connection.drain_actions(10.0)
    assert actions[0] == CloseTransport()
    assert [type(a) for a in actions[1:]] == [ConnectionStateChanged, ReconnectScheduled]
    with pytest.raises(LocalProtocolError):  # the adapter gave that transport up
        connection.transport_made(10.5)


def test_close_abandons_the_transport_being_opened() -> None:
    connection = new_client()
    connection.session.start(0.0)
    connection.session.close(0.0)
    actions = connection.drain_actions(0.0)
    assert [type(a) for a in actions] == [
        ConnectionStateChanged,
        OpenConnection,
        CloseTransport,
        ConnectionStateChanged,
    ]


def test_connect_timeout_during_the_handshake_closes_the_transport() -> None:
    connection = new_client()
    connection.session.start(0.0)
    connection.drain_actions(0.0)
    connection.transport_made(0.0)
    request = connection.drain_actions(0.0)
    connection.handle_timer(10.0)
    assert connection.drain_actions(10.0)[0] == CloseTransport()
    peer = Peer()
    peer.take(request)
    peer.ws.accept()
    connection.receive_data(peer.ws.data_to_send(), 10.5)  # the late 101 reaches nobody
    assert connection.drain_actions(10.5) == []
    assert connection.session.state is S.WAITING_TO_RECONNECT


def test_end_of_input_during_the_handshake() -> None:
    connection = new_client()
    connection.session.start(0.0)
    connection.drain_actions(0.0)
    connection.transport_made(0.0)
    connection.drain_actions(0.0)
    connection.receive_data(b"", 1.0)
    actions = connection.drain_actions(1.0)
    assert actions[0] == CloseTransport()
    assert connection.session.state is S.WAITING_TO_RECONNECT
    assert connection.session.reason.startswith("connection lost: ")


def test_transport_lost_on_an_open_connection() -> None:
    connection = new_client()
    live(connection)
    connection.transport_lost(5.0, "connection reset by peer")
    actions = connection.drain_actions(5.0)
    assert CloseTransport() not in actions
    assert connection.session.reason == "connection lost: connection reset by peer"


def test_websocket_pings_are_answered_below_the_session() -> None:
    connection = new_client()
    peer = live(connection)
    connection.receive_data(server_frame(OP_PING, b"hi") + server_frame(OP_PONG), 1.0)
    [pong] = connection.drain_actions(1.0)
    assert isinstance(pong, SendBytes)
    [frame] = parse_frames(pong.data)
    assert (frame.opcode, frame.masked, frame.payload) == (OP_PONG, True, b"hi")
    assert peer.take([pong]) == [PongReceived(payload=b"hi")]


def test_a_send_racing_the_servers_close_is_dropped() -> None:
    connection = new_client()
    peer = live(connection)
    assert connection.session.push("todos", event(1), 1.0) is PushResult.SENT
    peer.ws.close(1001, "going away")
    connection.receive_data(peer.ws.data_to_send(), 1.0)
    actions = connection.drain_actions(1.0)
    assert [type(a) for a in actions] == [
        SendBytes,
        CloseTransport,
        ConnectionStateChanged,
        ReconnectScheduled,
    ]
    assert peer.take(actions) == [Closed(code=1001, reason="")]  # only the close reply
    assert connection.session.pending_count == 1  # sent again next time


def test_a_close_racing_the_servers_close_sends_nothing() -> None:
    connection = new_client()
    peer = live(connection)
    connection.session.close(1.0)
    peer.ws.close(1001, "going away")
    connection.receive_data(peer.ws.data_to_send(), 1.0)
    actions = connection.drain_actions(1.0)
    assert [type(a) for a in actions] == [SendBytes, CloseTransport, ConnectionStateChanged]
    assert connection.next_deadline() is None


def test_a_long_close_reason_quoting_the_server_still_fits_a_close_frame() -> None:
    connection = new_client(repositories=("todos",))
    peer = handshake(connection)
    connection.drain_actions(0.0)
    peer.say(connection, AuthSuccess(), 0.0)
    assert peer.read(connection.drain_actions(0.0)) == [RequestAllEvents(repository="todos")]
    long_error = "Failed to fetch events: " + "é" * 200
    peer.say(connection, Error(message=long_error), 0.0)
    actions = connection.drain_actions(0.0)
    assert actions[0] == ServerErrorReported(message=long_error)
    [closed] = peer.take(actions)
    assert isinstance(closed, Closed) and closed.code == 1000
    assert len(closed.reason.encode()) <= 123
    assert ("catch-up failed: " + long_error).startswith(closed.reason)
    assert connection.session.state is S.WAITING_TO_RECONNECT


def test_a_cursor_given_at_construction_is_used() -> None:
    connection = ClientConnection(
        ClientConfig(url=URL),
        random=lambda: 0.5,
        random_bytes=SplitMix64(1).bytes,
        cursors={"todos": 7},
    )
    peer = handshake(connection)
    connection.drain_actions(0.0)
    peer.say(connection, AuthSuccess(), 0.0)
    assert peer.read(connection.drain_actions(0.0)) == [
        RequestEvents(repository="todos", after_sequence=7)
    ]


# === server details ================================================================


def test_slowloris_handshake_times_out() -> None:
    server = ServerConnection()
    server.transport_made(0.0)
    assert server.next_deadline() == HANDSHAKE_TIMEOUT
    server.receive_data(b"GET / HTTP/1.1\r\nHost: lfws.test\r\n", 1.0)
    server.handle_timer(9.0)
    assert server.drain_actions(9.0) == []
    server.handle_timer(HANDSHAKE_TIMEOUT)
    assert server.drain_actions(HANDSHAKE_TIMEOUT) == [CloseTransport()]
    assert server.next_deadline() is None and server.session is None
    server.receive_data(b"Upgrade: websocket\r\n\r\n", 11.0)
    assert server.drain_actions(11.0) == []


def test_a_plain_http_request_is_for_the_adapter_to_answer() -> None:
    server = ServerConnection()
    server.transport_made(0.0)
    server.receive_data(GET_HEALTHZ, 0.5)
    assert server.drain_actions(0.5) == [
        HttpRequestReceived(method="GET", target="/healthz", headers=(("host", "lfws.test"),))
    ]
    assert server.next_deadline() is None  # the adapter answers in its own time
    server.send_http_response(200, [("Content-Type", "text/plain")], b"ok")
    [response, close] = server.drain_actions(1.0)
    assert isinstance(response, SendBytes) and close == CloseTransport()
    assert response.data.startswith(b"HTTP/1.1 200 OK\r\n")
    assert response.data.endswith(b"\r\n\r\nok")
    with pytest.raises(LocalProtocolError, match="gone"):
        server.send_http_response(200)


def test_send_http_response_after_the_transport_is_lost_is_misuse() -> None:
    server = ServerConnection()
    server.receive_data(GET_HEALTHZ, 0.0)
    server.transport_lost(1.0)
    with pytest.raises(LocalProtocolError, match="gone"):
        server.send_http_response(503)


def test_an_upgrade_on_a_wrong_path_is_rejected() -> None:
    server = ServerConnection(ws_config=WsServerConfig(path="/sync"))
    server.transport_made(0.0)
    server.receive_data(upgrade_request("/other"), 0.5)
    [rejected, response, close] = server.drain_actions(0.5)
    assert rejected == HandshakeRejected(status=404, reason="Not Found")
    assert isinstance(response, SendBytes) and response.data.startswith(b"HTTP/1.1 404 ")
    assert close == CloseTransport()
    assert server.session is None and server.next_deadline() is None


def test_end_of_input_before_the_upgrade() -> None:
    server = ServerConnection()
    server.transport_made(0.0)
    server.receive_data(b"GET / HTTP/1.1\r\n", 0.5)
    server.receive_data(b"", 1.0)
    assert server.drain_actions(1.0) == [CloseTransport()]
    assert server.session is None
    server.transport_lost(1.0)  # nothing to tell


def test_frames_right_behind_the_upgrade_request_are_processed() -> None:
    server = ServerConnection()
    server.transport_made(0.0)
    early = masked_frame(OP_TEXT, b'{"type":"auth","token":"t"}')
    early += masked_frame(OP_TEXT, b'{"type":"ping"}') + masked_frame(OP_PING, b"p")
    server.receive_data(upgrade_request() + early, 0.0)
    response, authenticate = server.drain_actions(0.0)
    assert isinstance(response, SendBytes)
    head, _, frames = response.data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 ")
    assert parse_frames(frames) == [Frame(OP_PONG, True, False, b"p")]
    assert isinstance(authenticate, Authenticate) and authenticate.token == "t"
    session = server.session
    assert session is not None and session.state is ServerState.AUTHENTICATING
    session.auth_accepted(authenticate.request_id, "alice", 0.1)
    [reply] = server.drain_actions(0.1)  # auth_success and the held pong, in one write
    assert isinstance(reply, SendBytes)
    assert messages(reply.data, masked=False) == [AuthSuccess(), Pong()]


def test_deliver_writes_the_frame_it_was_given() -> None:
    server, client = authenticated_server()
    events = (event(1).with_sequence(1),)
    text = encode_message(Events(repository="todos", events=events))
    frame = encode_server_text_frame(text)
    assert server.deliver("todos", events, 1.0, text=text, frame=frame)
    assert server.drain_actions(1.0) == [SendBytes(data=frame)]
    # Written as given, not framed again: a marker frame proves it.
    marker = encode_server_text_frame('{"type":"pong"}')
    assert server.deliver("todos", events, 1.0, text=text, frame=marker)
    assert server.drain_actions(1.0) == [SendBytes(data=marker)]
    assert client.receive_data(frame + marker) == [
        TextMessage(text=text),
        TextMessage(text='{"type":"pong"}'),
    ]


def test_broadcasts_and_replies_leave_in_one_write() -> None:
    server, client = authenticated_server()
    events = (event(1).with_sequence(1),)
    text = encode_message(Events(repository="todos", events=events))
    frame = encode_server_text_frame(text)
    server.deliver("todos", events, 1.0, text=text, frame=frame)
    client.send_text('{"type":"ping"}')
    server.receive_data(client.data_to_send(), 1.0)
    server.deliver("todos", events, 1.0, text=text, frame=frame)
    [write] = server.drain_actions(1.0)
    assert isinstance(write, SendBytes)
    assert messages(write.data, masked=False) == [
        Events(repository="todos", events=events),
        Pong(),
        Events(repository="todos", events=events),
    ]


def test_deliver_reaches_authenticated_connections_only() -> None:
    events = (event(1).with_sequence(1),)
    text = encode_message(Events(repository="todos", events=events))
    frame = encode_server_text_frame(text)
    before_upgrade = ServerConnection()
    assert not before_upgrade.deliver("todos", events, 0.0, text=text, frame=frame)
    assert before_upgrade.drain_actions(0.0) == []
    server, _ = open_server()
    assert not server.deliver("todos", events, 0.0, text=text, frame=frame)
    assert server.drain_actions(0.0) == []


def test_a_broadcast_racing_the_clients_close_is_dropped() -> None:
    server, client = authenticated_server()
    events = (event(1).with_sequence(1),)
    text = encode_message(Events(repository="todos", events=events))
    assert server.deliver("todos", events, 1.0, text=text, frame=encode_server_text_frame(text))
    client.close(1000, "bye")
    server.receive_data(client.data_to_send(), 1.0)
    [reply, close] = server.drain_actions(1.0)
    assert isinstance(reply, SendBytes) and close == CloseTransport()
    assert [f.opcode for f in parse_frames(reply.data)] == [OP_CLOSE]
    assert server.session is not None and server.session.state is ServerState.CLOSED


def test_a_server_close_racing_the_clients_close() -> None:
    server, client = authenticated_server()
    assert server.session is not None
    server.session.close(1001, "going away", 1.0)
    client.close(1000, "bye")
    server.receive_data(client.data_to_send(), 1.0)
    [reply, close] = server.drain_actions(1.0)
    assert [f.opcode for f in parse_frames(reply.data)] == [OP_CLOSE]  # the reply only
    assert close == CloseTransport()
    assert server.next_deadline() is None


def test_server_close_timeout() -> None:
    server, client = authenticated_server()
    session = server.session
    assert session is not None
    session.close(1001, "going away", 1.0)
    [close] = server.drain_actions(1.0)
    assert isinstance(close, SendBytes)
    assert client.receive_data(close.data) == [Closed(code=1001, reason="going away")]
    assert server.next_deadline() == 1.0 + CLOSE_TIMEOUT
    server.handle_timer(1.0 + CLOSE_TIMEOUT)
    assert server.drain_actions(6.0) == [CloseTransport()]
    assert session.state is ServerState.CLOSED and server.next_deadline() is None


def test_the_servers_own_timers_run_through_the_connection() -> None:
    server, client = open_server(config=ServerConfig(auth_timeout=5.0, ping_interval=None))
    assert server.next_deadline() == 5.0
    server.handle_timer(5.0)
    [write] = server.drain_actions(5.0)
    assert isinstance(write, SendBytes)
    assert client.receive_data(write.data) == [
        TextMessage(text='{"type":"error","message":"Authentication timeout"}'),
        Closed(code=1008, reason="authentication timeout"),
    ]


def test_transport_lost_ends_the_server_session() -> None:
    server, _ = authenticated_server()
    server.transport_lost(2.0)
    assert server.session is not None and server.session.state is ServerState.CLOSED
    server.receive_data(b"\x81", 2.0)
    assert server.drain_actions(2.0) == []


def test_a_client_added_unstarted_waits_for_start() -> None:
    pair = ClientServerPair(seed=3)
    client = pair.add_client(start=False)
    pair.run()
    assert client.link is None and client.actions == []
    assert client.session.state is S.IDLE
    client.session.start(pair.now)
    pair.run()
    link = client.link
    assert link is not None and not link.closed
    assert [a.token for a in link.actions_of(Authenticate)] == [None]
    assert client.actions_of(SyncCompleted) == []  # nothing to catch up on
    assert client.session.state is S.LIVE
