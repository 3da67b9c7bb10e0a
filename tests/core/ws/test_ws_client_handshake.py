"""The client's opening handshake (RFC 6455 4.1), against hand-written responses."""

from __future__ import annotations

import base64
import hashlib

import pytest
from ws_pair import CountingBytes, frame, new_client

from lfws_core.close_codes import CloseCode
from lfws_core.errors import LocalProtocolError
from lfws_core.ws import Closed, Opened, Rejected, TextMessage, WsClient, WsState

# CountingBytes makes the nonce bytes 0..15.
KEY = base64.b64encode(bytes(range(16))).decode()
ACCEPT = base64.b64encode(
    hashlib.sha1((KEY + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()
).decode()


def response(
    status_line: str = "HTTP/1.1 101 Switching Protocols",
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
) -> bytes:
    if headers is None:
        headers = [("Upgrade", "websocket"), ("Connection", "Upgrade")]
        headers.append(("Sec-WebSocket-Accept", ACCEPT))
    head = "\r\n".join([status_line, *(f"{n}: {v}" for n, v in headers)]) + "\r\n\r\n"
    return head.encode("latin-1") + body


def test_request_bytes() -> None:
    client = new_client(
        target="/sync?room=1",
        origin="https://app.example",
        headers=[("Authorization", "Bearer abc")],
    )
    assert client.state is WsState.CONNECTING
    assert not client.transport_should_close
    assert (
        client.data_to_send()
        == (
            "GET /sync?room=1 HTTP/1.1\r\n"
            "Host: example.com\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {KEY}\r\n"
            "Sec-WebSocket-Version: 13\r\n"
            "Origin: https://app.example\r\n"
            "Authorization: Bearer abc\r\n"
            "\r\n"
        ).encode()
    )
    assert client.data_to_send() == b""


def test_accepted() -> None:
    client = new_client()
    events = client.receive_data(response())
    assert events == [
        Opened(
            headers=(
                ("upgrade", "websocket"),
                ("connection", "Upgrade"),
                ("sec-websocket-accept", ACCEPT),
            )
        )
    ]
    assert client.state is WsState.OPEN


def test_accept_in_pieces_with_frames_right_behind() -> None:
    client = new_client()
    data = response() + frame(0x1, b"hi") + frame(0x1, b"there")[:3]
    events = [event for byte in data for event in client.receive_data(bytes([byte]))]
    assert [type(e) for e in events] == [Opened, TextMessage]
    assert client.receive_data(frame(0x1, b"there")[3:]) == [TextMessage(text="there")]


def test_interim_responses_are_skipped() -> None:
    client = new_client()
    interim = b"HTTP/1.1 100 Continue\r\n\r\n"
    assert isinstance(client.receive_data(interim + response())[0], Opened)


@pytest.mark.parametrize(
    ("headers", "problem"),
    [
        ([("Connection", "Upgrade"), ("Sec-WebSocket-Accept", ACCEPT)], "Upgrade: websocket"),
        ([("Upgrade", "websocket"), ("Sec-WebSocket-Accept", ACCEPT)], "Connection: Upgrade"),
        ([("Upgrade", "websocket"), ("Connection", "Upgrade")], "Sec-WebSocket-Accept"),
        (
            [
                ("Upgrade", "WebSocket"),
                ("Connection", "keep-alive, upgrade"),
                ("Sec-WebSocket-Accept", "x" + ACCEPT[1:]),
            ],
            "Sec-WebSocket-Accept",
        ),
        (
            [
                ("Upgrade", "websocket"),
                ("Connection", "Upgrade"),
                ("Sec-WebSocket-Accept", ACCEPT),
                ("Sec-WebSocket-Extensions", "permessage-deflate"),
            ],
            "not offered",
        ),
        (
            [
                ("Upgrade", "websocket"),
                ("Connection", "Upgrade"),
                ("Sec-WebSocket-Accept", ACCEPT),
                ("Sec-WebSocket-Protocol", "chat"),
            ],
            "not offered",
        ),
    ],
)
def test_invalid_switch_fails_the_connection(headers: list[tuple[str, str]], problem: str) -> None:
    client = new_client()
    [closed] = client.receive_data(response(headers=headers))
    assert isinstance(closed, Closed)
    assert closed.code == CloseCode.ABNORMAL
    assert problem in closed.reason
    assert client.state is WsState.CLOSED
    assert client.transport_should_close
    assert client.receive_data(frame(0x1, b"late")) == []


def test_case_insensitive_tokens_are_accepted() -> None:
    headers = [("Upgrade", "WebSocket"), ("Connection", "keep-alive, Upgrade")]
    headers.append(("Sec-WebSocket-Accept", ACCEPT))
    assert isinstance(new_client().receive_data(response(headers=headers))[0], Opened)


def test_rejection_with_body() -> None:
    client = new_client()
    data = response(
        "HTTP/1.1 403 Forbidden",
        [("Content-Type", "text/plain"), ("Content-Length", "12")],
        b"origin, no!\n",
    )
    assert client.receive_data(data[:-4]) == []
    assert client.receive_data(data[-4:]) == [
        Rejected(
            status=403,
            reason="Forbidden",
            headers=(("content-type", "text/plain"), ("content-length", "12")),
            body=b"origin, no!\n",
        )
    ]
    assert client.state is WsState.REJECTED
    assert client.transport_should_close
    assert client.receive_data(b"more") == []


def test_rejection_body_read_until_end_of_input() -> None:
    client = new_client()
    assert client.receive_data(response("HTTP/1.1 401 Unauthorized", [], b"who?")) == []
    [rejected] = client.receive_data(b"")
    assert rejected == Rejected(status=401, reason="Unauthorized", headers=(), body=b"who?")


def test_rejection_cut_short_still_reports_the_status() -> None:
    client = new_client()
    client.receive_data(response("HTTP/1.1 503 Busy", [("Content-Length", "100")], b"par"))
    [rejected] = client.receive_data(b"")
    assert isinstance(rejected, Rejected)
    assert (rejected.status, rejected.body) == (503, b"par")


def test_rejection_body_is_capped() -> None:
    client = new_client(max_handshake_size=1024)
    client.receive_data(response("HTTP/1.1 500 Oops", [("Content-Length", "5000")]))
    [rejected] = client.receive_data(b"x" * 2000)
    assert isinstance(rejected, Rejected)
    assert rejected.body == b"x" * 1024
    assert client.state is WsState.REJECTED


@pytest.mark.parametrize("data", [b"NOT HTTP AT ALL\r\n\r\n", b"HTTP/1.1 20x OK\r\n\r\n"])
def test_garbage_response(data: bytes) -> None:
    client = new_client()
    [closed] = client.receive_data(data)
    assert isinstance(closed, Closed)
    assert closed.code == CloseCode.ABNORMAL
    assert closed.reason.startswith("invalid HTTP response")


def test_oversized_response_head() -> None:
    client = new_client(max_handshake_size=1024)
    data = response(headers=[("X-Padding", "p" * 2000)])
    [closed] = client.receive_data(data)
    assert closed == Closed(code=CloseCode.ABNORMAL, reason="response head larger than 1024 bytes")


def test_endless_response_head() -> None:
    client = new_client(max_handshake_size=1024)
    assert client.receive_data(b"HTTP/1.1 101 Switching Protocols\r\n") == []
    [closed] = client.receive_data(b"X-Junk: " + b"j" * 2000)
    assert isinstance(closed, Closed)
    assert closed.code == CloseCode.ABNORMAL


def test_end_of_input_before_a_response() -> None:
    client = new_client()
    assert client.receive_data(b"HTTP/1.1 10") == []
    [closed] = client.receive_data(b"")
    assert isinstance(closed, Closed)
    assert closed.code == CloseCode.ABNORMAL


def test_random_source_supplies_nonce_then_mask_keys_in_bulk() -> None:
    source = CountingBytes()
    client = WsClient(host="h", random_bytes=source)
    assert source.calls == [16]
    client.receive_data(response())
    client.send_text("a")
    client.send_text("b")
    assert source.calls == [16, 256]


def test_short_random_source_is_refused() -> None:
    with pytest.raises(LocalProtocolError, match="random_bytes"):
        WsClient(host="h", random_bytes=lambda n: b"\x00" * (n - 1))


@pytest.mark.parametrize(
    "name", ["Host", "upgrade", "CONNECTION", "Sec-WebSocket-Protocol", "Origin", "Content-Length"]
)
def test_handshake_headers_cannot_be_overridden(name: str) -> None:
    with pytest.raises(LocalProtocolError, match="set by the handshake"):
        new_client(headers=[(name, "x")])


def test_invalid_request_values_are_refused() -> None:
    with pytest.raises(LocalProtocolError):
        new_client(headers=[("Bad Name", "x")])
    with pytest.raises(LocalProtocolError):
        new_client(target="/with space")


def test_invalid_limit_is_refused() -> None:
    with pytest.raises(LocalProtocolError, match="max_message_size"):
        new_client(max_message_size=0)


def test_cannot_send_before_open() -> None:
    client = new_client()
    with pytest.raises(LocalProtocolError):
        client.send_text("early")
    with pytest.raises(LocalProtocolError):
        client.send_ping()
    with pytest.raises(LocalProtocolError):
        client.close()
