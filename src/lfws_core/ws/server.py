"""The server role: route one HTTP/1.1 request, then unmasked frames.

A request head is read with h11 (bounded by ``max_handshake_size``). A
WebSocket upgrade for the configured path that passes every check becomes
an :class:`UpgradeRequest` the caller answers with :meth:`WsServer.accept`
or :meth:`WsServer.reject`; a bad one is answered at once (400, 403, 404,
426, 431) and reported as :class:`Rejected`; a plain HTTP request becomes an
:class:`HttpRequest` the caller answers with
:meth:`WsServer.send_http_response`. Every HTTP response ends the connection.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from dataclasses import dataclass

import h11
from wsproto.utilities import generate_accept_token, normed_header_dict

from ..errors import LocalProtocolError
from ._connection import DEFAULT_MAX_MESSAGE_SIZE, WsConnection
from ._frames import OP_TEXT, encode_frame
from ._handshake import (
    DEFAULT_MAX_HANDSHAKE_SIZE,
    WEBSOCKET_VERSION,
    caller_input,
    decode_headers,
    reason_phrase,
    tokens,
    user_headers,
)
from ._negotiation import DeflateParameters, PerMessageDeflate, server_agreement
from .events import HttpRequest, Rejected, UpgradeRequest, WsEvent
from .state import WsState

__all__ = ["ServerConfig", "WsServer", "encode_server_text_frame"]


@dataclass(frozen=True, kw_only=True, slots=True)
class ServerConfig:
    """What a server accepts; one instance serves every connection."""

    path: str = "/"
    """The only path that accepts WebSocket upgrades (the query is free)."""
    allowed_origins: frozenset[str] | None = None
    """Exact ``Origin`` values accepted; ``None`` accepts any origin."""
    allow_missing_origin: bool = False
    """With ``allowed_origins`` set, whether a request without ``Origin`` passes."""
    max_handshake_size: int = DEFAULT_MAX_HANDSHAKE_SIZE
    """Largest request head in bytes; a larger one is answered with 431."""
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    """Largest reassembled message in bytes; a larger one closes with 1009."""
    accept_binary: bool = False
    """Whether binary messages become :class:`BinaryMessage` events.

    Off by default: the sync protocol is JSON text only, so a binary message
    closes the connection with 1003. The Autobahn echo endpoint turns it on.
    """
    compression: PerMessageDeflate | None = None
    """permessage-deflate (RFC 7692) settings; ``None`` (the default) declines every offer.

    When set, a client's valid offer is accepted and its messages may arrive
    compressed; each is inflated up to ``max_message_size`` (1009 beyond).
    """


class WsServer(WsConnection):
    """A WebSocket server connection, from the first request byte on."""

    __slots__ = ("_agreement", "_config", "_h11", "_key", "_received", "_request")

    _incoming_mask_bit = 0x80

    def __init__(self, config: ServerConfig | None = None) -> None:
        self._config = config or ServerConfig()
        super().__init__(
            max_message_size=self._config.max_message_size,
            accept_binary=self._config.accept_binary,
        )
        # The handshake state goes once the connection is open (accept()):
        # an idle connection then holds only what framing needs.
        self._h11: h11.Connection | None = h11.Connection(
            h11.SERVER, max_incomplete_event_size=self._config.max_handshake_size
        )
        self._received = 0
        self._request: h11.Request | None = None
        self._key: bytes | None = None
        self._agreement: tuple[DeflateParameters, str] | None = None

    def accept(self, headers: Iterable[tuple[str, str]] = ()) -> list[WsEvent]:
        """Answer an :class:`UpgradeRequest` with 101 and open the connection.

        ``headers`` are added to the 101 response; the WebSocket ones are
        written by the server itself. Returns the events of frames the client
        sent right behind its request (usually none).
        """
        key = self._key
        if self._state is not WsState.CONNECTING or key is None:
            raise LocalProtocolError("accept() answers an UpgradeRequest only")
        fields = [
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Accept", generate_accept_token(key).decode()),
        ]
        agreement = self._agreement
        if agreement is not None:
            fields.append(("Sec-WebSocket-Extensions", agreement[1]))
        fields += user_headers(headers)
        with caller_input():
            response = h11.InformationalResponse(
                status_code=101, headers=fields, reason="Switching Protocols"
            )
        http = self._http()
        self._out.append(http.send(response) or b"")
        # A client must wait for the 101 (RFC 6455 4.1), but bytes it sent
        # early are still frames.
        early = http.trailing_data[0]
        self._h11 = self._request = self._key = self._agreement = None
        options = self._config.compression
        self._open(None if agreement is None or options is None else (agreement[0], options))
        return self._receive_frames(early) if early else []

    def reject(self, status: int, reason: str = "") -> None:
        """Refuse the pending request with ``status`` and a plain-text ``reason``."""
        body = (reason or reason_phrase(status)).encode()
        self.send_http_response(status, [("Content-Type", "text/plain; charset=utf-8")], body)

    def send_http_response(
        self, status: int, headers: Iterable[tuple[str, str]] = (), body: bytes = b""
    ) -> None:
        """Answer the pending request (plain or upgrade) with an HTTP response.

        ``Content-Length`` and ``Connection: close`` are added; the
        connection then ends (:attr:`transport_should_close`).
        """
        if self._state is not WsState.CONNECTING or self._request is None:
            raise LocalProtocolError("no request is waiting for a response")
        if not 200 <= status <= 599:
            raise LocalProtocolError(f"{status} is not a final HTTP status")
        self._respond(status, user_headers(headers), body)

    # --- handshake -----------------------------------------------------------

    def _receive_handshake(self, data: bytes) -> list[WsEvent]:
        if not data:
            if self._request is not None and self._key is None:
                # A client may half-close after a plain request: the answer is still owed.
                return []
            return [self._abort("connection closed during the opening handshake")]
        http = self._http()
        http.receive_data(data)
        if self._request is not None:
            return []
        self._received += len(data)
        try:
            event = http.next_event()
        except h11.RemoteProtocolError as error:
            if error.error_status_hint == 431:
                return [self._refuse_oversized_head()]
            return [self._refuse(400, f"invalid HTTP request: {error}")]
        if event is h11.NEED_DATA:
            return []
        # Before the first request, h11 yields nothing else from live input.
        assert isinstance(event, h11.Request)
        self._request = event
        # h11 bounds only a head still incomplete; one that arrived whole in a
        # single large read is measured here.
        head_size = self._received - len(http.trailing_data[0])
        if head_size > self._config.max_handshake_size:
            return [self._refuse_oversized_head()]
        return [self._route(event)]

    def _http(self) -> h11.Connection:
        http = self._h11
        assert http is not None  # released only by accept(), which ends the handshake
        return http

    def _refuse_oversized_head(self) -> Rejected:
        limit = self._config.max_handshake_size
        return self._refuse(431, f"request head larger than {limit} bytes")

    def _route(self, request: h11.Request) -> WsEvent:
        headers = decode_headers(request.headers)
        target = request.target.decode("latin-1")
        fields = normed_header_dict(request.headers)
        if b"websocket" not in tokens(fields.get(b"upgrade")):
            return HttpRequest(
                method=request.method.decode("latin-1"), target=target, headers=headers
            )
        path, _, query = target.partition("?")
        if path != self._config.path:
            return self._refuse(404, f"no WebSocket endpoint at {path}")
        problem = self._check_upgrade(request, fields)
        if problem:
            return self._refuse(*problem)
        self._key = fields[b"sec-websocket-key"]
        options = self._config.compression
        extensions = fields.get(b"sec-websocket-extensions")
        if options is not None and extensions is not None:
            self._agreement = server_agreement(options, extensions.decode("latin-1"))
        return UpgradeRequest(path=path, query=query, headers=headers)

    def _check_upgrade(
        self, request: h11.Request, fields: dict[bytes, bytes]
    ) -> tuple[int, str] | None:
        if request.method != b"GET" or request.http_version != b"1.1":
            return 400, "a WebSocket upgrade is an HTTP/1.1 GET"
        if b"upgrade" not in tokens(fields.get(b"connection")):
            return 400, "missing Connection: Upgrade"
        version = fields.get(b"sec-websocket-version")
        if version is None:
            return 400, "missing Sec-WebSocket-Version"
        if version != WEBSOCKET_VERSION:
            return 426, "unsupported Sec-WebSocket-Version"
        if not _is_valid_key(fields.get(b"sec-websocket-key")):
            return 400, "missing or malformed Sec-WebSocket-Key"
        if not self._origin_allowed(fields.get(b"origin")):
            return 403, "origin not allowed"
        return None

    def _origin_allowed(self, origin: bytes | None) -> bool:
        allowed = self._config.allowed_origins
        if allowed is None:
            return True
        if origin is None:
            return self._config.allow_missing_origin
        return origin.decode("latin-1") in allowed

    def _refuse(self, status: int, explanation: str) -> Rejected:
        fields = [("Content-Type", "text/plain; charset=utf-8")]
        if status == 426:
            fields.append(("Sec-WebSocket-Version", WEBSOCKET_VERSION.decode()))
        body = explanation.encode()
        sent = self._respond(status, fields, body)
        return Rejected(status=status, reason=reason_phrase(status), headers=sent, body=body)

    def _respond(
        self, status: int, fields: list[tuple[str, str]], body: bytes
    ) -> tuple[tuple[str, str], ...]:
        fields = [*fields, ("Content-Length", str(len(body))), ("Connection", "close")]
        with caller_input():
            response = h11.Response(
                status_code=status, headers=fields, reason=reason_phrase(status)
            )
        http = self._http()
        out = [http.send(response) or b""]
        # A response to HEAD declares its length but carries no body.
        if body and (self._request is None or self._request.method != b"HEAD"):
            out.append(http.send(h11.Data(data=body)) or b"")
        out.append(http.send(h11.EndOfMessage()) or b"")
        self._out += out
        self._state = WsState.REJECTED
        return decode_headers(response.headers)


def _is_valid_key(key: bytes | None) -> bool:
    # RFC 6455 4.2.1: the base64 encoding of a 16-byte nonce.
    if key is None:
        return False
    try:
        return len(base64.b64decode(key, validate=True)) == 16
    except binascii.Error:
        return False


def encode_server_text_frame(text: str) -> bytes:
    """Frame ``text`` as a server's (unmasked) text message.

    Server frames carry no mask, so a broadcast framed once can be written
    as is to every connection.
    """
    return encode_frame(OP_TEXT, text.encode())
