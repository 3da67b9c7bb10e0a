"""Compressed messages (RFC 7692 section 6-7.2): framing rules, round trips, the inflation cap."""

from __future__ import annotations

import itertools
import tracemalloc
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ws_pair import client_frame, frame, open_pair

from lfws_core.close_codes import CloseCode
from lfws_core.ws import (
    BinaryMessage,
    Closed,
    PerMessageDeflate,
    PingReceived,
    ServerConfig,
    TextMessage,
    WsClient,
    WsEvent,
    WsServer,
    WsState,
)

DEFLATE = PerMessageDeflate()
TAIL = b"\x00\x00\xff\xff"


def compressed_pair(
    server: PerMessageDeflate = DEFLATE,
    client: PerMessageDeflate = DEFLATE,
    *,
    limit: int = 1 << 20,
) -> tuple[WsClient, WsServer]:
    config = ServerConfig(compression=server, accept_binary=True, max_message_size=limit)
    return open_pair(config, compression=client, accept_binary=True, max_message_size=limit)


class Compressor:
    """An independent permessage-deflate sender, straight on zlib."""

    def __init__(self, window_bits: int = 12, *, takeover: bool = True) -> None:
        self._window_bits = window_bits
        self._takeover = takeover
        self._zlib = self._new()

    def _new(self) -> zlib._Compress:
        return zlib.compressobj(6, zlib.DEFLATED, -self._window_bits)

    def __call__(self, data: bytes) -> bytes:
        if not self._takeover:
            self._zlib = self._new()
        out = self._zlib.compress(data) + self._zlib.flush(zlib.Z_SYNC_FLUSH)
        assert out.endswith(TAIL)
        return out[:-4]


def inflate(payload: bytes, window_bits: int = 15) -> bytes:
    return zlib.decompressobj(-window_bits).decompress(payload + TAIL)


def fragments(
    opcode: int, payload: bytes, cuts: list[int], *, masked: bool, compressed: bool = True
) -> bytes:
    """``payload`` split at ``cuts`` into frames, RSV1 on the first one only."""
    points = sorted({cut % (len(payload) + 1) for cut in cuts})
    pieces = [payload[a:b] for a, b in itertools.pairwise([0, *points, len(payload)])]
    make = client_frame if masked else frame
    out = []
    for index, piece in enumerate(pieces):
        first = index == 0
        out.append(
            make(
                opcode if first else 0,
                piece,
                fin=index == len(pieces) - 1,
                rsv=4 if first and compressed else 0,
            )
        )
    return b"".join(out)


def messages_of(events: list[WsEvent]) -> list[str | bytes]:
    return [
        event.text if isinstance(event, TextMessage) else event.data
        for event in events
        if isinstance(event, TextMessage | BinaryMessage)
    ]


# --- what goes on the wire ------------------------------------------------------------


def test_sent_messages_are_compressed_with_rsv1() -> None:
    client, server = compressed_pair()
    text = '{"type":"push_event","repository":"todos"}' * 20
    server.send_text(text)
    wire = server.data_to_send()
    assert wire[0] == 0xC1  # FIN, RSV1, text
    assert len(wire) < len(text) // 4
    assert inflate(wire[2:], 12).decode() == text
    assert client.receive_data(wire) == [TextMessage(text=text)]
    client.send_binary(bytes(1000))
    wire = client.data_to_send()
    assert wire[0] == 0xC2
    assert server.receive_data(wire) == [BinaryMessage(data=bytes(1000))]


def test_control_frames_are_never_compressed() -> None:
    client, server = compressed_pair()
    client.send_ping(b"p" * 100)
    wire = client.data_to_send()
    assert wire[0] == 0x89
    assert server.receive_data(wire) == [PingReceived(payload=b"p" * 100)]
    assert server.data_to_send()[0] == 0x8A  # the pong, uncompressed
    server.close(1000, "bye" * 30)
    assert server.data_to_send()[0] == 0x88


def test_context_takeover_shrinks_repeated_messages() -> None:
    text = '{"type":"ack","eventIds":["0190a000-0000-7000-8000-000000000001"]}'
    sizes = {}
    for reset in (False, True):
        client, server = compressed_pair(PerMessageDeflate(no_context_takeover=reset))
        wires = []
        for _ in range(3):
            server.send_text(text)
            wires.append(server.data_to_send())
        assert client.receive_data(b"".join(wires)) == [TextMessage(text=text)] * 3
        sizes[reset] = [len(wire) for wire in wires]
    assert sizes[False][1] < sizes[False][0] // 3  # the second refers to the first
    assert sizes[True][1] == sizes[True][0]  # each starts afresh


def test_an_uncompressed_message_is_allowed_on_a_compressed_connection() -> None:
    _, server = compressed_pair()
    assert server.receive_data(client_frame(0x1, b"plain")) == [TextMessage(text="plain")]


