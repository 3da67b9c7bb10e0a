"""The events a WebSocket connection reports from :meth:`receive_data`.

Both roles share them. A client sees :class:`Opened` or :class:`Rejected`,
then messages and finally :class:`Closed`; a server sees
:class:`UpgradeRequest` or :class:`HttpRequest` first and answers it. Header
names are lower case and values are decoded as Latin-1, as HTTP/1.1 allows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

__all__ = [
    "BinaryMessage",
    "Closed",
    "Headers",
    "HttpRequest",
    "Opened",
    "PingReceived",
    "PongReceived",
    "Rejected",
    "TextMessage",
    "UpgradeRequest",
    "WsEvent",
]

Headers: TypeAlias = tuple[tuple[str, str], ...]
"""HTTP header fields in arrival order: ``(lower-case name, value)`` pairs."""


@dataclass(frozen=True, kw_only=True, slots=True)
class UpgradeRequest:
    """Server: a valid WebSocket upgrade arrived on the configured path.

    Answer with :meth:`WsServer.accept` or :meth:`WsServer.reject`. ``path``
    and ``query`` split the request target at its first ``?``; ``query`` is
    left percent-encoded.
    """

    path: str
    query: str
    headers: Headers


@dataclass(frozen=True, kw_only=True, slots=True)
class HttpRequest:
    """Server: a plain HTTP request (no WebSocket upgrade), e.g. ``GET /healthz``.

    Answer with :meth:`WsServer.send_http_response` (or ``reject``); the
    connection ends after the response. A request body is not read.
    """

    method: str
    target: str
    headers: Headers


@dataclass(frozen=True, kw_only=True, slots=True)
class Opened:
    """Client: the server accepted the upgrade; ``headers`` are its 101 response's."""

    headers: Headers


@dataclass(frozen=True, kw_only=True, slots=True)
class Rejected:
    """The opening handshake ended with an HTTP response instead of a WebSocket.

    On a client: the server's response (``body`` is capped at the handshake
    size limit). On a server: the response it sent on its own to an invalid
    request (bad HTTP, head too large, wrong path, bad upgrade, refused
    origin), with the explanation in ``body``. ``reason`` is the HTTP
    reason phrase.
    """

    status: int
    reason: str
    headers: Headers
    body: bytes


@dataclass(frozen=True, kw_only=True, slots=True)
class TextMessage:
    """A complete text message, reassembled from its fragments."""

    text: str


@dataclass(frozen=True, kw_only=True, slots=True)
class BinaryMessage:
    """A complete binary message, reassembled from its fragments.

    Only a connection that opted in (``ServerConfig.accept_binary``) reports
    these; otherwise a binary message closes the connection with 1003.
    """

    data: bytes


@dataclass(frozen=True, kw_only=True, slots=True)
class PingReceived:
    """The peer sent a ping; the pong was queued already (unless closing)."""

    payload: bytes


@dataclass(frozen=True, kw_only=True, slots=True)
class PongReceived:
    """The peer sent a pong (solicited or not)."""

    payload: bytes


@dataclass(frozen=True, kw_only=True, slots=True)
class Closed:
    """The connection is over; flush :meth:`data_to_send` and close the transport.

    ``code`` is the peer's close code when a close frame arrived (1005 if it
    had none), the code this side sent when it failed the connection because
    of the peer (1002, 1003, 1007, 1009), or 1006 when the transport ended
    without a close handshake or the opening handshake failed.
    """

    code: int
    reason: str


WsEvent: TypeAlias = (
    UpgradeRequest
    | HttpRequest
    | Opened
    | Rejected
    | TextMessage
    | BinaryMessage
    | PingReceived
    | PongReceived
    | Closed
)
"""Any event :meth:`receive_data` returns."""
