"""Messages, pings and the close handshake between a joined client and server."""

from __future__ import annotations

import pytest
from ws_pair import client_frame, close_payload, frame, open_pair, transfer

from lfws_core.close_codes import CloseCode
from lfws_core.errors import LocalProtocolError
from lfws_core.ws import (
    Closed,
    PingReceived,
    PongReceived,
    ServerConfig,
    TextMessage,
    WsClient,
    WsServer,
    WsState,
    encode_server_text_frame,
)


def test_text_both_ways() -> None:
    client, server = open_pair()
    client.send_text("hello 🌍")
    client.send_text("")
    assert transfer(client, server) == [TextMessage(text="hello 🌍"), TextMessage(text="")]
    server.send_text("x" * 70000)
    assert transfer(server, client) == [TextMessage(text="x" * 70000)]


def test_client_frames_are_masked_with_keys_from_the_source() -> None:
    client, _ = open_pair()
    client.send_text("Hello")
    client.send_text("Hello")
    # The nonce took bytes 0..15, so the first pooled mask keys are 16..19 and 20..23.
    first = frame(0x1, b"Hello", mask=bytes([16, 17, 18, 19]))
    second = frame(0x1, b"Hello", mask=bytes([20, 21, 22, 23]))
    assert client.data_to_send() == first + second
    assert first == bytes([0x81, 0x85, 16, 17, 18, 19]) + bytes(
        [ord("H") ^ 16, ord("e") ^ 17, ord("l") ^ 18, ord("l") ^ 19, ord("o") ^ 16]
    )


def test_mask_pool_is_refilled() -> None:
    client, server = open_pair()
    for i in range(130):
        client.send_text(str(i))
    assert transfer(client, server) == [TextMessage(text=str(i)) for i in range(130)]


def test_server_frames_are_unmasked() -> None:
    _client, server = open_pair()
    server.send_text("Hello")
    assert server.data_to_send() == bytes.fromhex("810548656c6c6f")
    # A broadcast framed once is the same bytes send_text() queues.
    assert encode_server_text_frame("Hello") == bytes.fromhex("810548656c6c6f")


def test_fragmented_text_is_reassembled_with_control_frames_between() -> None:
    _, server = open_pair()
    text = "naïve ☃ text".encode()
    # Split inside the two-byte "ï" and the three-byte "☃".
    data = (
        client_frame(0x1, text[:3], fin=False)
        + client_frame(0x9, b"p")
        + client_frame(0x0, text[3:9], fin=False)
        + client_frame(0x0, b"", fin=False)
        + client_frame(0x0, text[9:])
    )
    assert server.receive_data(data) == [
        PingReceived(payload=b"p"),
        TextMessage(text="naïve ☃ text"),
    ]
    assert server.data_to_send() == frame(0xA, b"p")
    # The next message starts afresh.
    assert server.receive_data(client_frame(0x1, b"again")) == [TextMessage(text="again")]


def test_message_at_the_limit_passes() -> None:
    client, server = open_pair(ServerConfig(max_message_size=10), max_message_size=10)
    client.send_text("0123456789")
    assert transfer(client, server) == [TextMessage(text="0123456789")]
    server.send_text("9876543210")
    assert transfer(server, client) == [TextMessage(text="9876543210")]


@pytest.mark.parametrize(
    "data",
    [
        client_frame(0x1, b"x" * 11),
        client_frame(0x1, b"x" * 6, fin=False) + client_frame(0x0, b"x" * 5),
        # Refused from the header alone, before the payload arrives.
        client_frame(0x1, b"", length=1 << 40, length_form=127),
    ],
)
def test_message_over_the_limit_closes_with_1009(data: bytes) -> None:
    _, server = open_pair(ServerConfig(max_message_size=10))
    [closed] = server.receive_data(data)
    assert closed == Closed(code=CloseCode.MESSAGE_TOO_BIG, reason="message larger than 10 bytes")
    assert server.data_to_send() == frame(0x8, close_payload(1009, "message larger than 10 bytes"))
    assert server.state is WsState.CLOSED


def test_binary_closes_with_1003() -> None:
    _, server = open_pair()
    [closed] = server.receive_data(client_frame(0x2, b"\x00\x01"))
    assert closed == Closed(
        code=CloseCode.UNSUPPORTED_DATA, reason="binary messages are not supported"
    )
    assert server.data_to_send() == frame(
        0x8, close_payload(1003, "binary messages are not supported")
    )


@pytest.mark.parametrize(
    "data",
    [
        frame(0x1, b"\xff"),
        frame(0x1, b"\xed\xa0\x80"),  # an encoded surrogate
        frame(0x1, b"ok\xc3", fin=False) + frame(0x0, b"("),  # bad across fragments
        frame(0x1, b"\xc3", fin=False) + frame(0x0, b""),  # truncated at the end
        frame(0x1, b"\xf8", fin=False),  # detected before the message ends
    ],
)
def test_invalid_utf8_closes_with_1007(data: bytes) -> None:
    client, _ = open_pair()
    [closed] = client.receive_data(data)
    assert closed == Closed(
        code=CloseCode.INVALID_PAYLOAD, reason="text message is not valid UTF-8"
    )
    assert client.state is WsState.CLOSED


