"""permessage-deflate negotiation (RFC 7692 section 7.1), both roles, over real handshakes."""

from __future__ import annotations

import base64
import hashlib

import pytest
from ws_pair import new_client, open_pair, upgrade_request

from lfws_core.close_codes import CloseCode
from lfws_core.errors import LocalProtocolError
from lfws_core.ws import (
    Closed,
    DeflateParameters,
    Opened,
    PerMessageDeflate,
    ServerConfig,
    UpgradeRequest,
    WsServer,
    WsState,
)

DEFLATE = PerMessageDeflate()
WIDE = PerMessageDeflate(max_window_bits=15, peer_max_window_bits=15)

# new_client draws its nonce from CountingBytes: the bytes 0..15.
KEY = base64.b64encode(bytes(range(16))).decode()
ACCEPT = base64.b64encode(
    hashlib.sha1((KEY + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()
).decode()


def server_answer(
    offer: str | None, options: PerMessageDeflate | None = DEFLATE
) -> tuple[str | None, WsServer]:
    """Run a handshake offering ``offer``; the server's extension answer, if any."""
    server = WsServer(ServerConfig(compression=options))
    extra = [] if offer is None else [("Sec-WebSocket-Extensions", offer)]
    [request] = server.receive_data(upgrade_request(extra=extra))
    assert isinstance(request, UpgradeRequest)
    server.accept()
    head = server.data_to_send().decode("latin-1").split("\r\n")
    answers = [line.partition(": ")[2] for line in head if line.startswith("Sec-WebSocket-Ext")]
    assert len(answers) <= 1
    return (answers[0] if answers else None), server


@pytest.mark.parametrize(
    ("offer", "answer"),
    [
        ("permessage-deflate", "permessage-deflate; server_max_window_bits=12"),
        (
            "permessage-deflate; client_max_window_bits",
            "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12",
        ),
        (
            "permessage-deflate; client_max_window_bits=10",
            "permessage-deflate; server_max_window_bits=12; client_max_window_bits=10",
        ),
        (
            "permessage-deflate; server_max_window_bits=9",
            "permessage-deflate; server_max_window_bits=9",
        ),
        (
            "permessage-deflate; server_max_window_bits=15",
            "permessage-deflate; server_max_window_bits=12",
        ),
        (
            'permessage-deflate; server_max_window_bits="10"',
            "permessage-deflate; server_max_window_bits=10",
        ),
        (
            "Permessage-Deflate; Server_No_Context_Takeover; client_no_context_takeover",
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover;"
            " server_max_window_bits=12",
        ),
        # Other extensions are skipped, a malformed offer is declined and the
        # next one considered (RFC 7692 5).
        (
            "x-webkit-deflate-frame, permessage-deflate",
            "permessage-deflate; server_max_window_bits=12",
        ),
        (
            "permessage-deflate; mode=fast, permessage-deflate; server_max_window_bits=8",
            "permessage-deflate; server_max_window_bits=8",
        ),
        (" , permessage-deflate", "permessage-deflate; server_max_window_bits=12"),
        ("x-foo; a; a, permessage-deflate", "permessage-deflate; server_max_window_bits=12"),
    ],
)
def test_server_accepts_a_valid_offer(offer: str, answer: str) -> None:
    assert server_answer(offer)[0] == answer


@pytest.mark.parametrize(
    "offer",
    [
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=08",
        "permessage-deflate; server_max_window_bits=abc",
        "permessage-deflate; client_max_window_bits=16",
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; client_no_context_takeover=true",
        "permessage-deflate; client_max_window_bits; client_max_window_bits",
        "permessage-deflate; server_no_context_takeover; Server_No_Context_Takeover",
        "permessage-deflate; mode=fast",
        "permessage-deflate;; client_max_window_bits",
        "permessage-deflate; =10",
        "permessage-deflate; bits=a b",
        'permessage-deflate; server_max_window_bits="1 0"',
        "x-webkit-deflate-frame",
        "",
    ],
)
def test_server_declines_a_malformed_or_unknown_offer(offer: str) -> None:
    answer, server = server_answer(offer)
    assert answer is None
    assert server.state is WsState.OPEN  # the connection goes on, uncompressed
    assert server.compression is None


def test_server_without_compression_ignores_offers() -> None:
    answer, server = server_answer("permessage-deflate", options=None)
    assert answer is None
    assert server.compression is None


def test_server_with_compression_and_no_offer() -> None:
    answer, server = server_answer(None)
    assert answer is None
    assert server.compression is None


@pytest.mark.parametrize(
    ("options", "offer", "answer", "agreed"),
    [
        (WIDE, "permessage-deflate", "permessage-deflate", (False, False, 15, 15)),
        (
            WIDE,
            "permessage-deflate; client_max_window_bits",
            "permessage-deflate",
            (False, False, 15, 15),
        ),
        (
            PerMessageDeflate(no_context_takeover=True, peer_no_context_takeover=True),
            "permessage-deflate; client_max_window_bits=9",
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover;"
            " server_max_window_bits=12; client_max_window_bits=9",
            (True, True, 12, 9),
        ),
        (
            DEFLATE,
            "permessage-deflate; client_no_context_takeover; server_max_window_bits=15",
            "permessage-deflate; client_no_context_takeover; server_max_window_bits=12",
            (False, True, 12, 15),
        ),
    ],
)
def test_server_agreement(
    options: PerMessageDeflate, offer: str, answer: str, agreed: tuple[bool, bool, int, int]
) -> None:
    sent, server = server_answer(offer, options)
    assert sent == answer
    assert server.compression == DeflateParameters(
        server_no_context_takeover=agreed[0],
        client_no_context_takeover=agreed[1],
        server_max_window_bits=agreed[2],
        client_max_window_bits=agreed[3],
    )


# --- client ---------------------------------------------------------------------------


def offer_of(options: PerMessageDeflate) -> str:
    request = new_client(compression=options).data_to_send().decode("latin-1")
    [offer] = [line for line in request.split("\r\n") if line.startswith("Sec-WebSocket-Ext")]
    return offer.partition(": ")[2]


@pytest.mark.parametrize(
    ("options", "offer"),
    [
        (DEFLATE, "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12"),
        (WIDE, "permessage-deflate; client_max_window_bits"),
        (
            PerMessageDeflate(
                no_context_takeover=True,
                peer_no_context_takeover=True,
                max_window_bits=15,
                peer_max_window_bits=9,
            ),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover;"
            " server_max_window_bits=9; client_max_window_bits",
        ),
    ],
)
def test_client_offer(options: PerMessageDeflate, offer: str) -> None:
    assert offer_of(options) == offer


def test_client_without_compression_offers_nothing() -> None:
    assert b"Sec-WebSocket-Extensions" not in new_client().data_to_send()


def switch(answer: str | None) -> bytes:
    lines = [
        "HTTP/1.1 101 Switching Protocols",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Accept: {ACCEPT}",
    ]
    if answer is not None:
        lines.append(f"Sec-WebSocket-Extensions: {answer}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


@pytest.mark.parametrize(
    ("options", "answer", "agreed"),
    [
        (
            DEFLATE,
            "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12",
            (False, False, 12, 12),
        ),
        (DEFLATE, "permessage-deflate; server_max_window_bits=9", (False, False, 9, 12)),
        (
            DEFLATE,
            "PerMessage-Deflate;server_max_window_bits=12;client_max_window_bits=8",
            (False, False, 12, 8),
        ),
        (
            DEFLATE,
            "permessage-deflate; server_max_window_bits=12; server_no_context_takeover;"
            " client_no_context_takeover",
            (True, True, 12, 12),
        ),
        (WIDE, "permessage-deflate", (False, False, 15, 15)),
        (WIDE, "permessage-deflate; server_max_window_bits=10", (False, False, 10, 15)),
        (
            PerMessageDeflate(no_context_takeover=True, peer_no_context_takeover=True),
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=12",
            (True, True, 12, 12),
        ),
    ],
)
def test_client_accepts_a_fitting_answer(
    options: PerMessageDeflate, answer: str, agreed: tuple[bool, bool, int, int]
) -> None:
    client = new_client(compression=options)
    [opened] = client.receive_data(switch(answer))
    assert isinstance(opened, Opened)
    assert client.compression == DeflateParameters(
        server_no_context_takeover=agreed[0],
        client_no_context_takeover=agreed[1],
        server_max_window_bits=agreed[2],
        client_max_window_bits=agreed[3],
    )


def test_client_without_an_answer_runs_uncompressed() -> None:
    client = new_client(compression=WIDE)
    [opened] = client.receive_data(switch(None))
    assert isinstance(opened, Opened)
    assert client.compression is None


@pytest.mark.parametrize(
    ("options", "answer", "problem"),
    [
        (DEFLATE, "permessage-deflate", "lacks the server_max_window_bits"),
        (DEFLATE, "permessage-deflate; server_max_window_bits=13", "above the one offered"),
        (
            DEFLATE,
            "permessage-deflate; server_max_window_bits=12; client_max_window_bits=13",
            "above the one offered",
        ),
        (
            DEFLATE,
            "permessage-deflate; server_max_window_bits=12; client_max_window_bits",
            "invalid client_max_window_bits",
        ),
        (WIDE, "permessage-deflate; server_max_window_bits=7", "invalid server_max_window_bits"),
        (WIDE, "permessage-deflate; mode=fast", "unknown parameter mode"),
        (WIDE, "permessage-deflate; server_no_context_takeover=1", "takes no value"),
        (
            WIDE,
            "permessage-deflate; client_max_window_bits=9; client_max_window_bits=9",
            "repeated",
        ),
        (WIDE, "permessage-deflate, permessage-deflate", "not offered"),
        (WIDE, "x-webkit-deflate-frame", "not offered"),
        (WIDE, "permessage-deflate;; x", "is not a token"),
        (
            PerMessageDeflate(peer_no_context_takeover=True),
            "permessage-deflate; server_max_window_bits=12",
            "lacks the server_no_context_takeover",
        ),
        (None, "permessage-deflate", "not offered"),
    ],
)
def test_client_fails_on_an_answer_that_does_not_fit(
    options: PerMessageDeflate | None, answer: str, problem: str
) -> None:
    client = new_client(compression=options)
    [closed] = client.receive_data(switch(answer))
    assert isinstance(closed, Closed)
    assert closed.code == CloseCode.ABNORMAL
    assert problem in closed.reason
    assert client.state is WsState.CLOSED
    assert client.transport_should_close


def test_pair_negotiates_the_defaults() -> None:
    client, server = open_pair(ServerConfig(compression=DEFLATE), compression=DEFLATE)
    agreed = DeflateParameters(
        server_no_context_takeover=False,
        client_no_context_takeover=False,
        server_max_window_bits=12,
        client_max_window_bits=12,
    )
    assert client.compression == server.compression == agreed


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_window_bits", 7),
        ("max_window_bits", 16),
        ("peer_max_window_bits", 7),
        ("level", -1),
        ("level", 10),
        ("memory_level", 0),
        ("memory_level", 10),
    ],
)
def test_options_are_checked(field: str, value: int) -> None:
    with pytest.raises(LocalProtocolError, match=field):
        PerMessageDeflate(**{field: value})  # type: ignore[arg-type]
