"""What both roles do once the opening handshake is over.

Frames are parsed here (RFC 6455 section 5), messages reassembled,
inflated when permessage-deflate was agreed (RFC 7692) and size-checked,
pings answered and the close handshake run. Subclasses add the opening
handshake (with the extension negotiation) and, for the client, masking.
"""

from __future__ import annotations

import abc
import codecs
from collections.abc import Callable
from typing import ClassVar

from .._builders import slot_builder
from ..close_codes import CloseCode
from ..errors import LocalProtocolError
from ._deflate import Deflater, Inflater, message_codecs
from ._frames import (
    MAX_CLOSE_REASON,
    MAX_CONTROL_PAYLOAD,
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    RSV1,
    FrameError,
    apply_mask,
    decode_close_payload,
    encode_close_payload,
    encode_frame,
    is_valid_close_code,
)
from ._negotiation import DeflateParameters, PerMessageDeflate
from .events import BinaryMessage, Closed, PingReceived, PongReceived, TextMessage, WsEvent
from .state import WsState

_OPEN = WsState.OPEN
_CLOSING = WsState.CLOSING
_CLOSED = WsState.CLOSED

_Utf8Decoder = codecs.getincrementaldecoder("utf-8")

DEFAULT_MAX_MESSAGE_SIZE = 1 << 20


# A final, uncompressed text frame: the first byte of nearly every message.
_WHOLE_TEXT = 0x80 | OP_TEXT

_text_message: Callable[[str], TextMessage] = slot_builder(TextMessage, "text")


def _protocol_error(reason: str) -> FrameError:
    return FrameError(CloseCode.PROTOCOL_ERROR, reason)


def _invalid_utf8() -> FrameError:
    return FrameError(CloseCode.INVALID_PAYLOAD, "text message is not valid UTF-8")


