"""What the fuzz targets found in lfws, pinned as regression tests.

1. A token with a lone surrogate (``update_credentials`` or ``ClientConfig``)
   was accepted, then made every later ``auth`` fail to encode: the
   ``LocalProtocolError`` surfaced from ``connection_made`` on each connection.
2. A header value outside printable ASCII was accepted by ``ClientConfig``,
   then h11 refused it with a bare ``UnicodeEncodeError`` from
   ``ClientConnection.transport_made``, on every connection attempt.
3. The JSON backends disagreed on a value hidden by a later duplicate key
   (``{"x": NaN, "x": 1}``): the stdlib parser discarded it unseen, orjson
   refused it. Now a replaced value is discarded unchecked by both.
"""

from __future__ import annotations

import pytest

from lfws_core.actions import SendBytes
from lfws_core.client import ClientConfig, ClientSession
from lfws_core.codec import ORJSON, STDLIB_JSON, JsonBackend, decode_message
from lfws_core.connection import ClientConnection
from lfws_core.errors import InvalidMessage, LocalProtocolError
from lfws_core.messages import Ping
from lfws_core.ws import ServerConfig, UpgradeRequest, WsClient, WsServer

URL = "ws://sync.example/sync"


@pytest.mark.parametrize("token", ["\ud800", "ok\udcff"])
def test_a_token_with_a_lone_surrogate_is_refused_up_front(token: str) -> None:
    with pytest.raises(LocalProtocolError, match="lone surrogates"):
        ClientConfig(url=URL, token=token)
    session = ClientSession(ClientConfig(url=URL, token="t0"), random=lambda: 0.5)
    session.start(0.0)
    session.connection_made(0.0)
    session.drain_actions()
    with pytest.raises(LocalProtocolError, match="lone surrogates"):
        session.update_credentials(token=token, headers={}, now=1.0)
    assert session.drain_actions() == []
    # The old credentials still work on the next connection.
    session.connection_lost(2.0, "gone")
    session.handle_timer(100.0)
    session.connection_made(100.0)
    assert any('"token":"t0"' in getattr(a, "text", "") for a in session.drain_actions())


@pytest.mark.parametrize("value", ["caf\u00e9", "\ud800", " padded", "padded ", "\t", "a\x7fb"])
def test_a_header_value_the_handshake_cannot_write_is_refused_by_the_config(value: str) -> None:
    with pytest.raises(LocalProtocolError, match="invalid value for header"):
        ClientConfig(url=URL, headers={"X-App": value})


@pytest.mark.parametrize("value", ["", "v1", "Bearer abc.def", "a \t b", "~!#"])
def test_header_values_the_handshake_can_write_are_accepted(value: str) -> None:
    config = ClientConfig(url=URL, headers={"X-App": value})
    connection = ClientConnection(config, random=lambda: 0.5, random_bytes=bytes)
    connection.session.start(0.0)
    connection.drain_actions(0.0)
    connection.transport_made(0.0)
    [written] = connection.drain_actions(0.0)
    assert isinstance(written, SendBytes)
    [request] = WsServer(ServerConfig(path="/sync")).receive_data(written.data)
    assert isinstance(request, UpgradeRequest)
    assert ("x-app", value) in request.headers


def test_non_ascii_handshake_fields_raise_the_documented_error() -> None:
    with pytest.raises(LocalProtocolError, match="must be ASCII"):
        WsClient(host="sync.example", random_bytes=bytes, headers=[("X-App", "caf\u00e9")])
    with pytest.raises(LocalProtocolError, match="must be ASCII"):
        WsClient(host="h\u00e9", random_bytes=bytes)


BACKENDS = [STDLIB_JSON] if ORJSON is None else [STDLIB_JSON, ORJSON]


@pytest.mark.parametrize("backend", BACKENDS, ids=lambda backend: backend.name)
@pytest.mark.parametrize(
    "hidden", ["NaN", "-Infinity", "1e999", "9" * 25, "9" * 400, "9" * 5000, '"\\ud800"']
)
def test_a_value_a_later_duplicate_replaces_is_discarded_unchecked(
    backend: JsonBackend, hidden: str
) -> None:
    text = f'{{"type":"ping","x":{hidden},"x":1}}'
    assert decode_message(text, backend=backend) == Ping()
    assert decode_message(text.encode(), backend=backend) == Ping()


@pytest.mark.parametrize("backend", BACKENDS, ids=lambda backend: backend.name)
@pytest.mark.parametrize(
    ("kept", "reason"),
    [
        ("NaN", "NaN is not valid JSON (numbers must be finite)"),
        ('[1,{"a":-Infinity}]', "-Infinity is not valid JSON (numbers must be finite)"),
        ("1e999", "number 1e999 is too large for a float"),
        ("9" * 400, "integer outside the 64-bit signed range"),
    ],
)
def test_a_value_that_stays_is_still_checked(backend: JsonBackend, kept: str, reason: str) -> None:
    with pytest.raises(InvalidMessage) as refused:
        decode_message(f'{{"type":"ping","x":1,"x":{kept}}}', backend=backend)
    assert refused.value.reason == reason
