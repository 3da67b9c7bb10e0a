"""WebSocket URLs: the parts a connection is opened from."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lfws_core.errors import LocalProtocolError
from lfws_core.urls import WsUrl, parse_ws_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("ws://example.com", WsUrl(host="example.com", port=80, secure=False, resource="/")),
        ("wss://example.com", WsUrl(host="example.com", port=443, secure=True, resource="/")),
        (
            "ws://example.com:8080/sync",
            WsUrl(host="example.com", port=8080, secure=False, resource="/sync"),
        ),
        ("wss://example.com:80/", WsUrl(host="example.com", port=80, secure=True, resource="/")),
        (
            "WS://Example.COM/Sync",
            WsUrl(host="example.com", port=80, secure=False, resource="/Sync"),
        ),
        (
            "ws://h/sync?room=1&x=%20",
            WsUrl(host="h", port=80, secure=False, resource="/sync?room=1&x=%20"),
        ),
        ("ws://h?room=1", WsUrl(host="h", port=80, secure=False, resource="/?room=1")),
        ("ws://h/?", WsUrl(host="h", port=80, secure=False, resource="/")),
        ("ws://127.0.0.1:9000", WsUrl(host="127.0.0.1", port=9000, secure=False, resource="/")),
        ("ws://[::1]:9000/s", WsUrl(host="::1", port=9000, secure=False, resource="/s")),
        ("wss://[2001:DB8::1]", WsUrl(host="2001:db8::1", port=443, secure=True, resource="/")),
        ("ws://h/caf\u00e9", WsUrl(host="h", port=80, secure=False, resource="/caf%C3%A9")),
        (
            "ws://b\u00fccher.example/",
            WsUrl(host="xn--bcher-kva.example", port=80, secure=False, resource="/"),
        ),
    ],
)
def test_parts(url: str, expected: WsUrl) -> None:
    assert parse_ws_url(url) == expected


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("", "ws:// or wss://"),
        ("http://example.com/", "ws:// or wss://"),
        ("example.com", "ws:// or wss://"),
        ("ws://", "no host"),
        ("ws:///sync", "no host"),
        ("ws://:80/", "no host"),
        ("ws://h:abc/", "invalid WebSocket URL"),
        ("ws://h:65536/", "invalid WebSocket URL"),
        ("ws://h:0/", "port 0"),
        ("ws://[::1/", "invalid WebSocket URL"),
        ("ws://user:pw@h/", "credentials"),
        ("ws://user@h/", "credentials"),
        ("ws://h/sync#top", "fragment"),
        ("ws://h/a b", "whitespace"),
        ("ws://h/\tx", "whitespace"),
        ("ws://h/\x00", "whitespace"),
        ("ws://h/\x7f", "whitespace"),
        ("ws://" + "\u00fc" * 64 + ".example/", "invalid host name"),
    ],
)
def test_rejected(url: str, complaint: str) -> None:
    with pytest.raises(LocalProtocolError, match=complaint):
        parse_ws_url(url)


def test_not_a_string() -> None:
    with pytest.raises(LocalProtocolError, match="must be a string"):
        parse_ws_url(b"ws://h/")  # type: ignore[arg-type]


@given(
    secure=st.booleans(),
    host=st.from_regex(r"[a-z][a-z0-9-]{0,20}(\.[a-z][a-z0-9-]{0,20}){0,3}", fullmatch=True),
    port=st.none() | st.integers(1, 65535),
    path=st.from_regex(r"(/[A-Za-z0-9._~-]{0,10}){0,4}", fullmatch=True),
    query=st.none() | st.from_regex(r"[A-Za-z0-9=&]{0,20}", fullmatch=True),
)
def test_round_trip(
    secure: bool, host: str, port: int | None, path: str, query: str | None
) -> None:
    url = f"{'wss' if secure else 'ws'}://{host}{'' if port is None else f':{port}'}{path}"
    if query is not None:
        url += f"?{query}"
    parsed = parse_ws_url(url)
    assert parsed.host == host
    assert parsed.port == (port if port is not None else 443 if secure else 80)
    assert parsed.secure is secure
    expected = (path or "/") + (f"?{query}" if query else "")
    assert parsed.resource == expected
    assert parsed.resource.startswith("/")
