"""The server's side of the opening handshake (RFC 6455 4.2) and HTTP routing."""

from __future__ import annotations

import pytest
from ws_pair import (
    HANDSHAKE_ACCEPT,
    HANDSHAKE_KEY,
    client_frame,
    new_client,
    transfer,
    upgrade_request,
)

from lfws_core.close_codes import CloseCode
from lfws_core.errors import LocalProtocolError
from lfws_core.ws import (
    Closed,
    HttpRequest,
    Rejected,
    ServerConfig,
    TextMessage,
    UpgradeRequest,
    WsServer,
    WsState,
)

STANDARD = [
    ("Host", "example.com"),
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Key", HANDSHAKE_KEY),
    ("Sec-WebSocket-Version", "13"),
]


def without(name: str) -> list[tuple[str, str]]:
    return [(n, v) for n, v in STANDARD if n != name]


def replaced(name: str, value: str) -> list[tuple[str, str]]:
    return [*without(name), (name, value)]


def test_accept_writes_the_rfc_accept_token() -> None:
    server = WsServer()
    assert server.state is WsState.CONNECTING
    [request] = server.receive_data(upgrade_request("/?a=1&b=2", extra=[("X-Trace", "t1")]))
    assert request == UpgradeRequest(
        path="/",
        query="a=1&b=2",
        headers=(
            ("host", "example.com"),
            ("upgrade", "websocket"),
            ("connection", "Upgrade"),
            ("sec-websocket-key", HANDSHAKE_KEY),
            ("sec-websocket-version", "13"),
            ("x-trace", "t1"),
        ),
    )
    assert server.data_to_send() == b""
    server.accept([("X-Server", "lfws")])
    assert (
        server.data_to_send()
        == (
            "HTTP/1.1 101 Switching Protocols\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {HANDSHAKE_ACCEPT}\r\n"
            "X-Server: lfws\r\n"
            "\r\n"
        ).encode()
    )
    assert server.state is WsState.OPEN


def test_client_extra_headers_and_query_reach_the_server() -> None:
    client = new_client(target="/sync?repo=notes", headers=[("Authorization", "Bearer t")])
    [request] = transfer(client, WsServer(ServerConfig(path="/sync")))
    assert isinstance(request, UpgradeRequest)
    assert (request.path, request.query) == ("/sync", "repo=notes")
    assert ("authorization", "Bearer t") in request.headers


def test_request_in_pieces() -> None:
    server = WsServer()
    data = upgrade_request()
    events = [event for byte in data for event in server.receive_data(bytes([byte]))]
    assert [type(e) for e in events] == [UpgradeRequest]


def refusal(server: WsServer, data: bytes) -> Rejected:
    [rejected] = server.receive_data(data)
    assert isinstance(rejected, Rejected)
    assert server.state is WsState.REJECTED
    assert server.transport_should_close
    sent = server.data_to_send()
    assert sent.startswith(f"HTTP/1.1 {rejected.status} {rejected.reason}\r\n".encode())
    assert sent.endswith(b"\r\n\r\n" + rejected.body)
    assert b"Connection: close\r\n" in sent
    assert f"Content-Length: {len(rejected.body)}\r\n".encode() in sent
    # The connection is over: nothing more is read, nothing more is sent.
    assert server.receive_data(upgrade_request()) == []
    with pytest.raises(LocalProtocolError):
        server.accept()
    return rejected


@pytest.mark.parametrize(
    ("data", "status", "explanation"),
    [
        (upgrade_request("/other"), 404, "no WebSocket endpoint at /other"),
        (upgrade_request("/other?x=/"), 404, "no WebSocket endpoint at /other"),
        (upgrade_request(method="POST"), 400, "HTTP/1.1 GET"),
        (upgrade_request(version="1.0"), 400, "HTTP/1.1 GET"),
        (upgrade_request(headers=without("Connection")), 400, "Connection: Upgrade"),
        (upgrade_request(headers=replaced("Connection", "close")), 400, "Connection: Upgrade"),
        (upgrade_request(headers=without("Sec-WebSocket-Version")), 400, "Version"),
        (upgrade_request(headers=without("Sec-WebSocket-Key")), 400, "Sec-WebSocket-Key"),
        (upgrade_request(headers=replaced("Sec-WebSocket-Key", "c2hvcnQ=")), 400, "Key"),
        (upgrade_request(headers=replaced("Sec-WebSocket-Key", "!" * 24)), 400, "Key"),
        (b"GARBAGE\r\n\r\n", 400, "invalid HTTP request"),
        (b"GET / HTTP/1.1\r\n\r\n", 400, "invalid HTTP request"),  # no Host
    ],
)
def test_bad_requests_are_refused(data: bytes, status: int, explanation: str) -> None:
    rejected = refusal(WsServer(), data)
    assert rejected.status == status
    assert explanation in rejected.body.decode()


