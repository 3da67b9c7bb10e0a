"""The life cycle of a WebSocket connection, shared by both roles."""

from __future__ import annotations

import enum

__all__ = ["WsState"]


class WsState(enum.Enum):
    """Where a connection is; the transport should close in the last two."""

    CONNECTING = enum.auto()
    """The opening handshake is in progress (a server may owe an answer)."""
    OPEN = enum.auto()
    """Messages flow both ways."""
    CLOSING = enum.auto()
    """This side sent a close frame and waits for the peer's."""
    CLOSED = enum.auto()
    """The close handshake finished, failed, or the transport ended."""
    REJECTED = enum.auto()
    """The opening handshake ended with an HTTP response, not a WebSocket."""
