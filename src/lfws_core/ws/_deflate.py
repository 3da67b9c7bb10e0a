"""Compressing and inflating message payloads (RFC 7692 section 7.2).

zlib is pure computation, so this stays sans-I/O. The inflater never
produces more than the message size limit: each frame is inflated with
``max_length`` set just above what the message may still grow by, so a
small frame that would inflate to gigabytes (a "zip bomb") costs at most
the limit in memory before it is refused with 1009.
"""

from __future__ import annotations

import zlib

from ..close_codes import CloseCode
from ._frames import FrameError
from ._negotiation import MIN_WINDOW_BITS, DeflateParameters, PerMessageDeflate

# RFC 7692 7.2.1: every compressed message ends in an empty stored block
# whose last four bytes the sender removes and the receiver puts back.
_TAIL = b"\x00\x00\xff\xff"


class Deflater:
    """Compresses the messages one side sends."""

    __slots__ = ("_level", "_memory_level", "_reset", "_window_bits", "_zlib")

    def __init__(
        self, *, window_bits: int, no_context_takeover: bool, level: int, memory_level: int
    ) -> None:
        self._window_bits = window_bits
        self._reset = no_context_takeover
        self._level = level
        self._memory_level = memory_level
        # Made on the first message: an idle connection holds no zlib state.
        self._zlib: zlib._Compress | None = None

    def compress(self, data: bytes) -> bytes:
        """The compressed payload of one message, without the final ``00 00 ff ff``."""
        compressor = self._zlib
        if compressor is None:
            compressor = zlib.compressobj(
                self._level, zlib.DEFLATED, -self._window_bits, self._memory_level
            )
        payload = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
        self._zlib = None if self._reset else compressor
        return payload[:-4]


class Inflater:
    """Inflates the compressed messages one side receives, within a size limit."""

    __slots__ = ("_limit", "_reset", "_size", "_window_bits", "_zlib")

    def __init__(self, *, window_bits: int, no_context_takeover: bool, limit: int) -> None:
        self._window_bits = window_bits
        self._reset = no_context_takeover
        self._limit = limit
        self._size = 0  # bytes inflated so far in the message in progress
        self._zlib: zlib._Decompress | None = None

    def inflate(self, payload: bytes, fin: int) -> bytes:
        """Inflate one frame's payload; ``fin`` marks the message's last frame.

        Raises :class:`FrameError` with 1009 once the message would exceed
        the limit, and with 1002 on data that is not a valid DEFLATE stream.
        """
        decompressor = self._zlib
        if decompressor is None:
            decompressor = self._zlib = zlib.decompressobj(-self._window_bits)
        if fin:
            payload += _TAIL
        room = self._limit - self._size
        try:
            # One byte more than the room: getting it proves the message too big,
            # and zlib stops there, keeping the rest of the input unread.
            data = decompressor.decompress(payload, room + 1)
        except zlib.error:
            raise FrameError(CloseCode.PROTOCOL_ERROR, "invalid compressed data") from None
        if len(data) > room:
            raise FrameError(
                CloseCode.MESSAGE_TOO_BIG, f"message inflates past {self._limit} bytes"
            )
        self._size += len(data)
        if fin:
            self._size = 0
            # A peer may end the stream with a BFINAL block (RFC 7692
            # 7.2.3.5); zlib then reads no more, so the next message starts anew.
            if self._reset or decompressor.eof:
                self._zlib = None
        return data


def message_codecs(
    agreed: DeflateParameters, options: PerMessageDeflate, *, server: bool, limit: int
) -> tuple[Deflater | None, Inflater]:
    """The compressor (``None``: send uncompressed) and inflater of one side.

    ``limit`` bounds every inflated message. zlib cannot compress with an
    8-bit window, so a side bound to one sends uncompressed messages, which
    RFC 7692 (section 6) allows at any time.
    """
    if server:
        own_bits, own_reset = agreed.server_max_window_bits, agreed.server_no_context_takeover
        peer_bits, peer_reset = agreed.client_max_window_bits, agreed.client_no_context_takeover
    else:
        own_bits, own_reset = agreed.client_max_window_bits, agreed.client_no_context_takeover
        peer_bits, peer_reset = agreed.server_max_window_bits, agreed.server_no_context_takeover
    deflater = None
    if own_bits > MIN_WINDOW_BITS:
        deflater = Deflater(
            window_bits=own_bits,
            no_context_takeover=own_reset,
            level=options.level,
            memory_level=options.memory_level,
        )
    # Peers built on zlib before 1.2.9 compress "8" with a 9-bit window; a
    # larger window than the peer's always inflates correctly.
    inflate_bits = max(peer_bits, MIN_WINDOW_BITS + 1)
    inflater = Inflater(window_bits=inflate_bits, no_context_takeover=peer_reset, limit=limit)
    return deflater, inflater