def test_wrong_version_gets_426_with_the_supported_version() -> None:
    rejected = refusal(WsServer(), upgrade_request(headers=replaced("Sec-WebSocket-Version", "8")))
    assert (rejected.status, rejected.reason) == (426, "Upgrade Required")
    assert ("sec-websocket-version", "13") in rejected.headers


def test_oversized_head_gets_431() -> None:
    server = WsServer(ServerConfig(max_handshake_size=1024))
    rejected = refusal(server, upgrade_request(extra=[("X-Padding", "p" * 2000)]))
    assert rejected.status == 431
    assert rejected.body == b"request head larger than 1024 bytes"


def test_endless_head_gets_431_before_it_ends() -> None:
    server = WsServer(ServerConfig(max_handshake_size=1024))
    assert server.receive_data(b"GET / HTTP/1.1\r\n") == []
    assert refusal(server, b"X-Junk: " + b"j" * 2000).status == 431


ORIGINS = frozenset({"https://app.example", "https://admin.example"})


@pytest.mark.parametrize(
    ("config", "origin", "accepted"),
    [
        (ServerConfig(), None, True),
        (ServerConfig(), "https://evil.example", True),
        (ServerConfig(allowed_origins=ORIGINS), "https://app.example", True),
        (ServerConfig(allowed_origins=ORIGINS), "https://evil.example", False),
        (ServerConfig(allowed_origins=ORIGINS), "https://app.example.evil", False),
        (ServerConfig(allowed_origins=ORIGINS), None, False),
        (ServerConfig(allowed_origins=ORIGINS, allow_missing_origin=True), None, True),
        (ServerConfig(allowed_origins=frozenset()), "https://app.example", False),
    ],
)
def test_origin_allow_list(config: ServerConfig, origin: str | None, accepted: bool) -> None:
    extra = [] if origin is None else [("Origin", origin)]
    server = WsServer(config)
    if accepted:
        assert [type(e) for e in server.receive_data(upgrade_request(extra=extra))] == [
            UpgradeRequest
        ]
    else:
        rejected = refusal(server, upgrade_request(extra=extra))
        assert (rejected.status, rejected.body) == (403, b"origin not allowed")


def test_explicit_reject_of_an_upgrade() -> None:
    server = WsServer()
    server.receive_data(upgrade_request())
    server.reject(401, "token expired")
    assert server.data_to_send() == (
        b"HTTP/1.1 401 Unauthorized\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Length: 13\r\n"
        b"Connection: close\r\n"
        b"\r\n"
        b"token expired"
    )
    assert server.state is WsState.REJECTED
    with pytest.raises(LocalProtocolError):
        server.reject(401)


def test_reject_defaults_to_the_reason_phrase() -> None:
    server = WsServer()
    server.receive_data(upgrade_request())
    server.reject(503)
    assert server.data_to_send().endswith(b"\r\n\r\nService Unavailable")


def test_plain_http_request_and_response() -> None:
    server = WsServer(ServerConfig(path="/sync"))
    request = b"GET /healthz?deep=1 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n"
    [event] = server.receive_data(request)
    assert event == HttpRequest(
        method="GET",
        target="/healthz?deep=1",
        headers=(("host", "example.com"), ("accept", "*/*")),
    )
    with pytest.raises(LocalProtocolError, match="UpgradeRequest"):
        server.accept()
    server.send_http_response(200, [("Content-Type", "application/json")], b'{"ok":true}')
    assert server.data_to_send() == (
        b"HTTP/1.1 200 OK\r\n"
        b"Content-Type: application/json\r\n"
        b"Content-Length: 11\r\n"
        b"Connection: close\r\n"
        b"\r\n"
        b'{"ok":true}'
    )
    assert server.state is WsState.REJECTED
    assert server.transport_should_close


