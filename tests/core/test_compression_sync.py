"""The sync protocol over permessage-deflate, on the fake clock: opt-in on both ends."""

from __future__ import annotations

import zlib
from datetime import UTC, datetime, timedelta

import pytest

from lfws_core.actions import ConnectionState
from lfws_core.client import ClientConfig, PushResult
from lfws_core.errors import LocalProtocolError
from lfws_core.events import Operation, SyncEvent
from lfws_core.testing import ClientServerPair
from lfws_core.ws import PerMessageDeflate
from lfws_core.ws import ServerConfig as WsServerConfig

URL = "ws://lfws.test/"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
COMPRESSING = WsServerConfig(compression=PerMessageDeflate())


def event(n: int) -> SyncEvent:
    return SyncEvent(
        event_id=f"e{n}",
        operation=Operation.INSERT,
        data_id=f"d{n}",
        created_at=T0 + timedelta(seconds=n),
        data={"title": "a fairly repetitive title " * 4, "n": n},
    )


def body_frames(data: bytes) -> list[tuple[int, bytes]]:
    """(first byte, payload) of every unmasked server frame after the 101 head."""
    data = data.split(b"\r\n\r\n", 1)[1]
    frames = []
    while data:
        length = data[1] & 0x7F
        start = 2
        if length == 126:
            length, start = int.from_bytes(data[2:4], "big"), 4
        elif length == 127:
            length, start = int.from_bytes(data[2:10], "big"), 10
        frames.append((data[0], data[start : start + length]))
        data = data[start + length :]
    return frames


def test_sync_and_broadcast_run_compressed_when_both_opt_in() -> None:
    pair = ClientServerPair(ws_config=COMPRESSING)
    config = ClientConfig(url=URL, compression=True)
    alice, bob = pair.add_client(config), pair.add_client(config)
    pair.run()
    assert alice.session.state is bob.session.state is ConnectionState.LIVE
    for n in range(3):
        assert alice.push("todos", event(n)) is PushResult.SENT
    pair.run()
    assert bob.replica.cursors == {"todos": 3}
    assert [e.event_id for e in pair.log.events("todos")] == ["e0", "e1", "e2"]
    assert alice.link is not None and bob.link is not None
    assert b"permessage-deflate" in alice.link.client_bytes[0]
    # Every server frame to bob is compressed, the broadcasts included (each
    # connection has its own compression context, so none is framed once).
    frames = body_frames(b"".join(bob.link.server_bytes))
    assert frames and all(first == 0xC1 for first, _ in frames)
    inflater = zlib.decompressobj(-12)
    texts = [inflater.decompress(payload + b"\x00\x00\xff\xff") for _, payload in frames]
    assert sum(b'"type":"events"' in text for text in texts) == 3
    assert sum(map(len, (payload for _, payload in frames))) < sum(map(len, texts)) // 2


@pytest.mark.parametrize(
    ("server_compresses", "client_offers"), [(False, True), (True, False), (False, False)]
)
def test_without_both_ends_opting_in_nothing_is_compressed(
    server_compresses: bool, client_offers: bool
) -> None:
    pair = ClientServerPair(ws_config=COMPRESSING if server_compresses else None)
    alice = pair.add_client(ClientConfig(url=URL, compression=client_offers))
    bob = pair.add_client(ClientConfig(url=URL, compression=client_offers))
    pair.run()
    alice.push("todos", event(0))
    pair.run()
    assert bob.replica.cursors == {"todos": 1}
    assert bob.link is not None
    frames = body_frames(b"".join(bob.link.server_bytes))
    assert all(first == 0x81 for first, _ in frames)


def test_compression_must_be_a_bool() -> None:
    with pytest.raises(LocalProtocolError, match="compression must be a bool"):
        ClientConfig(url=URL, compression="yes")  # type: ignore[arg-type]
