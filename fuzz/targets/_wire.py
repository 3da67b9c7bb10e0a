"""Strict readers for what lfws itself writes: whatever the peer sent, our bytes stay valid.

lfws never fragments, never sets reserved bits and sends only text, ping,
pong and close frames; clients mask every frame, servers none. Every text
must decode as a message of the sender's role. Anything else is a finding.
"""

from __future__ import annotations

import h11

from lfws_core.codec import decode_message
from lfws_core.messages import ClientMessage, Message, ServerMessage
from lfws_core.ws._frames import apply_mask, is_valid_close_code

__all__ = ["FrameReader", "RequestReader"]


class FrameReader:
    """Reads the frames one side writes and fails on the first flaw."""

    def __init__(self, *, masked: bool) -> None:
        self._masked = masked
        self._buffer = b""
        self.closed = False
        self.messages: list[Message] = []

    def feed(self, data: bytes) -> None:
        self._buffer += data
        while self._frame():
            pass

    def end(self) -> None:
        """The transport closed: a frame cut in half was never written whole."""
        assert not self._buffer, f"transport closed inside a frame: {self._buffer[:40]!r}"

    def _frame(self) -> bool:
        data = self._buffer
        if len(data) < 2:
            return False
        first, second = data[0], data[1]
        assert first & 0x80, "lfws never fragments"
        assert not first & 0x70, "reserved bits set"
        assert bool(second & 0x80) == self._masked, "mask bit wrong for the role"
        length = second & 0x7F
        pos = 2
        if length >= 126:
            extra = 2 if length == 126 else 8
            if len(data) < pos + extra:
                return False
            length = int.from_bytes(data[pos : pos + extra], "big")
            assert length >= (126 if extra == 2 else 1 << 16), "length not in its shortest form"
            pos += extra
        key = b""
        if self._masked:
            if len(data) < pos + 4:
                return False
            key = data[pos : pos + 4]
            pos += 4
        if len(data) < pos + length:
            return False
        payload = data[pos : pos + length]
        if key:
            payload = apply_mask(payload, key)
        self._buffer = data[pos + length :]
        self._handle(first & 0x0F, payload)
        return True

    def _handle(self, opcode: int, payload: bytes) -> None:
        assert not self.closed, f"frame {opcode:#x} written after the close frame"
        if opcode == 0x1:
            message = decode_message(payload)
            expected = ClientMessage if self._masked else ServerMessage
            assert isinstance(message, expected), f"{message!r} is not for this role"
            self.messages.append(message)
        elif opcode in (0x9, 0xA):
            assert len(payload) <= 125, "control frame too long"
        else:
            assert opcode == 0x8, f"lfws wrote opcode {opcode:#x}"
            assert len(payload) <= 125, "close frame too long"
            if payload:
                assert len(payload) >= 2, "close frame with a 1-byte payload"
                code = int.from_bytes(payload[:2], "big")
                assert is_valid_close_code(code), f"close code {code} may not be sent"
                payload[2:].decode()
            self.closed = True


class RequestReader:
    """Reads a client's opening handshake request, then its frames."""

    def __init__(self) -> None:
        self._h11 = h11.Connection(h11.SERVER)
        self.request: h11.Request | None = None
        self.frames = FrameReader(masked=True)

    def feed(self, data: bytes) -> None:
        if self.request is not None:
            self.frames.feed(data)
            return
        self._h11.receive_data(data)
        event = self._h11.next_event()
        if event is h11.NEED_DATA:
            return
        assert isinstance(event, h11.Request), f"the client wrote {event!r}"
        assert event.method == b"GET"
        headers = {name: value for name, value in event.headers}
        assert headers[b"upgrade"] == b"websocket"
        assert headers[b"sec-websocket-version"] == b"13"
        self.request = event
        self.frames.feed(self._h11.trailing_data[0])
