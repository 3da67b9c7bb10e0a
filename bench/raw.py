"""The ceiling: the same pushes and acks as newline-delimited JSON on asyncio Protocols.

No WebSocket, no sync layer: one JSON object per line, the server stores the
event in a dict and answers an ``ack`` line, and every read is answered with
one write. Nothing written in Python on asyncio does this much faster.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

from bench.codec import dumps, loads
from bench.fixtures import ack_message, push_message
from bench.progress import Progress


class _Lines(asyncio.Protocol):
    """Splits the byte stream into lines and hands each to :meth:`line_received`."""

    transport: asyncio.Transport

    def __init__(self) -> None:
        self._rest = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        *lines, self._rest = (self._rest + data).split(b"\n")
        self.lines_received(lines)

    def lines_received(self, lines: list[bytes]) -> None:
        raise NotImplementedError


class RawServer(_Lines):
    """Stores pushed events in memory and acknowledges them, one write per read."""

    def __init__(self, store: dict[str, dict[str, Any]]) -> None:
        super().__init__()
        self._store = store

    def lines_received(self, lines: list[bytes]) -> None:
        out = []
        for line in lines:
            message = loads(line)
            if message["type"] == "push_event":
                event = message["event"]
                event_id = event["_event_id"]
                if event_id not in self._store:
                    self._store[event_id] = {**event, "serverSequence": len(self._store) + 1}
                out.append(dumps(ack_message(message["repository"], event_id)))
                out.append(b"\n")
        self.transport.write(b"".join(out))


class RawClient(_Lines):
    """Pushes events as lines and counts the acks."""

    def __init__(self) -> None:
        super().__init__()
        self.acked = Progress()

    def lines_received(self, lines: list[bytes]) -> None:
        acked = 0
        for line in lines:
            if loads(line)["type"] == "ack":
                acked += 1
        self.acked.add(acked)

    def push(self, events: list[dict[str, Any]]) -> None:
        """Send ``events`` (one write)."""
        self.transport.write(b"".join([dumps(push_message(event)) + b"\n" for event in events]))


@asynccontextmanager
async def raw_pair() -> AsyncIterator[RawClient]:
    """A raw server on 127.0.0.1 and a client connected to it."""
    loop = asyncio.get_running_loop()
    store: dict[str, dict[str, Any]] = {}
    server = await loop.create_server(lambda: RawServer(store), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    _, client = await loop.create_connection(RawClient, "127.0.0.1", port)
    try:
        yield client
    finally:
        client.transport.close()
        server.close()
        await server.wait_closed()
