"""The exception hierarchy of lfws.

Two kinds of failure are kept apart, as in h11 and wsproto:

* :class:`LocalProtocolError` — the *caller* misused an API (a push before
  ``start``, a verdict for a request that was never made). Raised at once.
* :class:`ProtocolError` — the *peer* sent something invalid. Decoders raise a
  subclass of it; the session state machines never let it escape
  ``receive_data``/``receive_text``: they turn it into an error message or a
  close with a precise reason.
"""

from __future__ import annotations

__all__ = [
    "InvalidMessage",
    "LfwsError",
    "LocalProtocolError",
    "ProtocolError",
]


class LfwsError(Exception):
    """Base class of every exception raised by lfws."""


class LocalProtocolError(LfwsError):
    """The caller used an API in a way the protocol state does not allow."""


class ProtocolError(LfwsError):
    """The peer violated the protocol.

    ``reason`` is a short, human-readable explanation suitable for an ``error``
    message or a close reason.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class InvalidMessage(ProtocolError):
    """A text message could not be decoded into a protocol message.

    Raised by :func:`lfws_core.codec.decode_message` for every kind of bad
    input: not UTF-8, not JSON, not an object, NaN/Infinity, lone surrogates,
    nesting deeper than the limit, unknown ``type``, missing fields or fields
    of the wrong type. It is the only exception the decoder raises.
    """
