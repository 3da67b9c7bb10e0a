"""permessage-deflate over loopback, through every runtime's adapter."""

from __future__ import annotations

import os
import zlib

import anyio
import anyio.to_thread
import pytest

from lfws_adapters.event_log import InMemoryEventLog
from lfws_adapters.hub import ServerOptions
from lfws_core.close_codes import CloseCode
from lfws_core.ws import PerMessageDeflate, WsClient

from .helpers import REPOSITORY, EventLogs, RawClient, client_config, eventually, live
from .hosts import RecordingHost
from .runtimes import Runtime

pytestmark = pytest.mark.anyio

COMPRESSING = ServerOptions(compression=True)


class DeflatingClient(RawClient):
    """A raw client that offers permessage-deflate."""

    def __init__(self, port: int) -> None:
        super().__init__(port)
        self.ws = WsClient(
            host=f"127.0.0.1:{port}",
            random_bytes=os.urandom,
            target="/sync",
            compression=PerMessageDeflate(),
        )


async def test_clients_sync_compressed(runtime: Runtime, logs: EventLogs) -> None:
    alice, bob = RecordingHost("alice"), RecordingHost("bob")
    async with runtime.module.serve(event_log=logs.open(), port=0, options=COMPRESSING) as server:
        config = client_config(server.url, compression=True)
        async with (
            runtime.module.connect(config, alice) as a,
            runtime.module.connect(config, bob) as b,
        ):
            await live(a, b)
            # Large enough to span many reads and frames of the transport.
            big = alice.edit(a, REPOSITORY, "big", title="lorem ipsum " * 40_000)
            small = alice.edit(a, REPOSITORY, "milk", title="buy milk")
            await eventually(alice.all_synced)
            await eventually(lambda: bob.knows([big, small]))
            assert bob.replica.documents(REPOSITORY) == alice.replica.documents(REPOSITORY)
        # A late client catches up, compressed, on the events stored so far.
        carol = RecordingHost("carol")
        async with runtime.module.connect(config, carol) as c:
            await live(c)
            await eventually(lambda: carol.knows([big, small]))


async def test_the_wire_is_compressed_and_a_bomb_closes_with_1009(runtime: Runtime) -> None:
    options = ServerOptions(compression=True, max_message_size=1 << 20)
    log = InMemoryEventLog()
    async with runtime.module.serve(event_log=log, port=0, options=options) as server:

        def exchange() -> tuple[bool, int | None]:
            with DeflatingClient(server.port) as raw:
                raw.authenticate()
                compressed = raw.ws.compression is not None
                compressor = zlib.compressobj(9, zlib.DEFLATED, -12)
                bomb = b"".join(compressor.compress(bytes(1 << 20)) for _ in range(100))
                bomb += compressor.flush(zlib.Z_SYNC_FLUSH)
                # The bomb goes out through a WsClient without compression:
                # the frame is written by hand, RSV1 set, payload masked.
                mask = os.urandom(4)
                payload = bomb[:-4]
                masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
                head = bytes([0xC1, 0x80 | 127]) + len(payload).to_bytes(8, "big")
                raw.sock.sendall(head + mask + masked)
                raw.read_to_end()
                return compressed, raw.close_code

        compressed, code = await anyio.to_thread.run_sync(exchange)
        assert compressed
        assert code == CloseCode.MESSAGE_TOO_BIG
        # The server is still up and syncing.
        host = RecordingHost("after")
        async with runtime.module.connect(client_config(server.url, compression=True), host) as c:
            await live(c)
            host.edit(c, REPOSITORY, "x", title="still here")
            await eventually(host.all_synced)
