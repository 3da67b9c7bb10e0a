"""Interoperability with an independent implementation: websockets' sans-I/O protocols."""

from __future__ import annotations

from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.typing import Origin
from websockets.uri import parse_uri
from ws_pair import new_client

from lfws_core.ws import (
    Closed,
    Opened,
    PingReceived,
    PongReceived,
    Rejected,
    ServerConfig,
    TextMessage,
    UpgradeRequest,
    WsServer,
    WsState,
)


def drain(protocol: ClientProtocol | ServerProtocol) -> bytes:
    return b"".join(protocol.data_to_send())


def frames(protocol: ClientProtocol | ServerProtocol, data: bytes) -> list[Frame]:
    protocol.receive_data(data)
    events = protocol.events_received()
    received = [event for event in events if isinstance(event, Frame)]
    assert received == events
    return received


def test_websockets_client_to_our_server() -> None:
    theirs = ClientProtocol(parse_uri("ws://example.com/sync?repo=a"))
    theirs.send_request(theirs.connect())
    ours = WsServer(ServerConfig(path="/sync"))
    [request] = ours.receive_data(drain(theirs))
    assert isinstance(request, UpgradeRequest)
    assert request.query == "repo=a"
    ours.accept()
    theirs.receive_data(ours.data_to_send())
    [response] = theirs.events_received()
    assert isinstance(response, Response)
    assert theirs.state is State.OPEN

    theirs.send_text(b"hello")
    theirs.send_text(b"frag", fin=False)
    theirs.send_continuation("mented ☃".encode(), fin=True)
    theirs.send_ping(b"p1")
    assert ours.receive_data(drain(theirs)) == [
        TextMessage(text="hello"),
        TextMessage(text="fragmented ☃"),
        PingReceived(payload=b"p1"),
    ]
    ours.send_text("x" * 70000)
    ours.send_ping(b"p2")
    received = frames(theirs, ours.data_to_send())
    assert [(f.opcode, len(f.data)) for f in received] == [
        (Opcode.PONG, 2),
        (Opcode.TEXT, 70000),
        (Opcode.PING, 2),
    ]
    assert ours.receive_data(drain(theirs)) == [PongReceived(payload=b"p2")]

    ours.close(1001, "restart")
    frames(theirs, ours.data_to_send())
    assert theirs.close_rcvd is not None
    assert (theirs.close_rcvd.code, theirs.close_rcvd.reason) == (1001, "restart")
    assert ours.receive_data(drain(theirs)) == [Closed(code=1001, reason="restart")]
    assert ours.state is WsState.CLOSED


def test_our_client_to_websockets_server() -> None:
    theirs = ServerProtocol()
    ours = new_client(target="/chat?x=1", origin="https://app.example")
    theirs.receive_data(ours.data_to_send())
    [request] = theirs.events_received()
    assert isinstance(request, Request)
    assert request.path == "/chat?x=1"
    assert request.headers["Origin"] == "https://app.example"
    theirs.send_response(theirs.accept(request))
    assert theirs.handshake_exc is None
    theirs.send_text(b"welcome")
    [opened, welcome] = ours.receive_data(drain(theirs))
    assert isinstance(opened, Opened)
    assert welcome == TextMessage(text="welcome")

    ours.send_text("é" * 40000)
    ours.send_ping(b"beat")
    received = frames(theirs, ours.data_to_send())
    assert [(f.opcode, f.data) for f in received] == [
        (Opcode.TEXT, ("é" * 40000).encode()),
        (Opcode.PING, b"beat"),
    ]
    assert ours.receive_data(drain(theirs)) == [PongReceived(payload=b"beat")]

    theirs.send_close(4002, "kicked")
    assert ours.receive_data(drain(theirs)) == [Closed(code=4002, reason="kicked")]
    frames(theirs, ours.data_to_send())
    assert theirs.close_rcvd is not None
    assert theirs.close_rcvd.code == 4002  # our echo


def test_websockets_server_refusal_reaches_our_client() -> None:
    theirs = ServerProtocol(origins=[Origin("https://app.example")])
    ours = new_client(origin="https://evil.example")
    theirs.receive_data(ours.data_to_send())
    [request] = theirs.events_received()
    assert isinstance(request, Request)
    theirs.send_response(theirs.accept(request))
    [rejected] = ours.receive_data(drain(theirs))
    assert isinstance(rejected, Rejected)
    assert rejected.status == 403
    assert ours.state is WsState.REJECTED
