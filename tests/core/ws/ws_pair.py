"""Test helpers: a deterministic random source, a joined pair, raw frames."""

from __future__ import annotations

import struct
from collections.abc import Iterable

from lfws_core.ws import (
    Opened,
    ServerConfig,
    UpgradeRequest,
    WsClient,
    WsEvent,
    WsServer,
    WsState,
)

HANDSHAKE_KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 section 1.3
HANDSHAKE_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


class CountingBytes:
    """random_bytes that returns 0, 1, 2, ... (mod 256) and records each call."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self._next = 0

    def __call__(self, size: int) -> bytes:
        self.calls.append(size)
        data = bytes((self._next + i) % 256 for i in range(size))
        self._next += size
        return data


def new_client(**kwargs: object) -> WsClient:
    options: dict[str, object] = {"host": "example.com", "random_bytes": CountingBytes()}
    options.update(kwargs)
    return WsClient(**options)  # type: ignore[arg-type]


def transfer(source: WsClient | WsServer, sink: WsClient | WsServer) -> list[WsEvent]:
    """Deliver everything ``source`` has queued to ``sink``."""
    return sink.receive_data(source.data_to_send())


def open_pair(
    config: ServerConfig | None = None, **client_kwargs: object
) -> tuple[WsClient, WsServer]:
    client = new_client(**client_kwargs)
    server = WsServer(config)
    [request] = transfer(client, server)
    assert isinstance(request, UpgradeRequest)
    server.accept()
    [opened] = transfer(server, client)
    assert isinstance(opened, Opened)
    assert client.state is server.state is WsState.OPEN
    return client, server


def upgrade_request(
    target: str = "/",
    *,
    method: str = "GET",
    version: str = "1.1",
    headers: Iterable[tuple[str, str]] | None = None,
    extra: Iterable[tuple[str, str]] = (),
) -> bytes:
    """A hand-written upgrade request; ``headers`` replaces the standard set."""
    if headers is None:
        headers = [
            ("Host", "example.com"),
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", HANDSHAKE_KEY),
            ("Sec-WebSocket-Version", "13"),
        ]
    lines = [f"{method} {target} HTTP/{version}"]
    lines += [f"{name}: {value}" for name, value in [*headers, *extra]]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bytes | None = None,
    length: int | None = None,
    length_form: int | None = None,
) -> bytes:
    """A raw frame, written independently of the code under test.

    ``length`` overrides the declared length; ``length_form`` forces the
    7-bit (0), 16-bit (126) or 64-bit (127) length encoding.
    """
    declared = len(payload) if length is None else length
    if length_form is None:
        length_form = 0 if declared < 126 else 126 if declared < 65536 else 127
    first = (0x80 if fin else 0) | rsv << 4 | opcode
    mask_bit = 0x80 if mask is not None else 0
    if length_form == 0:
        head = bytes([first, mask_bit | declared])
    elif length_form == 126:
        head = bytes([first, mask_bit | 126]) + struct.pack("!H", declared)
    else:
        head = bytes([first, mask_bit | 127]) + struct.pack("!Q", declared)
    if mask is None:
        return head + payload
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + masked


def client_frame(opcode: int, payload: bytes = b"", **kwargs: object) -> bytes:
    """A frame as a client sends it: masked with a fixed key."""
    return frame(opcode, payload, mask=b"\x01\x02\x03\x04", **kwargs)  # type: ignore[arg-type]


def close_payload(code: int, reason: str = "") -> bytes:
    return struct.pack("!H", code) + reason.encode()
