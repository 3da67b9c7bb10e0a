"""permessage-deflate against websockets' sans-I/O protocols, both roles, many parameters."""

from __future__ import annotations

from typing import Any

import pytest
from websockets.client import ClientProtocol
from websockets.extensions.permessage_deflate import (
    ClientPerMessageDeflateFactory,
    ServerPerMessageDeflateFactory,
)
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.server import ServerProtocol
from websockets.uri import parse_uri
from ws_pair import new_client

from lfws_core.ws import (
    BinaryMessage,
    Opened,
    PerMessageDeflate,
    ServerConfig,
    TextMessage,
    UpgradeRequest,
    WsServer,
)

TEXTS = ['{"type":"ping"}', '{"type":"events","events":[' + '{"_data_id":"a"},' * 300 + "{}]}", ""]


def drain(protocol: ClientProtocol | ServerProtocol) -> bytes:
    return b"".join(protocol.data_to_send())


def messages(protocol: ClientProtocol | ServerProtocol, data: bytes) -> list[Frame]:
    protocol.receive_data(data)
    return [event for event in protocol.events_received() if isinstance(event, Frame)]


THEIR_OFFERS: list[dict[str, Any]] = [
    {},
    {"server_no_context_takeover": True, "client_no_context_takeover": True},
    {"server_max_window_bits": 9, "client_max_window_bits": True},
    {"client_max_window_bits": 10},
    {"server_max_window_bits": 15, "client_max_window_bits": 15},
]
OUR_OPTIONS = [
    PerMessageDeflate(),
    PerMessageDeflate(no_context_takeover=True, peer_no_context_takeover=True),
    PerMessageDeflate(max_window_bits=15, peer_max_window_bits=9, level=1, memory_level=9),
]


@pytest.mark.parametrize("offer", THEIR_OFFERS)
@pytest.mark.parametrize("options", OUR_OPTIONS)
def test_websockets_client_to_our_server(offer: dict[str, Any], options: PerMessageDeflate) -> None:
    theirs = ClientProtocol(
        parse_uri("ws://example.com/"), extensions=[ClientPerMessageDeflateFactory(**offer)]
    )
    theirs.send_request(theirs.connect())
    ours = WsServer(ServerConfig(compression=options, accept_binary=True))
    [request] = ours.receive_data(drain(theirs))
    assert isinstance(request, UpgradeRequest)
    ours.accept()
    theirs.receive_data(ours.data_to_send())
    theirs.events_received()
    assert theirs.handshake_exc is None
    assert len(theirs.extensions) == 1
    assert ours.compression is not None

    for text in TEXTS * 2:
        theirs.send_text(text.encode())
    theirs.send_text(b"frag", fin=False)
    theirs.send_continuation(b"mented " * 100, fin=False)
    theirs.send_continuation(b"!", fin=True)
    theirs.send_binary(bytes(5000))
    assert ours.receive_data(drain(theirs)) == [
        *(TextMessage(text=text) for text in TEXTS * 2),
        TextMessage(text="frag" + "mented " * 100 + "!"),
        BinaryMessage(data=bytes(5000)),
    ]
    for text in TEXTS * 2:
        ours.send_text(text)
    received = messages(theirs, ours.data_to_send())
    assert [frame.data.decode() for frame in received] == TEXTS * 2


THEIR_ANSWERS: list[dict[str, Any]] = [
    {},
    {"server_no_context_takeover": True, "client_no_context_takeover": True},
    {"server_max_window_bits": 9, "client_max_window_bits": 9},
    {"server_max_window_bits": 15, "client_max_window_bits": 15},
]


@pytest.mark.parametrize("answer", THEIR_ANSWERS)
@pytest.mark.parametrize("options", OUR_OPTIONS)
def test_our_client_to_websockets_server(
    answer: dict[str, Any], options: PerMessageDeflate
) -> None:
    theirs = ServerProtocol(extensions=[ServerPerMessageDeflateFactory(**answer)])
    ours = new_client(compression=options)
    theirs.receive_data(ours.data_to_send())
    [request] = theirs.events_received()
    assert isinstance(request, Request)
    theirs.send_response(theirs.accept(request))
    assert theirs.handshake_exc is None
    [opened] = ours.receive_data(drain(theirs))
    assert isinstance(opened, Opened)
    assert ours.compression is not None
    assert len(theirs.extensions) == 1

    for text in TEXTS * 2:
        ours.send_text(text)
    received = messages(theirs, ours.data_to_send())
    assert [(frame.opcode, frame.data.decode()) for frame in received] == [
        (Opcode.TEXT, text) for text in TEXTS * 2
    ]
    for text in TEXTS * 2:
        theirs.send_text(text.encode())
    theirs.send_text(b"a" * 3000, fin=False)
    theirs.send_continuation(b"b" * 3000, fin=True)
    assert ours.receive_data(drain(theirs)) == [
        *(TextMessage(text=text) for text in TEXTS * 2),
        TextMessage(text="a" * 3000 + "b" * 3000),
    ]
