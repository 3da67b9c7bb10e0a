"""A bare WebSocket client that costs next to nothing, to measure servers with.

The same client talks to the lfws server and to the peer, so what differs
between two runs is the server. It sends frames masked with a zero key
(legal, and the payload needs no XOR) and only counts the text frames it
receives, looking for a marker in each instead of decoding the JSON.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, cast

from bench.codec import dumps
from bench.fixtures import TOKEN
from bench.progress import Progress

_HANDSHAKE = (
    b"GET /sync HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def text_frame(payload: bytes) -> bytes:
    """A masked client text frame (mask key 0: the payload goes as is)."""
    size = len(payload)
    if size < 126:
        header = bytes((0x81, 0x80 | size))
    elif size < 1 << 16:
        header = bytes((0x81, 0x80 | 126)) + size.to_bytes(2, "big")
    else:
        header = bytes((0x81, 0x80 | 127)) + size.to_bytes(8, "big")
    return header + b"\0\0\0\0" + payload


def message_frames(messages: Sequence[dict[str, Any]]) -> bytes:
    """The frames of ``messages`` as one buffer, encoded ahead of any timing."""
    return b"".join(text_frame(dumps(message)) for message in messages)


OPEN_TIMEOUT = 30.0  # a server that never answers fails the run instead of hanging it

AUTH_FRAME = text_frame(dumps({"type": "auth", "token": TOKEN}))


class CountingClient(asyncio.Protocol):
    """Opens the WebSocket, authenticates, then counts the text frames holding ``marker``."""

    transport: asyncio.Transport

    def __init__(self, marker: bytes) -> None:
        self.marker = marker
        self.authenticated = asyncio.get_running_loop().create_future()
        self.received = Progress()
        self._buffer = bytearray()
        self._open = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(_HANDSHAKE)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.authenticated.done():
            self.authenticated.set_exception(ConnectionError("closed before auth_success"))

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        if not self._open:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            if not buffer.startswith(b"HTTP/1.1 101"):
                raise ConnectionError(bytes(buffer[:end]).decode())
            del buffer[: end + 4]
            self._open = True
            self.transport.write(AUTH_FRAME)
        self._frames(buffer)

    def _frames(self, buffer: bytearray) -> None:
        marker = self.marker
        start = 0
        found = 0
        end = len(buffer)
        while end - start >= 2:
            size = buffer[start + 1] & 0x7F
            head = 2
            if size == 126:
                head, size = 4, int.from_bytes(buffer[start + 2 : start + 4], "big")
            elif size == 127:
                head, size = 10, int.from_bytes(buffer[start + 2 : start + 10], "big")
            if end - start < head + size:
                break
            if buffer[start] & 0x0F == 1:  # a text frame (server frames are not masked)
                payload = bytes(buffer[start + head : start + head + size])
                if not self.authenticated.done():
                    if b"auth_success" in payload:
                        self.authenticated.set_result(None)
                elif marker in payload:
                    found += 1
            start += head + size
        del buffer[:start]
        if found:
            self.received.add(found)

    def send(self, frames: bytes) -> None:
        self.transport.write(frames)


async def open_clients(port: int, count: int, marker: bytes) -> list[CountingClient]:
    """Open ``count`` authenticated clients, a few at a time (a backlog is finite)."""
    loop = asyncio.get_running_loop()
    clients: list[CountingClient] = []
    for start in range(0, count, 100):
        batch = [
            loop.create_connection(lambda: CountingClient(marker), "127.0.0.1", port)
            for _ in range(min(100, count - start))
        ]
        for _, client in await asyncio.gather(*batch):
            clients.append(client)
        async with asyncio.timeout(OPEN_TIMEOUT):
            await asyncio.gather(*(client.authenticated for client in clients[start:]))
    return clients


def close_clients(clients: Sequence[CountingClient]) -> None:
    for client in clients:
        client.transport.abort()