def test_head_response_has_no_body() -> None:
    server = WsServer()
    server.receive_data(b"HEAD /healthz HTTP/1.1\r\nHost: h\r\n\r\n")
    server.send_http_response(200, body=b"ok")
    assert server.data_to_send() == (
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n"
    )


def test_empty_response_and_unknown_status_phrase() -> None:
    server = WsServer()
    server.receive_data(b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc")
    server.send_http_response(299)
    assert (
        server.data_to_send() == b"HTTP/1.1 299 \r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )


def test_other_upgrades_are_plain_http() -> None:
    server = WsServer()
    data = b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n"
    [event] = server.receive_data(data)
    assert isinstance(event, HttpRequest)


def test_response_misuse() -> None:
    server = WsServer()
    with pytest.raises(LocalProtocolError, match="no request"):
        server.send_http_response(200)
    with pytest.raises(LocalProtocolError, match="UpgradeRequest"):
        server.accept()
    server.receive_data(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    for status in (101, 199, 600):
        with pytest.raises(LocalProtocolError, match="final HTTP status"):
            server.send_http_response(status)
    with pytest.raises(LocalProtocolError, match="set by the handshake"):
        server.send_http_response(200, [("Content-Length", "5")])
    with pytest.raises(LocalProtocolError):
        server.send_http_response(200, [("Bad Name", "x")])
    # Refused calls leave the request answerable.
    server.send_http_response(204)
    assert server.data_to_send().startswith(b"HTTP/1.1 204 No Content\r\n")


def test_accept_misuse() -> None:
    server = WsServer()
    server.receive_data(upgrade_request())
    with pytest.raises(LocalProtocolError, match="set by the handshake"):
        server.accept([("Sec-WebSocket-Protocol", "chat")])
    with pytest.raises(LocalProtocolError):
        server.accept([("X", "bad\r\nvalue")])
    server.accept()
    with pytest.raises(LocalProtocolError):
        server.accept()
    with pytest.raises(LocalProtocolError):
        server.send_http_response(200)


def test_end_of_input_during_the_handshake() -> None:
    server = WsServer()
    server.receive_data(b"GET / HT")
    assert server.receive_data(b"") == [
        Closed(code=CloseCode.ABNORMAL, reason="connection closed during the opening handshake")
    ]
    assert server.state is WsState.CLOSED
    assert server.transport_should_close


def test_end_of_input_after_a_plain_request_still_gets_the_answer() -> None:
    # A client may half-close (shutdown(SHUT_WR)) once its request is sent.
    server = WsServer()
    [request] = server.receive_data(b"GET /healthz HTTP/1.1\r\nHost: h\r\n\r\n")
    assert isinstance(request, HttpRequest)
    assert server.receive_data(b"") == []
    assert server.state is WsState.CONNECTING
    assert not server.transport_should_close
    server.send_http_response(200, body=b"ok")
    assert server.data_to_send().endswith(b"\r\n\r\nok")
    assert server.transport_should_close


def test_end_of_input_while_the_answer_is_due() -> None:
    server = WsServer()
    server.receive_data(upgrade_request())
    [closed] = server.receive_data(b"")
    assert isinstance(closed, Closed)
    with pytest.raises(LocalProtocolError):
        server.accept()


def test_early_frames_are_delivered_by_accept() -> None:
    server = WsServer()
    early = client_frame(0x1, b"early")
    [request] = server.receive_data(upgrade_request() + early[:4])
    assert isinstance(request, UpgradeRequest)
    assert server.receive_data(early[4:]) == []
    assert server.accept() == [TextMessage(text="early")]
    assert server.receive_data(client_frame(0x1, b"next")) == [TextMessage(text="next")]


def test_accept_without_early_frames_returns_nothing() -> None:
    server = WsServer()
    server.receive_data(upgrade_request())
    assert server.accept() == []


def test_non_ascii_response_headers_are_refused_as_misuse() -> None:
    server = WsServer()
    server.receive_data(upgrade_request())
    with pytest.raises(LocalProtocolError, match="ASCII"):
        server.accept([("X-Greeting", "grüß dich")])
