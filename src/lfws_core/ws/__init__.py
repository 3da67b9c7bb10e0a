"""WebSocket (RFC 6455) for lfws, sans I/O: bytes in; bytes, messages and closes out.

:class:`WsClient` and :class:`WsServer` run the opening handshake over h11,
then exchange text messages, pings and the close handshake, optionally
compressed with permessage-deflate (RFC 7692, off unless configured). Feed
``receive_data(bytes)``, read the returned events, drain
:meth:`~WsClient.data_to_send`. Nothing here reads a clock or draws
randomness of its own: the client's nonce and mask keys come from an
injected ``random_bytes`` source. Received binary messages close the
connection with 1003 unless the connection opts in
(``ServerConfig(accept_binary=True)``, ``WsClient(accept_binary=True)``).
"""

from __future__ import annotations

from ._connection import WsConnection
from ._negotiation import DeflateParameters, PerMessageDeflate
from .client import WsClient
from .events import (
    BinaryMessage,
    Closed,
    Headers,
    HttpRequest,
    Opened,
    PingReceived,
    PongReceived,
    Rejected,
    TextMessage,
    UpgradeRequest,
    WsEvent,
)
from .server import ServerConfig, WsServer, encode_server_text_frame
from .state import WsState

__all__ = [
    "BinaryMessage",
    "Closed",
    "DeflateParameters",
    "Headers",
    "HttpRequest",
    "Opened",
    "PerMessageDeflate",
    "PingReceived",
    "PongReceived",
    "Rejected",
    "ServerConfig",
    "TextMessage",
    "UpgradeRequest",
    "WsClient",
    "WsConnection",
    "WsEvent",
    "WsServer",
    "encode_server_text_frame",
    "WsState",
]
