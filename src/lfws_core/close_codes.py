"""WebSocket close codes lfws uses, and when (RFC 6455 §7.4)."""

from __future__ import annotations

import enum

__all__ = ["CloseCode"]


class CloseCode(enum.IntEnum):
    """The close codes lfws sends; see ``docs/protocol.md`` for each use."""

    NORMAL = 1000
    """``close()`` on either side."""
    GOING_AWAY = 1001
    """The server shuts down; clients reconnect later."""
    PROTOCOL_ERROR = 1002
    """A WebSocket framing violation."""
    UNSUPPORTED_DATA = 1003
    """A binary message: the protocol is JSON text only."""
    NO_STATUS = 1005
    """Reported when a close frame carried no code (never sent)."""
    ABNORMAL = 1006
    """Reported when the transport dropped without a close frame (never sent)."""
    INVALID_PAYLOAD = 1007
    """Text that is not valid UTF-8."""
    POLICY_VIOLATION = 1008
    """Authentication refused or not done in time, or too many messages before it."""
    MESSAGE_TOO_BIG = 1009
    """A message over the size limit (after reassembly or inflation)."""
    INTERNAL_ERROR = 1011
    """The peer stopped answering (heartbeat timeout) or the server failed."""
    TRY_AGAIN_LATER = 1013
    """The server is overloaded or the client fell too far behind."""
