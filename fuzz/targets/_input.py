"""Turning fuzz bytes into decisions, the same way for atheris, hypothesis and seeds.

A target takes plain ``bytes`` so every engine can drive it. Two shapes:

* a byte *stream* (what a socket delivers), cut into reads by :func:`chunks`,
  whose cuts are drawn from a PRNG seeded with the input itself, so an input
  always replays the same way;
* a *script* of records, each ``op (1 byte) | length (2 bytes, big-endian) |
  payload``; a truncated last record keeps what is there. :func:`record`
  writes one (the seed generator uses it).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator

from lfws_core.testing import SplitMix64

__all__ = ["Payload", "chunks", "record", "records"]


def chunks(data: bytes) -> list[bytes]:
    """Cut ``data`` into non-empty reads: whole, byte by byte, or at random cuts."""
    if not data:
        return []
    rng = SplitMix64(zlib.crc32(data))
    style = rng.randrange(4)
    if style == 0:
        return [data]
    if style == 1 and len(data) <= 4096:
        return [data[i : i + 1] for i in range(len(data))]
    cuts: list[bytes] = []
    pos = 0
    while pos < len(data):
        size = 1 + rng.randrange(1 << rng.randrange(12))
        cuts.append(data[pos : pos + size])
        pos += size
    return cuts


def record(op: str, payload: bytes = b"") -> bytes:
    """Write one script record (``payload`` at most 65535 bytes)."""
    return op.encode("ascii") + len(payload).to_bytes(2, "big") + payload


def records(data: bytes) -> Iterator[tuple[int, Payload]]:
    """Read the script records of ``data``: ``(op byte, payload)``."""
    pos = 0
    while pos < len(data):
        op = data[pos]
        size = int.from_bytes(data[pos + 1 : pos + 3], "big")
        payload = data[pos + 3 : pos + 3 + size]
        pos += 3 + size
        yield op, Payload(payload)


class Payload:
    """A record's payload, read as raw bytes, text, or small numbers.

    Reading past the end gives zeros: a short payload is still a valid choice.
    """

    __slots__ = ("_pos", "data")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self._pos = 0

    def byte(self) -> int:
        pos = self._pos
        self._pos += 1
        return self.data[pos] if pos < len(self.data) else 0

    def below(self, n: int) -> int:
        """A number in ``[0, n)`` from the next byte."""
        return self.byte() % n

    def flag(self) -> bool:
        return bool(self.byte() & 1)

    def rest(self) -> bytes:
        data = self.data[self._pos :]
        self._pos = len(self.data)
        return data

    def text(self) -> str:
        """The rest as text; invalid UTF-8 becomes lone surrogates (a str can hold them)."""
        return self.rest().decode("utf-8", "surrogateescape")
