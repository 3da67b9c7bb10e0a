"""The fast path for whole text frames agrees with the general frame parser.

``WsConnection._receive_frames`` takes a final, uncompressed text frame under
64 KiB in one go. With ``_WHOLE_TEXT`` set to a value no first byte has,
every frame goes the general way: both ways must report the same events,
answer with the same bytes and end in the same state, whatever the input
and however the transport cuts it.
"""

from __future__ import annotations

from collections.abc import Callable
from unittest.mock import patch

from hypothesis import given, settings
from hypothesis import strategies as st
from test_ws_properties import split
from ws_pair import client_frame, frame, open_pair

from lfws_core.close_codes import CloseCode
from lfws_core.ws import (
    Closed,
    PerMessageDeflate,
    ServerConfig,
    TextMessage,
    WsClient,
    WsConnection,
    WsEvent,
    WsServer,
    WsState,
    _connection,
)

DEFLATE = PerMessageDeflate()
SMALL = 100  # a message size limit that whole frames cross with either length form

Factory = Callable[[], WsClient | WsServer]
# Each peer, and whether the frames it receives are masked (server) or not.
PEERS: list[tuple[Factory, bool]] = [
    (lambda: open_pair()[0], False),
    (lambda: open_pair()[1], True),
    (lambda: open_pair(ServerConfig(max_message_size=SMALL))[1], True),
    (lambda: open_pair(max_message_size=SMALL)[0], False),
    (lambda: open_pair(ServerConfig(compression=DEFLATE), compression=DEFLATE)[1], True),
]

# Sizes about the limits: SMALL, the 7-bit length form (125) and its end.
edge_sizes = st.sampled_from([0, 1, SMALL - 1, SMALL, SMALL + 1, 125, 126, 127, 300])
payloads = st.one_of(
    edge_sizes.map(lambda size: b"x" * size),
    edge_sizes.map(lambda size: b"x" * size),
    st.binary(max_size=300),
    st.text(max_size=150).map(str.encode),
)
raw_frames = st.builds(
    frame,
    st.integers(min_value=0, max_value=15),
    st.binary(max_size=130),
    fin=st.booleans(),
    rsv=st.sampled_from([0, 0, 0, 4]),
    mask=st.none() | st.binary(min_size=4, max_size=4),
)


@st.composite
def streams(draw: st.DrawFn, masked: bool) -> bytes:
    """Mostly whole text frames, masked as the peer expects (sometimes not), among any frames.

    Whole text frames come valid UTF-8 or not, in both short length forms
    (126 also for short payloads, which RFC 6455 forbids but the general
    path accepts).
    """
    frames: list[bytes] = []
    for _ in range(draw(st.integers(min_value=0, max_value=6))):
        if draw(st.integers(min_value=0, max_value=3)) == 0:
            frames.append(draw(raw_frames))
            continue
        right = draw(st.integers(min_value=0, max_value=9)) > 0
        key = draw(st.binary(min_size=4, max_size=4)) if masked == right else None
        form = draw(st.sampled_from([None, None, 126]))
        frames.append(frame(0x1, draw(payloads), mask=key, length_form=form))
    return b"".join(frames)


def run(peer: WsClient | WsServer, chunks: list[bytes]) -> tuple[list[WsEvent], bytes, WsState]:
    events: list[WsEvent] = []
    for chunk in chunks:
        events += peer.receive_data(chunk)
    return events, peer.data_to_send(), peer.state


def both_ways(
    factory: Factory, chunks: list[bytes]
) -> tuple[tuple[list[WsEvent], bytes, WsState], tuple[list[WsEvent], bytes, WsState]]:
    fast = run(factory(), chunks)
    with patch.object(_connection, "_WHOLE_TEXT", -1):
        general = run(factory(), chunks)
    return fast, general


@settings(max_examples=300)  # cheap examples; the edge cases are many
@given(st.data(), st.sampled_from(PEERS), st.lists(st.integers(min_value=0), max_size=8))
def test_fast_path_agrees_with_the_general_path(
    data: st.DataObject, peer: tuple[Factory, bool], cuts: list[int]
) -> None:
    factory, masked = peer
    fast, general = both_ways(factory, split(data.draw(streams(masked)), cuts))
    assert fast == general


def test_general_path_is_really_taken_when_disabled() -> None:
    # The comparison above is only worth something if the patch bites.
    _, server = open_pair()
    check = WsConnection._check_header
    with (
        patch.object(_connection, "_WHOLE_TEXT", -1),
        patch.object(WsConnection, "_check_header", autospec=True, side_effect=check) as checked,
    ):
        assert server.receive_data(client_frame(0x1, b"hi")) == [TextMessage(text="hi")]
    assert checked.called
    assert server.receive_data(client_frame(0x1, b"hi")) == [TextMessage(text="hi")]


def test_a_16_bit_length_cut_in_its_middle() -> None:
    _, server = open_pair()
    data = client_frame(0x1, b"x" * 200)
    assert server.receive_data(data[:3]) == []  # the extended length is incomplete
    assert server.receive_data(data[3:10]) == []  # the payload is incomplete
    assert server.receive_data(data[10:]) == [TextMessage(text="x" * 200)]


def test_whole_frames_over_the_limit_fail_before_they_are_complete() -> None:
    for length_form in (0, 126):
        _, server = open_pair(ServerConfig(max_message_size=SMALL))
        data = client_frame(0x1, b"x" * (SMALL + 1), length_form=length_form)
        [closed] = server.receive_data(data[:8])
        assert closed == Closed(
            code=CloseCode.MESSAGE_TOO_BIG, reason="message larger than 100 bytes"
        )


def test_whole_frames_of_invalid_utf8_fail() -> None:
    client = open_pair()[0]
    [closed] = client.receive_data(frame(0x1, b"ok \xff"))
    assert closed == Closed(
        code=CloseCode.INVALID_PAYLOAD, reason="text message is not valid UTF-8"
    )
    assert client.transport_should_close
