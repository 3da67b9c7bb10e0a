"""Properties: any input is survivable, and chunking never changes the outcome."""

from __future__ import annotations

import itertools
from collections.abc import Callable

from hypothesis import given
from hypothesis import strategies as st
from ws_pair import client_frame, frame, new_client, open_pair, upgrade_request

from lfws_core.ws import (
    Closed,
    Opened,
    PerMessageDeflate,
    ServerConfig,
    TextMessage,
    UpgradeRequest,
    WsClient,
    WsEvent,
    WsServer,
    WsState,
)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def feed(peer: WsClient | WsServer, chunks: list[bytes]) -> list[WsEvent]:
    events: list[WsEvent] = []
    for chunk in chunks:
        if chunk:
            events += peer.receive_data(chunk)
    return events


def check_stream(peer: WsClient | WsServer, events: list[WsEvent]) -> None:
    """At most one Closed, always last, and the state agrees with it."""
    closes = [i for i, event in enumerate(events) if isinstance(event, Closed)]
    assert closes in ([], [len(events) - 1])
    if closes:
        assert peer.state is WsState.CLOSED
        assert peer.transport_should_close
    if peer.state in (WsState.CLOSED, WsState.REJECTED):
        assert peer.receive_data(b"\x81\x00") == []


DEFLATE = PerMessageDeflate()

Factory = Callable[[], WsClient | WsServer]
FACTORIES: list[Factory] = [
    lambda: open_pair()[0],
    lambda: open_pair()[1],
    lambda: open_pair(ServerConfig(accept_binary=True))[1],
    # permessage-deflate agreed: RSV1 frames (rsv=4 below) reach the inflater.
    lambda: open_pair(ServerConfig(compression=DEFLATE), compression=DEFLATE)[0],
    lambda: open_pair(ServerConfig(compression=DEFLATE), compression=DEFLATE)[1],
    new_client,
    WsServer,
]

prefixes = st.sampled_from(
    [
        b"",
        upgrade_request(),  # meaningful to a fresh server
        client_frame(0x1, b"hi", fin=False),
        frame(0x1, b"hi", fin=False),
        b"HTTP/1.1 101 Switching Protocols\r\n",
    ]
)


# Frames with arbitrary fields reach deeper than uniform noise does.
raw_frames = st.builds(
    frame,
    st.integers(min_value=0, max_value=15),
    st.binary(max_size=130),
    fin=st.booleans(),
    rsv=st.sampled_from([0, 0, 0, 1, 4]),
    mask=st.none() | st.binary(min_size=4, max_size=4),
)
noise = st.binary(max_size=400) | st.lists(raw_frames, max_size=8).map(b"".join)


@given(
    st.sampled_from(FACTORIES),
    prefixes,
    noise,
    st.lists(st.integers(min_value=0), max_size=12),
    st.booleans(),
)
def test_arbitrary_input_never_raises(
    factory: Factory, prefix: bytes, noise: bytes, cuts: list[int], end: bool
) -> None:
    peer = factory()
    events = feed(peer, split(prefix + noise, cuts))
    if end:
        events += peer.receive_data(b"")
        assert peer.state in (WsState.CLOSED, WsState.REJECTED)
    check_stream(peer, events)
    peer.data_to_send()


texts = st.lists(st.text(max_size=200), min_size=1, max_size=6)


@given(texts, st.lists(st.integers(min_value=0), max_size=20), st.booleans())
def test_chunking_never_changes_what_arrives(
    messages: list[str], cuts: list[int], to_server: bool
) -> None:
    client, server = open_pair()
    sender, receiver = (client, server) if to_server else (server, client)
    for text in messages:
        sender.send_text(text)
        sender.send_ping(text.encode()[:125])
    sender.close(1000, "done")
    data = sender.data_to_send()
    whole = open_pair()[1 if to_server else 0].receive_data(data)
    assert feed(receiver, split(data, cuts)) == whole
    assert [e.text for e in whole if isinstance(e, TextMessage)] == messages
    assert whole[-1] == Closed(code=1000, reason="done")


@given(
    st.text(max_size=300),
    st.lists(st.integers(min_value=0), max_size=6),
    st.lists(st.integers(min_value=0), max_size=10),
)
def test_any_fragmentation_reassembles(
    text: str, fragment_cuts: list[int], cuts: list[int]
) -> None:
    _, server = open_pair()
    pieces = split(text.encode(), fragment_cuts)
    data = b"".join(
        client_frame(0x1 if i == 0 else 0x0, piece, fin=i == len(pieces) - 1)
        for i, piece in enumerate(pieces)
    )
    assert feed(server, split(data, cuts)) == [TextMessage(text=text)]


@given(st.lists(st.integers(min_value=0), max_size=10))
def test_handshake_survives_any_chunking(cuts: list[int]) -> None:
    client = new_client(target="/?q=1")
    server = WsServer()
    [request] = feed(server, split(client.data_to_send(), cuts))
    assert isinstance(request, UpgradeRequest)
    server.accept()
    server.send_text("welcome")
    opened, welcome = feed(client, split(server.data_to_send(), cuts))
    assert isinstance(opened, Opened)
    assert welcome == TextMessage(text="welcome")
