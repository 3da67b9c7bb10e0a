"""The client role: opening handshake with h11, then masked frames.

wsproto's own client draws its nonce and mask keys from ``os.urandom``; this
one takes every random byte from the injected ``random_bytes`` source, so a
seeded source replays a session byte for byte.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable

import h11
from wsproto.utilities import generate_accept_token, normed_header_dict

from ..errors import LocalProtocolError
from ._connection import DEFAULT_MAX_MESSAGE_SIZE, WsConnection
from ._frames import encode_frame
from ._handshake import (
    DEFAULT_MAX_HANDSHAKE_SIZE,
    WEBSOCKET_VERSION,
    caller_input,
    decode_headers,
    tokens,
    user_headers,
)
from ._negotiation import (
    DeflateParameters,
    NegotiationError,
    PerMessageDeflate,
    client_agreement,
    client_offer,
)
from .events import Opened, Rejected, WsEvent
from .state import WsState

__all__ = ["WsClient"]

# Mask keys are drawn 64 at a time: one call to the source per 64 frames.
_MASK_POOL_SIZE = 4 * 64


class WsClient(WsConnection):
    """A WebSocket client connection, from the upgrade request on.

    The request is queued at construction: drain :meth:`data_to_send` once
    the transport is connected. ``host`` is the ``Host`` header (with the
    port when it is not the default), ``target`` the path and query.
    ``random_bytes(n)`` must return ``n`` unpredictable bytes; it supplies
    the handshake nonce and every mask key. With ``accept_binary`` received
    binary messages become :class:`BinaryMessage` events instead of closing
    the connection with 1003. With ``compression`` the client offers
    permessage-deflate (RFC 7692) and fails the connection on an answer that
    does not fit the offer; compressed messages are inflated up to
    ``max_message_size`` (1009 beyond).
    """

    __slots__ = (
        "_body",
        "_expected_accept",
        "_h11",
        "_mask_pool",
        "_mask_pos",
        "_max_handshake_size",
        "_offer",
        "_random_bytes",
        "_received",
        "_response",
    )

    _incoming_mask_bit = 0x00

    def __init__(
        self,
        *,
        host: str,
        random_bytes: Callable[[int], bytes],
        target: str = "/",
        origin: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        max_handshake_size: int = DEFAULT_MAX_HANDSHAKE_SIZE,
        accept_binary: bool = False,
        compression: PerMessageDeflate | None = None,
    ) -> None:
        super().__init__(max_message_size=max_message_size, accept_binary=accept_binary)
        self._random_bytes = random_bytes
        self._mask_pool = b""
        self._mask_pos = 0
        self._max_handshake_size = max_handshake_size
        key = base64.b64encode(self._draw(16))
        self._expected_accept = generate_accept_token(key)
        fields = [
            ("Host", host),
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", key.decode()),
            ("Sec-WebSocket-Version", WEBSOCKET_VERSION.decode()),
        ]
        if origin is not None:
            fields.append(("Origin", origin))
        if compression is not None:
            fields.append(("Sec-WebSocket-Extensions", client_offer(compression)))
        fields += user_headers(headers)
        with caller_input():
            request = h11.Request(method="GET", target=target, headers=fields)
        self._offer = compression
        http = h11.Connection(h11.CLIENT, max_incomplete_event_size=max_handshake_size)
        self._out.append(http.send(request) or b"")
        http.send(h11.EndOfMessage())
        # Released once the connection is open: framing needs none of it.
        self._h11: h11.Connection | None = http
        self._received = 0
        self._response: h11.Response | None = None
        self._body = bytearray()

    def _draw(self, size: int) -> bytes:
        data = self._random_bytes(size)
        if len(data) != size:
            raise LocalProtocolError(f"random_bytes({size}) returned {len(data)} bytes")
        return data

    def _frame(self, opcode: int, payload: bytes) -> bytes:
        pos = self._mask_pos
        if pos == len(self._mask_pool):
            self._mask_pool = self._draw(_MASK_POOL_SIZE)
            pos = 0
        self._mask_pos = pos + 4
        return encode_frame(opcode, payload, self._mask_pool[pos : pos + 4])

    def _receive_handshake(self, data: bytes) -> list[WsEvent]:
        http = self._h11
        assert http is not None  # released only on opening, which ends the handshake
        http.receive_data(data)
        self._received += len(data)
        try:
            while True:
                event = http.next_event()
                if event is h11.NEED_DATA:
                    return []
                if isinstance(event, h11.InformationalResponse | h11.Response):
                    # h11 bounds only a head still incomplete; one that
                    # arrived whole in a single large read is measured here.
                    head_size = self._received - len(http.trailing_data[0])
                    if head_size > self._max_handshake_size:
                        limit = self._max_handshake_size
                        return [self._abort(f"response head larger than {limit} bytes")]
                if isinstance(event, h11.InformationalResponse):
                    if event.status_code == 101:
                        return self._switch(event, http.trailing_data[0])
                    # Other 1xx responses are interim (RFC 9110 15.2): skip them.
                elif isinstance(event, h11.Response):
                    self._response = event
                elif isinstance(event, h11.Data):
                    self._body += event.data
                    if len(self._body) > self._max_handshake_size:
                        return [self._rejected()]
                else:
                    return [self._rejected()]
        except h11.RemoteProtocolError as error:
            if self._response is not None:
                return [self._rejected()]
            return [self._abort(f"invalid HTTP response: {error}")]

    def _switch(self, response: h11.InformationalResponse, early: bytes) -> list[WsEvent]:
        fields = normed_header_dict(response.headers)
        problem = self._check_switch(fields)
        if problem:
            return [self._abort(problem)]
        try:
            agreed = self._agreement(fields.get(b"sec-websocket-extensions"))
        except NegotiationError as error:
            return [self._abort(f"101 response with an invalid extension: {error}")]
        offer = self._offer
        self._h11 = self._offer = None
        self._open(None if agreed is None or offer is None else (agreed, offer))
        events: list[WsEvent] = [Opened(headers=decode_headers(response.headers))]
        # The server may send frames right behind its 101 response.
        events += self._receive_frames(early)
        return events

    def _check_switch(self, fields: dict[bytes, bytes]) -> str:
        if b"websocket" not in tokens(fields.get(b"upgrade")):
            return "101 response without Upgrade: websocket"
        if b"upgrade" not in tokens(fields.get(b"connection")):
            return "101 response without Connection: Upgrade"
        if fields.get(b"sec-websocket-accept") != self._expected_accept:
            return "101 response with a wrong Sec-WebSocket-Accept"
        if b"sec-websocket-protocol" in fields:
            return "101 response selects a subprotocol that was not offered"
        return ""

    def _agreement(self, extensions: bytes | None) -> DeflateParameters | None:
        if extensions is None:
            return None
        if self._offer is None:
            raise NegotiationError("it selects an extension that was not offered")
        return client_agreement(self._offer, extensions.decode("latin-1"))

    def _rejected(self) -> Rejected:
        response = self._response
        assert response is not None  # h11 yields a body only after its head
        self._state = WsState.REJECTED
        return Rejected(
            status=response.status_code,
            reason=response.reason.decode("latin-1"),
            headers=decode_headers(response.headers),
            body=bytes(self._body[: self._max_handshake_size]),
        )