def test_an_8_bit_window_sends_uncompressed() -> None:
    # zlib cannot compress with a 256-byte window; uncompressed messages are
    # always allowed (RFC 7692 6), and the other direction still compresses.
    client, server = compressed_pair(server=PerMessageDeflate(max_window_bits=8))
    assert server.compression is not None
    assert server.compression.server_max_window_bits == 8
    server.send_text("x" * 300)
    wire = server.data_to_send()
    assert wire[0] == 0x81
    assert client.receive_data(wire) == [TextMessage(text="x" * 300)]
    client.send_text("y" * 300)
    wire = client.data_to_send()
    assert wire[0] == 0xC1
    assert server.receive_data(wire) == [TextMessage(text="y" * 300)]


def test_a_peer_bound_to_8_bits_may_use_9() -> None:
    # zlib before 1.2.9 turned an 8-bit window into 9 bits; accept its output.
    _, server = compressed_pair(client=PerMessageDeflate(max_window_bits=8))
    text = "".join(f"{n:03}" for n in range(200)) * 2
    payload = Compressor(9)(text.encode())
    assert server.receive_data(client_frame(0x1, payload, rsv=4)) == [TextMessage(text=text)]


def test_a_stream_ended_with_bfinal_is_accepted() -> None:
    # RFC 7692 7.2.3.5: a sender may end the DEFLATE stream with BFINAL set.
    client, _ = compressed_pair()
    messages = []
    for text in ("first " * 10, "second " * 10):
        compressor = zlib.compressobj(6, zlib.DEFLATED, -12)
        messages.append(frame(0x1, compressor.compress(text.encode()) + compressor.flush(), rsv=4))
    assert client.receive_data(b"".join(messages)) == [
        TextMessage(text="first " * 10),
        TextMessage(text="second " * 10),
    ]


def test_pings_may_interleave_a_fragmented_compressed_message() -> None:
    _, server = compressed_pair()
    payload = Compressor()(b"hello " * 50)
    data = (
        client_frame(0x1, payload[:10], fin=False, rsv=4)
        + client_frame(0x9, b"ping")
        + client_frame(0x0, payload[10:])
    )
    assert server.receive_data(data) == [
        PingReceived(payload=b"ping"),
        TextMessage(text="hello " * 50),
    ]


# --- violations ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "code", "reason"),
    [
        (
            client_frame(0x1, b"\x00", fin=False) + client_frame(0x0, b"x", rsv=4),
            1002,
            "continuation",
        ),
        (client_frame(0x9, b"x", rsv=4), 1002, "compressed control frame"),
        (client_frame(0x8, b"", rsv=4), 1002, "compressed control frame"),
        (client_frame(0x1, b"x", rsv=2), 1002, "reserved bits"),
        (client_frame(0x1, b"x", rsv=6), 1002, "reserved bits"),
        (client_frame(0x1, b"\xff\xff\xff\xff", rsv=4), 1002, "invalid compressed data"),
        (client_frame(0x1, Compressor()(b"\xc0\xaf"), rsv=4), 1007, "not valid UTF-8"),
        (
            client_frame(0x1, Compressor()(b"ok \xc0"), fin=False, rsv=4),
            1007,
            "not valid UTF-8",
        ),
    ],
)
def test_compressed_violations_fail_the_connection(data: bytes, code: int, reason: str) -> None:
    _, server = compressed_pair()
    [closed] = server.receive_data(data)
    assert isinstance(closed, Closed)
    assert (closed.code, reason in closed.reason) == (code, True)
    assert server.state is WsState.CLOSED


def test_a_compressed_message_without_negotiation_is_a_protocol_error() -> None:
    client, server = open_pair(compression=DEFLATE)  # the server declined
    assert client.compression is server.compression is None
    [closed] = server.receive_data(client_frame(0x1, Compressor()(b"hi"), rsv=4))
    assert closed == Closed(
        code=CloseCode.PROTOCOL_ERROR, reason="reserved bits set but no extension was negotiated"
    )
    [closed] = client.receive_data(frame(0x1, Compressor()(b"hi"), rsv=4))
    assert closed.code == CloseCode.PROTOCOL_ERROR


# --- the inflation cap ----------------------------------------------------------------


