"""The echo endpoint, driven by a core WebSocket client over an in-memory link."""

from __future__ import annotations

import pytest

from lfws_adapters.echo import ECHO_CONFIG, EchoHub, EchoPeer
from lfws_core.ws import (
    BinaryMessage,
    Closed,
    Opened,
    PongReceived,
    Rejected,
    ServerConfig,
    TextMessage,
    WsClient,
    WsEvent,
)


class MemoryLink:
    """A Link that keeps what was written and whether it was closed."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed, "write after close"
        self.written.append(data)

    def close(self) -> None:
        self.closed = True

    def buffered(self) -> int:
        return 0

    async def drained(self) -> None:
        pass

    def take(self) -> bytes:
        data = b"".join(self.written)
        self.written.clear()
        return data


class Pair:
    """A WsClient talking to one EchoPeer."""

    def __init__(self, hub: EchoHub, target: str = "/") -> None:
        self.hub = hub
        self.link = MemoryLink()
        self.peer: EchoPeer = hub.connect(self.link, "127.0.0.1:5000")
        self.client = WsClient(
            host="localhost", target=target, random_bytes=bytes, accept_binary=True
        )

    def exchange(self) -> list[WsEvent]:
        """Send what the client queued; return what the client makes of the answer."""
        self.peer.data_received(self.client.data_to_send())
        return self.client.receive_data(self.link.take())


def open_pair(hub: EchoHub | None = None) -> Pair:
    pair = Pair(hub or EchoHub())
    [opened] = pair.exchange()
    assert isinstance(opened, Opened)
    return pair


def test_defaults_accept_binary_and_large_messages() -> None:
    assert ECHO_CONFIG.accept_binary
    assert ECHO_CONFIG.max_message_size == 16 << 20
    assert EchoHub().config is ECHO_CONFIG


def test_text_binary_and_pings_come_back() -> None:
    pair = open_pair()
    pair.client.send_text("héllo")
    pair.client.send_binary(b"\x00\xff" * 40000)
    pair.client.send_ping(b"p")
    # The WebSocket layer queues the pong while reading, ahead of the echoes.
    assert pair.exchange() == [
        PongReceived(payload=b"p"),
        TextMessage(text="héllo"),
        BinaryMessage(data=b"\x00\xff" * 40000),
    ]
    assert not pair.link.closed


def test_frames_sent_behind_the_upgrade_request_are_echoed() -> None:
    pair = Pair(EchoHub())
    # A masked text frame; the all-zero mask key leaves the payload as is.
    early = b"\x81\x85\x00\x00\x00\x00early"
    pair.peer.data_received(pair.client.data_to_send() + early)
    answer = pair.link.take()
    assert answer.startswith(b"HTTP/1.1 101 ")
    assert answer.endswith(b"\x81\x05early")


def test_close_handshake_ends_the_transport() -> None:
    pair = open_pair()
    assert pair.hub.peers == {pair.peer}
    pair.client.close(1000, "bye")
    assert pair.exchange() == [Closed(code=1000, reason="")]
    assert pair.link.closed
    assert pair.hub.peers == frozenset()


def test_a_message_in_the_same_read_as_the_close_is_not_echoed() -> None:
    pair = open_pair()
    pair.client.send_text("late")
    pair.client.send_binary(b"late")
    pair.client.close()
    # Nothing may follow the close frame that answered the peer's.
    assert pair.exchange() == [Closed(code=1000, reason="")]


def test_plain_http_gets_a_short_answer() -> None:
    hub = EchoHub()
    link = MemoryLink()
    peer = hub.connect(link, "127.0.0.1:5000")
    peer.data_received(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    answer = link.take()
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert answer.endswith(b"connect with a WebSocket client\n")
    assert link.closed


def test_wrong_path_is_refused() -> None:
    pair = Pair(EchoHub(), target="/elsewhere")
    [rejected] = pair.exchange()
    assert isinstance(rejected, Rejected)
    assert rejected.status == 404
    assert pair.link.closed
    assert pair.hub.peers == frozenset()


def test_binary_is_refused_without_the_opt_in() -> None:
    pair = open_pair(EchoHub(ServerConfig(path="/")))
    pair.client.send_binary(b"x")
    assert pair.exchange() == [Closed(code=1003, reason="binary messages are not supported")]


def test_connection_lost_forgets_the_peer() -> None:
    pair = open_pair()
    pair.peer.connection_lost("reset")
    assert pair.hub.peers == frozenset()
    # Bytes racing the loss are ignored.
    pair.peer.data_received(b"\x81\x80\x00\x00\x00\x00")
    assert pair.link.take() == b""


@pytest.mark.parametrize("opened", [True, False])
def test_shutdown_closes_every_connection(opened: bool) -> None:
    hub = EchoHub()
    pair = open_pair(hub) if opened else Pair(hub)
    hub.shutdown()
    if opened:
        assert pair.client.receive_data(pair.link.take()) == [
            Closed(code=1001, reason="server shutting down")
        ]
        # The transport ends once the client answers.
        hub.shutdown()
        assert not pair.link.closed
        pair.exchange()
    assert pair.link.closed
    assert hub.peers == frozenset()
    hub.shutdown()  # nothing left to close
