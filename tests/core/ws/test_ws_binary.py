"""Binary messages: refused with 1003 by default, echoed by servers that opt in."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_ws_properties import feed, split
from ws_pair import client_frame, close_payload, frame, open_pair, transfer

from lfws_core.close_codes import CloseCode
from lfws_core.errors import LocalProtocolError
from lfws_core.ws import (
    BinaryMessage,
    Closed,
    PingReceived,
    ServerConfig,
    TextMessage,
    WsServer,
    WsState,
)

BINARY = ServerConfig(accept_binary=True)


def open_binary_server(max_message_size: int = 1 << 20) -> WsServer:
    return open_pair(ServerConfig(accept_binary=True, max_message_size=max_message_size))[1]


def test_accept_binary_is_off_by_default() -> None:
    assert ServerConfig().accept_binary is False


def test_single_frame_binary_message() -> None:
    server = open_binary_server()
    data = client_frame(0x2, b"\x00\xff\x80") + client_frame(0x2, b"")
    assert server.receive_data(data) == [
        BinaryMessage(data=b"\x00\xff\x80"),
        BinaryMessage(data=b""),
    ]
    assert server.state is WsState.OPEN


def test_client_sends_masked_binary_the_server_reassembles() -> None:
    client, server = open_pair(BINARY)
    client.send_binary(b"\x01" * 70000)
    client.send_binary(bytearray(b"ab"))  # any bytes-like payload
    assert transfer(client, server) == [
        BinaryMessage(data=b"\x01" * 70000),
        BinaryMessage(data=b"ab"),
    ]


def test_server_sends_unmasked_binary_frames() -> None:
    _, server = open_pair()
    server.send_binary(b"\x00\x01")
    assert server.data_to_send() == bytes.fromhex("82020001")


def test_a_client_that_opts_in_receives_binary() -> None:
    client, server = open_pair(accept_binary=True)
    server.send_binary(b"\x00" * 70000)
    assert transfer(server, client) == [BinaryMessage(data=b"\x00" * 70000)]
    client, server = open_pair()
    server.send_binary(b"\x00")
    assert transfer(server, client) == [
        Closed(code=CloseCode.UNSUPPORTED_DATA, reason="binary messages are not supported")
    ]


def test_fragmented_binary_is_reassembled_with_control_frames_between() -> None:
    server = open_binary_server()
    data = (
        client_frame(0x2, b"\x00\x01", fin=False)
        + client_frame(0x9, b"p")
        + client_frame(0x0, b"", fin=False)
        + client_frame(0x0, b"\x02")
    )
    assert server.receive_data(data) == [
        PingReceived(payload=b"p"),
        BinaryMessage(data=b"\x00\x01\x02"),
    ]
    # Text follows binary with a fresh decoder and an empty size count.
    data = (
        client_frame(0x1, "é".encode()[:1], fin=False)
        + client_frame(0x0, "é".encode()[1:])
        + client_frame(0x2, b"z")
    )
    assert server.receive_data(data) == [TextMessage(text="é"), BinaryMessage(data=b"z")]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (
            client_frame(0x2, b"a", fin=False) + client_frame(0x1, b"b"),
            "new message before the previous one ended",
        ),
        (
            client_frame(0x1, b"a", fin=False) + client_frame(0x2, b"b"),
            "new message before the previous one ended",
        ),
        (
            client_frame(0x2, b"a") + client_frame(0x0, b"b"),
            "continuation frame without a message to continue",
        ),
    ],
)
def test_interleaved_messages_close_with_1002(data: bytes, reason: str) -> None:
    server = open_binary_server()
    assert server.receive_data(data)[-1] == Closed(code=CloseCode.PROTOCOL_ERROR, reason=reason)
    assert server.data_to_send() == frame(0x8, close_payload(1002, reason))


@pytest.mark.parametrize(
    "data",
    [
        client_frame(0x2, b"x" * 11),
        client_frame(0x2, b"x" * 6, fin=False) + client_frame(0x0, b"x" * 5),
    ],
)
def test_binary_over_the_limit_closes_with_1009(data: bytes) -> None:
    server = open_binary_server(max_message_size=10)
    assert server.receive_data(data) == [
        Closed(code=CloseCode.MESSAGE_TOO_BIG, reason="message larger than 10 bytes")
    ]


def test_binary_at_the_limit_passes() -> None:
    server = open_binary_server(max_message_size=10)
    data = client_frame(0x2, b"x" * 4, fin=False) + client_frame(0x0, b"x" * 6)
    assert server.receive_data(data) == [BinaryMessage(data=b"x" * 10)]


def test_send_binary_needs_an_open_connection() -> None:
    client, server = open_pair()
    client.close()
    with pytest.raises(LocalProtocolError, match="cannot send a message in state CLOSING"):
        client.send_binary(b"x")
    with pytest.raises(LocalProtocolError, match="cannot send a message in state CONNECTING"):
        WsServer().send_binary(b"x")
    assert server.state is WsState.OPEN


@given(
    st.binary(max_size=300),
    st.lists(st.integers(min_value=0), max_size=6),
    st.lists(st.integers(min_value=0), max_size=10),
)
def test_any_fragmentation_reassembles(
    payload: bytes, fragment_cuts: list[int], cuts: list[int]
) -> None:
    server = open_binary_server()
    pieces = split(payload, fragment_cuts)
    data = b"".join(
        client_frame(0x2 if i == 0 else 0x0, piece, fin=i == len(pieces) - 1)
        for i, piece in enumerate(pieces)
    )
    assert feed(server, split(data, cuts)) == [BinaryMessage(data=payload)]