def bomb(inflated: int, window_bits: int = 12) -> bytes:
    """A compressed message of ``inflated`` zero bytes, built without holding them."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -window_bits)
    chunk = bytes(1 << 20)
    parts = [compressor.compress(chunk) for _ in range(inflated // len(chunk))]
    parts.append(compressor.flush(zlib.Z_SYNC_FLUSH))
    return b"".join(parts)[:-4]


BOMB = bomb(100 << 20)  # 100 MiB of zeros


def test_the_bomb_is_small() -> None:
    assert 90_000 < len(BOMB) < 110_000


@pytest.mark.parametrize("role", ["server", "client"])
def test_a_bomb_closes_with_1009_in_bounded_memory(role: str) -> None:
    limit = 1 << 20
    client, server = compressed_pair(limit=limit)
    if role == "server":
        receiver, sender, data = server, client, client_frame(0x2, BOMB, rsv=4)
    else:
        receiver, sender, data = client, server, frame(0x2, BOMB, rsv=4)
    tracemalloc.start()
    try:
        [closed] = receiver.receive_data(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert closed == Closed(
        code=CloseCode.MESSAGE_TOO_BIG, reason=f"message inflates past {limit} bytes"
    )
    # zlib's output buffer and the bytes made from it: twice the limit at
    # most, plus the 100 KB of input; never the 100 MiB of the bomb.
    assert peak < 3 * limit
    assert sender.receive_data(receiver.data_to_send()) == [closed]


def test_a_fragmented_bomb_is_stopped_at_the_limit() -> None:
    limit = 1 << 20
    _, server = compressed_pair(limit=limit)
    # About 400 KiB inflated per frame: the limit is crossed on the third.
    pieces = [BOMB[start : start + 400] for start in range(0, len(BOMB), 400)]
    events: list[WsEvent] = []
    tracemalloc.start()
    try:
        for index, piece in enumerate(pieces):
            first = index == 0
            data = client_frame(0x2 if first else 0x0, piece, fin=False, rsv=4 if first else 0)
            events += server.receive_data(data)
            if events:
                break
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert 1 < index < 5
    assert events == [Closed(code=1009, reason=f"message inflates past {limit} bytes")]
    assert peak < 3 * limit


@pytest.mark.parametrize("size", [999, 1000, 1001])
def test_the_cap_is_exact(size: int) -> None:
    _, server = compressed_pair(limit=1000)
    # Repetitive, so it is far under the limit on the wire.
    data = bytes(size)
    events = server.receive_data(client_frame(0x2, Compressor()(data), rsv=4))
    if size <= 1000:
        assert events == [BinaryMessage(data=data)]
    else:
        assert [type(event) for event in events] == [Closed]
        assert events[0].code == 1009  # type: ignore[union-attr]


def test_the_cap_spans_fragments() -> None:
    _, server = compressed_pair(limit=1000)
    payload = Compressor()(bytes(1001))
    data = fragments(0x2, payload, [3, 5, 7], masked=True)
    [closed] = server.receive_data(data)
    assert isinstance(closed, Closed)
    assert closed.code == CloseCode.MESSAGE_TOO_BIG


def test_the_wire_size_is_capped_too() -> None:
    _, server = compressed_pair(limit=100)
    # Stored (level 0): 98 bytes inflated, over 100 on the wire.
    store = zlib.compressobj(0, zlib.DEFLATED, -12)
    payload = (store.compress(bytes(98)) + store.flush(zlib.Z_SYNC_FLUSH))[:-4]
    assert len(payload) > 100
    [closed] = server.receive_data(client_frame(0x2, payload, rsv=4))
    assert closed == Closed(code=1009, reason="message larger than 100 bytes")


# --- properties -----------------------------------------------------------------------

payloads = st.one_of(
    st.text(max_size=300).map(lambda text: (0x1, text.encode())),
    st.binary(max_size=300).map(lambda data: (0x2, data)),
    st.sampled_from([(0x1, b'{"type":"ping"}' * 30), (0x2, bytes(2000))]),
)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(payloads, st.lists(st.integers(min_value=0), max_size=4)), max_size=8),
    st.booleans(),
    st.booleans(),
    st.sampled_from([9, 12, 15]),
)
def test_fragmented_compressed_messages_arrive_whole(
    messages: list[tuple[tuple[int, bytes], list[int]]],
    takeover: bool,
    to_server: bool,
    window_bits: int,
) -> None:
    options = PerMessageDeflate(
        no_context_takeover=not takeover,
        peer_no_context_takeover=not takeover,
        max_window_bits=window_bits,
        peer_max_window_bits=window_bits,
    )
    client, server = compressed_pair(options, options)
    receiver = server if to_server else client
    compressor = Compressor(window_bits, takeover=takeover)
    data = b"".join(
        fragments(opcode, compressor(payload), cuts, masked=to_server)
        for (opcode, payload), cuts in messages
    )
    expected = [payload.decode() if opcode == 1 else payload for (opcode, payload), _ in messages]
    assert messages_of(receiver.receive_data(data)) == expected


@settings(max_examples=150, deadline=None)
@given(
    st.lists(payloads, max_size=8),
    st.booleans(),
    st.booleans(),
    st.lists(st.integers(min_value=0), max_size=10),
)
def test_round_trip_between_our_roles(
    messages: list[tuple[int, bytes]], takeover: bool, to_server: bool, cuts: list[int]
) -> None:
    options = PerMessageDeflate(no_context_takeover=not takeover)
    client, server = compressed_pair(options, options)
    sender, receiver = (client, server) if to_server else (server, client)
    for opcode, payload in messages:
        if opcode == 1:
            sender.send_text(payload.decode())
        else:
            sender.send_binary(payload)
    data = sender.data_to_send()
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    events: list[WsEvent] = []
    for a, b in itertools.pairwise([0, *points, len(data)]):
        if a < b:
            events += receiver.receive_data(data[a:b])
    assert messages_of(events) == [p.decode() if o == 1 else p for o, p in messages]