def test_ping_is_answered_and_pong_reported() -> None:
    client, server = open_pair()
    client.send_ping(b"beat")
    assert transfer(client, server) == [PingReceived(payload=b"beat")]
    assert transfer(server, client) == [PongReceived(payload=b"beat")]
    server.send_ping()
    assert transfer(server, client) == [PingReceived(payload=b"")]
    assert transfer(client, server) == [PongReceived(payload=b"")]


def test_ping_payload_limit() -> None:
    client, _ = open_pair()
    client.send_ping(b"x" * 125)
    with pytest.raises(LocalProtocolError):
        client.send_ping(b"x" * 126)


def test_client_initiates_close() -> None:
    client, server = open_pair()
    client.close(CloseCode.GOING_AWAY, "bye")
    assert client.state is WsState.CLOSING
    assert not client.transport_should_close
    assert transfer(client, server) == [Closed(code=1001, reason="bye")]
    assert server.state is WsState.CLOSED
    assert server.transport_should_close
    # The server echoes the code (not the reason); the client's handshake completes.
    assert transfer(server, client) == [Closed(code=1001, reason="")]
    assert client.state is WsState.CLOSED
    assert client.transport_should_close


def test_server_initiates_close_and_messages_still_arrive_while_closing() -> None:
    client, server = open_pair()
    client.send_text("in flight")
    client.send_ping(b"late")
    server.close(4000, "maintenance")
    assert transfer(client, server) == [
        TextMessage(text="in flight"),
        PingReceived(payload=b"late"),
    ]
    # No pong follows the close frame.
    closing = server.data_to_send()
    assert closing == frame(0x8, close_payload(4000, "maintenance"))
    assert client.receive_data(closing) == [Closed(code=4000, reason="maintenance")]
    assert transfer(client, server) == [Closed(code=4000, reason="")]


def test_close_without_status() -> None:
    client, server = open_pair()
    assert server.receive_data(client_frame(0x8)) == [Closed(code=CloseCode.NO_STATUS, reason="")]
    assert server.data_to_send() == frame(0x8)
    del client


def test_nothing_is_sent_after_close() -> None:
    client, server = open_pair()
    client.close()
    with pytest.raises(LocalProtocolError, match="CLOSING"):
        client.send_text("late")
    with pytest.raises(LocalProtocolError):
        client.send_ping()
    with pytest.raises(LocalProtocolError):
        client.close()
    transfer(client, server)
    with pytest.raises(LocalProtocolError, match="CLOSED"):
        server.send_text("late")


def test_input_after_the_close_frame_is_ignored() -> None:
    _, server = open_pair()
    data = client_frame(0x8, close_payload(1000)) + client_frame(0x1, b"after")
    assert server.receive_data(data) == [Closed(code=1000, reason="")]
    assert server.receive_data(client_frame(0x1, b"later")) == []
    assert server.receive_data(b"") == []


@pytest.mark.parametrize(
    ("code", "reason"),
    [(1005, ""), (1006, ""), (999, ""), (1000, "x" * 124), (1000, "\ud800")],
)
def test_close_arguments_are_checked(code: int, reason: str) -> None:
    client, _ = open_pair()
    with pytest.raises(LocalProtocolError):
        client.close(code, reason)
    assert client.state is WsState.OPEN
    client.close(1000, "é" * 61)  # 122 bytes of UTF-8 fit


def test_unencodable_text_is_refused() -> None:
    client, _ = open_pair()
    with pytest.raises(LocalProtocolError, match="UTF-8"):
        client.send_text("\udc80")


@pytest.mark.parametrize("side", ["client", "server"])
@pytest.mark.parametrize("closing", [False, True])
def test_end_of_input_reports_1006(side: str, closing: bool) -> None:
    client, server = open_pair()
    peer: WsClient | WsServer = client if side == "client" else server
    if closing:
        peer.close()
    assert peer.receive_data(b"") == [
        Closed(code=CloseCode.ABNORMAL, reason="connection lost without a close frame")
    ]
    assert peer.state is WsState.CLOSED
    assert peer.receive_data(b"") == []


def test_one_byte_at_a_time() -> None:
    client, server = open_pair()
    client.send_text("a" * 300)
    client.send_text("b" * 70000)
    client.send_ping(b"p")
    client.close(1000, "done")
    events = [
        event for byte in client.data_to_send() for event in server.receive_data(bytes([byte]))
    ]
    assert events == [
        TextMessage(text="a" * 300),
        TextMessage(text="b" * 70000),
        PingReceived(payload=b"p"),
        Closed(code=1000, reason="done"),
    ]
