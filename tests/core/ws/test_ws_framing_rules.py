"""Peer violations of RFC 6455 framing: each fails the connection with a reason."""

from __future__ import annotations

import itertools

import pytest
from ws_pair import client_frame, close_payload, frame, open_pair

from lfws_core.close_codes import CloseCode
from lfws_core.ws import Closed, PingReceived, TextMessage, WsEvent, WsState

PROTOCOL_ERRORS = [
    (client_frame(0x1, b"x", rsv=4), "reserved bits"),
    (client_frame(0x1, b"x", rsv=1), "reserved bits"),
    (client_frame(0x3, b"x"), "unknown opcode 0x3"),
    (client_frame(0x7), "unknown opcode 0x7"),
    (client_frame(0xB), "unknown opcode 0xb"),
    (client_frame(0x9, b"x", fin=False), "fragmented control frame"),
    (client_frame(0x9, b"x" * 126), "control frame payload over 125 bytes"),
    (client_frame(0x8, b"x" * 126), "control frame payload over 125 bytes"),
    (client_frame(0x0, b"x"), "continuation frame without a message"),
    (client_frame(0x1, b"a", fin=False) + client_frame(0x1, b"b"), "new message before"),
    (client_frame(0x1, b"a", fin=False) + client_frame(0x2, b"b"), "new message before"),
    (frame(0x1, b"unmasked"), "client frames must be masked"),
    (client_frame(0x1, b"", length=1 << 63, length_form=127), "most significant bit"),
    (client_frame(0x8, b"\x03"), "1-byte payload"),
    (client_frame(0x8, close_payload(1006)), "invalid close code 1006"),
    (client_frame(0x8, close_payload(2000)), "invalid close code 2000"),
]


@pytest.mark.parametrize(("data", "reason"), PROTOCOL_ERRORS)
def test_server_fails_with_1002(data: bytes, reason: str) -> None:
    _, server = open_pair()
    [closed] = server.receive_data(data)
    assert isinstance(closed, Closed)
    assert closed.code == CloseCode.PROTOCOL_ERROR
    assert reason in closed.reason
    assert server.data_to_send() == frame(0x8, close_payload(1002, closed.reason))
    assert server.state is WsState.CLOSED
    assert server.receive_data(client_frame(0x1, b"ignored")) == []


def test_client_refuses_masked_frames() -> None:
    client, _ = open_pair()
    [closed] = client.receive_data(frame(0x1, b"x", mask=b"abcd"))
    assert closed == Closed(code=1002, reason="server frames must not be masked")
    # The client's close frame is masked like any other.
    sent = client.data_to_send()
    assert sent[:2] == bytes([0x88, 0x80 | len(close_payload(1002, closed.reason))])


def test_invalid_close_reason_closes_with_1007() -> None:
    _, server = open_pair()
    [closed] = server.receive_data(client_frame(0x8, close_payload(1000) + b"\xc0"))
    assert closed == Closed(
        code=CloseCode.INVALID_PAYLOAD, reason="close reason is not valid UTF-8"
    )


def test_violation_while_closing_sends_no_second_close() -> None:
    _, server = open_pair()
    server.close()
    server.data_to_send()
    assert server.receive_data(client_frame(0x4)) == [
        Closed(code=CloseCode.PROTOCOL_ERROR, reason="unknown opcode 0x4")
    ]
    assert server.data_to_send() == b""


def test_frames_before_a_violation_are_delivered() -> None:
    _, server = open_pair()
    events = server.receive_data(client_frame(0x9, b"ok") + client_frame(0x3))
    assert events[0] == PingReceived(payload=b"ok")
    assert isinstance(events[1], Closed)


def test_extended_lengths_split_across_reads() -> None:
    _, server = open_pair()
    data = client_frame(0x1, b"y" * 300) + client_frame(0x1, b"z" * 70000)
    # Cut inside the 16-bit length, then inside the 64-bit length.
    cuts = [0, 3, 300 + 8 + 5, len(data)]
    events: list[WsEvent] = []
    for start, end in itertools.pairwise(cuts):
        events += server.receive_data(data[start:end])
    assert events == [TextMessage(text="y" * 300), TextMessage(text="z" * 70000)]