class WsConnection(abc.ABC):
    """What :class:`WsClient` and :class:`WsServer` share once the handshake is over.

    Not instantiated directly; useful as the type of "either role".
    """

    # Slots: a server holds one of these per idle connection.
    __slots__ = (
        "_accept_binary",
        "_binary_fragments",
        "_chunks",
        "_chunks_size",
        "_compression",
        "_continuing",
        "_decoder",
        "_deflater",
        "_fragments",
        "_inflater",
        "_inflating",
        "_max_message_size",
        "_message_size",
        "_needed",
        "_out",
        "_state",
    )

    # The mask bit every incoming frame must carry: set on frames a server
    # receives, clear on frames a client receives.
    _incoming_mask_bit: ClassVar[int]

    def __init__(self, *, max_message_size: int, accept_binary: bool = False) -> None:
        if max_message_size < 1:
            raise LocalProtocolError("max_message_size must be positive")
        self._state = WsState.CONNECTING
        self._max_message_size = max_message_size
        self._accept_binary = accept_binary
        self._out: list[bytes] = []
        # Input that does not yet hold the next frame, kept as chunks so a
        # large frame arriving in pieces is joined once, not once per piece.
        self._chunks: list[bytes] = []
        self._chunks_size = 0
        self._needed = 0
        # The opcode of the fragmented message in progress: OP_TEXT,
        # OP_BINARY, or OP_CONTINUATION (0) between messages.
        self._continuing = OP_CONTINUATION
        self._decoder: codecs.IncrementalDecoder = _Utf8Decoder()
        self._fragments: list[str] = []
        self._binary_fragments: list[bytes] = []
        # Bytes of the message in progress as they came off the wire.
        self._message_size = 0
        self._compression: DeflateParameters | None = None
        self._deflater: Deflater | None = None
        self._inflater: Inflater | None = None
        self._inflating = False  # whether the fragmented message in progress is compressed

    @property
    def state(self) -> WsState:
        """Where the connection is in its life cycle."""
        return self._state

    @property
    def compression(self) -> DeflateParameters | None:
        """The permessage-deflate parameters agreed in the handshake, if any."""
        return self._compression

    @property
    def transport_should_close(self) -> bool:
        """Whether the adapter should flush :meth:`data_to_send`, then close the transport."""
        return self._state is _CLOSED or self._state is WsState.REJECTED

    def data_to_send(self) -> bytes:
        """Return (and forget) the bytes queued for the peer, in order."""
        out = self._out
        if not out:
            return b""
        data = b"".join(out)
        out.clear()
        return data

    def receive_data(self, data: bytes) -> list[WsEvent]:
        """Feed bytes from the transport; ``b""`` means it reached end of input.

        Never raises for bad input: violations become a close frame and a
        :class:`Closed` event. Input after the connection ended is ignored.
        """
        state = self._state
        if state is _OPEN or state is _CLOSING:
            if data:
                return self._receive_frames(data)
            self._state = _CLOSED
            return [Closed(code=CloseCode.ABNORMAL, reason="connection lost without a close frame")]
        if state is WsState.CONNECTING:
            return self._receive_handshake(data)
        return []

    def send_text(self, text: str) -> None:
        """Queue ``text`` as one text message; only while the connection is open."""
        if self._state is not _OPEN:
            raise LocalProtocolError(f"cannot send a message in state {self._state.name}")
        try:
            payload = text.encode()
        except UnicodeEncodeError:
            raise LocalProtocolError("text is not encodable as UTF-8") from None
        if self._deflater is None:  # _queue_message's first branch, a call less per message
            self._out.append(self._frame(OP_TEXT, payload))
        else:
            self._queue_message(OP_TEXT, payload)

    def send_binary(self, data: bytes) -> None:
        """Queue ``data`` as one binary message; only while the connection is open.

        Sending is always allowed; only receiving binary is opt-in.
        """
        if self._state is not _OPEN:
            raise LocalProtocolError(f"cannot send a message in state {self._state.name}")
        self._queue_message(OP_BINARY, bytes(data))

    def send_ping(self, payload: bytes = b"") -> None:
        """Queue a ping frame (at most 125 bytes); the peer answers with a pong."""
        if self._state is not _OPEN:
            raise LocalProtocolError(f"cannot send a ping in state {self._state.name}")
        if len(payload) > MAX_CONTROL_PAYLOAD:
            raise LocalProtocolError("a ping payload is at most 125 bytes")
        self._out.append(self._frame(OP_PING, bytes(payload)))

    def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        """Start the close handshake; :class:`Closed` follows when the peer answers."""
        if self._state is not _OPEN:
            raise LocalProtocolError(f"cannot close in state {self._state.name}")
        if not is_valid_close_code(code):
            raise LocalProtocolError(f"{code} may not be sent in a close frame")
        try:
            encoded = encode_close_payload(code, reason)
        except UnicodeEncodeError:
            raise LocalProtocolError("reason is not encodable as UTF-8") from None
        if len(encoded) - 2 > MAX_CLOSE_REASON:
            raise LocalProtocolError("a close reason is at most 123 bytes of UTF-8")
        self._out.append(self._frame(OP_CLOSE, encoded))
        self._state = _CLOSING

    # --- for the roles -------------------------------------------------------

    @abc.abstractmethod
    def _receive_handshake(self, data: bytes) -> list[WsEvent]:
        raise NotImplementedError

    def _frame(self, opcode: int, payload: bytes) -> bytes:
        return encode_frame(opcode, payload)

    def _queue_message(self, opcode: int, payload: bytes) -> None:
        deflater = self._deflater
        if deflater is None:
            self._out.append(self._frame(opcode, payload))
        else:
            self._out.append(self._frame(opcode | RSV1, deflater.compress(payload)))

    def _open(self, compression: tuple[DeflateParameters, PerMessageDeflate] | None = None) -> None:
        """Switch from the handshake to frames, compressing as agreed."""
        self._state = _OPEN
        if compression is not None:
            agreed, options = compression
            self._compression = agreed
            self._deflater, self._inflater = message_codecs(
                agreed, options, server=bool(self._incoming_mask_bit), limit=self._max_message_size
            )

    def _abort(self, reason: str) -> Closed:
        """End a connection whose opening handshake failed."""
        self._state = _CLOSED
        return Closed(code=CloseCode.ABNORMAL, reason=reason)

    # --- frames --------------------------------------------------------------

    def _receive_frames(self, data: bytes) -> list[WsEvent]:
        if self._chunks:
            self._chunks.append(data)
            self._chunks_size += len(data)
            if self._chunks_size < self._needed:
                return []
            data = b"".join(self._chunks)
            self._chunks.clear()
            self._chunks_size = 0
        events: list[WsEvent] = []
        end = len(data)
        pos = 0
        needed = 2
        mask_bit = self._incoming_mask_bit
        try:
            while end - pos >= 2:
                first = data[pos]
                second = data[pos + 1]
                length = second & 0x7F
                if (
                    first == _WHOLE_TEXT
                    and second & 0x80 == mask_bit
                    and length <= 126
                    and not self._continuing
                ):
                    # The usual frame: a whole, uncompressed text message
                    # under 64 KiB, masked as it must be, with no message in
                    # progress (so none of its size to add). Of the general
                    # path's checks only the size limit and UTF-8 remain;
                    # tests/core/ws/test_ws_fast_path.py holds them equal.
                    header_end = pos + 2
                    if length == 126:
                        if end - pos < 4:
                            needed = 4
                            break
                        length = data[pos + 2] << 8 | data[pos + 3]
                        header_end = pos + 4
                    if length > self._max_message_size:
                        raise FrameError(
                            CloseCode.MESSAGE_TOO_BIG,
                            f"message larger than {self._max_message_size} bytes",
                        )
                    if mask_bit:
                        header_end += 4
                    frame_end = header_end + length
                    if frame_end > end:
                        needed = frame_end - pos
                        break
                    payload = data[header_end:frame_end]
                    if mask_bit:
                        payload = apply_mask(payload, data[header_end - 4 : header_end])
                    pos = frame_end
                    try:
                        events.append(_text_message(payload.decode()))
                    except UnicodeDecodeError:
                        raise _invalid_utf8() from None
                    continue
                opcode = first & 0x0F
                fin = first & 0x80
                self._check_header(first, second)
                header_size = 2 if second & 0x80 == 0 else 6
                if length >= 126:
                    extra = 2 if length == 126 else 8
                    header_size += extra
                    if end - pos < 2 + extra:
                        needed = 2 + extra
                        break
                    length = int.from_bytes(data[pos + 2 : pos + 2 + extra], "big")
                    if length >> 63:
                        raise _protocol_error("frame length has its most significant bit set")
                # A compressed message is bounded twice: here on the wire,
                # and once inflated by the inflater.
                message_size = self._message_size + length
                if opcode < OP_CLOSE and message_size > self._max_message_size:
                    raise FrameError(
                        CloseCode.MESSAGE_TOO_BIG,
                        f"message larger than {self._max_message_size} bytes",
                    )
                frame_end = pos + header_size + length
                if frame_end > end:
                    needed = header_size + length
                    break
                payload_start = pos + header_size
                payload = data[payload_start:frame_end]
                if second & 0x80:
                    payload = apply_mask(payload, data[payload_start - 4 : payload_start])
                pos = frame_end
                if opcode < OP_CLOSE:
                    self._message_size = 0 if fin else message_size
                    if first & RSV1 or (self._inflating and not opcode):
                        payload = self._inflate(opcode, fin, payload)
                    # A continuation (opcode 0) belongs to the message in progress.
                    if (opcode or self._continuing) == OP_TEXT:
                        self._receive_text(opcode, fin, payload, events)
                    else:
                        self._receive_binary(opcode, fin, payload, events)
                else:
                    self._receive_control(opcode, payload, events)
                    if self._state is _CLOSED:
                        return events
        except FrameError as error:
            self._fail(error, events)
            return events
        if pos < end:
            rest = data[pos:]
            self._chunks.append(rest)
            self._chunks_size = len(rest)
            self._needed = needed
        return events

    def _check_header(self, first: int, second: int) -> None:
        opcode = first & 0x0F
        if first & 0x70:
            self._check_reserved_bits(first & 0x70, opcode)
        if (second & 0x80) != self._incoming_mask_bit:
            raise _protocol_error(
                "client frames must be masked"
                if self._incoming_mask_bit
                else "server frames must not be masked"
            )
        if opcode >= OP_CLOSE:
            if opcode > OP_PONG:
                raise _protocol_error(f"unknown opcode {opcode:#x}")
            if not first & 0x80:
                raise _protocol_error("fragmented control frame")
            if second & 0x7F > MAX_CONTROL_PAYLOAD:
                raise _protocol_error("control frame payload over 125 bytes")
        elif opcode == OP_CONTINUATION:
            if not self._continuing:
                raise _protocol_error("continuation frame without a message to continue")
        elif self._continuing:
            raise _protocol_error("new message before the previous one ended")
        elif opcode == OP_BINARY:
            if not self._accept_binary:
                raise FrameError(CloseCode.UNSUPPORTED_DATA, "binary messages are not supported")
        elif opcode != OP_TEXT:
            raise _protocol_error(f"unknown opcode {opcode:#x}")

    def _check_reserved_bits(self, bits: int, opcode: int) -> None:
        if bits != RSV1 or self._inflater is None:
            raise _protocol_error("reserved bits set but no extension was negotiated")
        if opcode >= OP_CLOSE:
            raise _protocol_error("compressed control frame")
        if opcode == OP_CONTINUATION:
            raise _protocol_error("compression bit set on a continuation frame")

    def _inflate(self, opcode: int, fin: int, payload: bytes) -> bytes:
        inflater = self._inflater
        assert inflater is not None  # _check_reserved_bits let RSV1 through
        if opcode:
            self._inflating = not fin
        return inflater.inflate(payload, fin)

    def _receive_text(self, opcode: int, fin: int, payload: bytes, events: list[WsEvent]) -> None:
        try:
            if opcode == OP_TEXT:
                if fin:
                    events.append(_text_message(payload.decode()))
                    return
                self._decoder.reset()
                self._continuing = OP_TEXT
            self._fragments.append(self._decoder.decode(payload, bool(fin)))
        except UnicodeDecodeError:
            raise _invalid_utf8() from None
        if fin:
            events.append(_text_message("".join(self._fragments)))
            self._fragments = []
            self._message_ended()

    def _receive_binary(self, opcode: int, fin: int, payload: bytes, events: list[WsEvent]) -> None:
        if opcode == OP_BINARY:
            if fin:
                events.append(BinaryMessage(data=payload))
                return
            self._continuing = OP_BINARY
        self._binary_fragments.append(payload)
        if fin:
            events.append(BinaryMessage(data=b"".join(self._binary_fragments)))
            self._binary_fragments = []
            self._message_ended()

    def _message_ended(self) -> None:
        self._continuing = OP_CONTINUATION
        self._inflating = False

    def _receive_control(self, opcode: int, payload: bytes, events: list[WsEvent]) -> None:
        if opcode == OP_PING:
            # Once our close frame is out, nothing may follow it (RFC 6455 5.5.1).
            if self._state is _OPEN:
                self._out.append(self._frame(OP_PONG, payload))
            events.append(PingReceived(payload=payload))
        elif opcode == OP_PONG:
            events.append(PongReceived(payload=payload))
        else:
            code, reason = decode_close_payload(payload)
            if self._state is _OPEN:
                self._out.append(self._frame(OP_CLOSE, encode_close_payload(code, "")))
            self._state = _CLOSED
            events.append(Closed(code=code, reason=reason))

    def _fail(self, error: FrameError, events: list[WsEvent]) -> None:
        if self._state is _OPEN:
            self._out.append(self._frame(OP_CLOSE, encode_close_payload(error.code, error.reason)))
        self._state = _CLOSED
        events.append(Closed(code=error.code, reason=error.reason))
