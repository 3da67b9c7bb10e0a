"""RFC 6455 framing primitives: opcodes, masking, frame and close encoding.

Kept free of connection state so a fast path can reuse them as they are.
"""

from __future__ import annotations

import struct

from ..close_codes import CloseCode

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

# The first reserved bit: set on the first frame of a compressed message
# (RFC 7692 6). encode_frame takes it or'ed into the opcode.
RSV1 = 0x40

MAX_CONTROL_PAYLOAD = 125
# A close payload spends two of its 125 bytes on the code.
MAX_CLOSE_REASON = MAX_CONTROL_PAYLOAD - 2

_HEAD_16 = struct.Struct("!BBH")
_HEAD_64 = struct.Struct("!BBQ")


class FrameError(Exception):
    """The peer broke a framing rule; ``code`` is the close code to answer with."""

    def __init__(self, code: CloseCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


# Above this size, four bytes.translate passes (one per key byte) beat the
# big-integer XOR, whose int <-> bytes conversions dominate on long payloads.
_TRANSLATE_THRESHOLD = 16 * 1024
_XOR_TABLES = [bytes(value ^ key for value in range(256)) for key in range(256)]
_from_bytes = int.from_bytes  # looked up once: masking runs on every frame


def apply_mask(data: bytes, key: bytes) -> bytes:
    # Masking is its own inverse, so this also unmasks. Both branches run in
    # C loops; a per-byte Python loop would be orders of magnitude slower.
    size = len(data)
    if size < _TRANSLATE_THRESHOLD:
        # Big-endian (the default) spares passing the byte order each time.
        stream = (key * (size // 4 + 1))[:size]
        return (_from_bytes(data) ^ _from_bytes(stream)).to_bytes(size)
    out = bytearray(data)
    for lane in range(4):
        out[lane::4] = data[lane::4].translate(_XOR_TABLES[key[lane]])
    return bytes(out)


def encode_frame(opcode: int, payload: bytes, mask_key: bytes | None = None) -> bytes:
    """One final frame; masked with ``mask_key`` when given (client to server).

    ``opcode`` may carry :data:`RSV1`, for a compressed message.
    """
    size = len(payload)
    first = 0x80 | opcode
    mask_bit = 0x00 if mask_key is None else 0x80
    if size < 126:
        head = bytes((first, mask_bit | size))
    elif size < 0x10000:
        head = _HEAD_16.pack(first, mask_bit | 126, size)
    else:
        head = _HEAD_64.pack(first, mask_bit | 127, size)
    if mask_key is None:
        return head + payload
    return head + mask_key + apply_mask(payload, mask_key)


def is_valid_close_code(code: int) -> bool:
    # RFC 6455 7.4 plus the IANA registry: 1004-1006 and 1015 never go on the
    # wire, 1016-2999 are unassigned, 3000-4999 belong to libraries and apps.
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


def encode_close_payload(code: int, reason: str) -> bytes:
    if code == CloseCode.NO_STATUS:
        return b""
    return code.to_bytes(2, "big") + reason.encode()


def decode_close_payload(payload: bytes) -> tuple[int, str]:
    if not payload:
        return CloseCode.NO_STATUS, ""
    if len(payload) == 1:
        raise FrameError(CloseCode.PROTOCOL_ERROR, "close frame with a 1-byte payload")
    code = int.from_bytes(payload[:2], "big")
    if not is_valid_close_code(code):
        raise FrameError(CloseCode.PROTOCOL_ERROR, f"invalid close code {code}")
    try:
        reason = payload[2:].decode()
    except UnicodeDecodeError:
        raise FrameError(CloseCode.INVALID_PAYLOAD, "close reason is not valid UTF-8") from None
    return code, reason
