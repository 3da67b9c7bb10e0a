"""Negotiating permessage-deflate (RFC 7692 section 7.1) in the opening handshake.

The client offers one configuration; the server accepts the first valid
``permessage-deflate`` offer it can honour and declines malformed ones
(unknown or repeated parameters, bad values), as RFC 7692 section 5
requires, falling back to no compression. The client fails the connection
on any answer that does not fit its offer.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import LocalProtocolError

__all__ = ["DeflateParameters", "PerMessageDeflate"]

EXTENSION_NAME = "permessage-deflate"
MAX_WINDOW_BITS = 15
MIN_WINDOW_BITS = 8

# RFC 7692 7.1.2: a decimal integer from 8 to 15, without a leading zero.
_WINDOW_BITS = {str(bits): bits for bits in range(MIN_WINDOW_BITS, MAX_WINDOW_BITS + 1)}
_FLAGS = ("server_no_context_takeover", "client_no_context_takeover")
_WINDOWS = ("server_max_window_bits", "client_max_window_bits")

# RFC 7230 3.2.6: the characters of a token.
_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")

_Params = dict[str, str | None]


class NegotiationError(Exception):
    """An extension header that breaks the syntax or the rules of RFC 7692."""


@dataclass(frozen=True, kw_only=True, slots=True)
class PerMessageDeflate:
    """What one side asks for and accepts in permessage-deflate (RFC 7692).

    Fields are seen from this side: ``max_window_bits`` and
    ``no_context_takeover`` bound its own compressor, the ``peer_`` ones are
    asked of the other side and bound the memory of this side's
    decompressor. The defaults keep a server's per-connection cost low (a
    4 KiB window and ``memory_level`` 5 hold about 40 KB of compressor
    state, against 260 KB at zlib's defaults) while keeping the context
    between messages, where JSON sync traffic gains most.
    """

    max_window_bits: int = 12
    """The LZ77 window (2**bits bytes) of this side's compressor, 8 to 15.

    With 8, which zlib cannot produce, this side sends uncompressed messages.
    """
    peer_max_window_bits: int = 12
    """The window asked of the peer's compressor, 8 to 15.

    A client can only ask; a server's answer binds a client that offered
    ``client_max_window_bits``.
    """
    no_context_takeover: bool = False
    """Whether this side's compressor starts afresh for every message."""
    peer_no_context_takeover: bool = False
    """Whether the peer is asked to start afresh for every message."""
    level: int = 6
    """The zlib compression level, 0 (store) to 9 (smallest)."""
    memory_level: int = 5
    """The zlib ``memLevel``, 1 to 9: the compressor's hash table size."""

    def __post_init__(self) -> None:
        for name in ("max_window_bits", "peer_max_window_bits"):
            value = getattr(self, name)
            if not MIN_WINDOW_BITS <= value <= MAX_WINDOW_BITS:
                raise LocalProtocolError(f"{name} must be from 8 to 15, not {value!r}")
        if not 0 <= self.level <= 9:
            raise LocalProtocolError(f"level must be from 0 to 9, not {self.level!r}")
        if not 1 <= self.memory_level <= 9:
            raise LocalProtocolError(f"memory_level must be from 1 to 9, not {self.memory_level!r}")


@dataclass(frozen=True, kw_only=True, slots=True)
class DeflateParameters:
    """The permessage-deflate parameters both sides agreed on in the handshake."""

    server_no_context_takeover: bool
    """The server's compressor starts afresh for every message."""
    client_no_context_takeover: bool
    """The client's compressor starts afresh for every message."""
    server_max_window_bits: int
    """The largest window the server's compressor uses."""
    client_max_window_bits: int
    """The largest window the client's compressor uses."""


def split_extensions(value: str) -> list[str]:
    """The elements of a ``Sec-WebSocket-Extensions`` value, empty ones left out.

    RFC 7230 section 7 tolerates empty list elements.
    """
    return [element for element in value.split(",") if element.strip()]


def parse_element(element: str) -> tuple[str, _Params]:
    """One extension (RFC 6455 9.1): its lower-cased name and parameters.

    A quoted value is unquoted. Raises :class:`NegotiationError` on broken
    syntax or a repeated parameter.
    """
    name, *params = (part.strip() for part in element.split(";"))
    parsed: _Params = {}
    for param in params:
        key, has_value, raw = (part.strip() for part in param.partition("="))
        key = _token(key).lower()
        if key in parsed:
            raise NegotiationError(f"repeated parameter {key}")
        parsed[key] = _param_value(raw) if has_value else None
    return _token(name).lower(), parsed


def _token(text: str) -> str:
    if not text or not _TCHAR.issuperset(text):
        raise NegotiationError(f"{text!r} is not a token")
    return text


def _param_value(raw: str) -> str:
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        # RFC 6455 9.1: a quoted value must still be a token once unquoted.
        raw = raw[1:-1].replace("\\", "")
    return _token(raw)


def _window_bits(params: _Params, name: str) -> int:
    bits = _WINDOW_BITS.get(params[name] or "")
    if bits is None:
        raise NegotiationError(f"invalid {name}: {params[name]!r}")
    return bits


def _check_flags(params: _Params) -> None:
    for name, value in params.items():
        if name not in _FLAGS and name not in _WINDOWS:
            raise NegotiationError(f"unknown parameter {name}")
        if name in _FLAGS and value is not None:
            raise NegotiationError(f"{name} takes no value")


# --- client ------------------------------------------------------------------


def client_offer(options: PerMessageDeflate) -> str:
    """The ``Sec-WebSocket-Extensions`` value a client sends."""
    parts = [EXTENSION_NAME]
    if options.peer_no_context_takeover:
        parts.append("server_no_context_takeover")
    if options.no_context_takeover:
        parts.append("client_no_context_takeover")
    if options.peer_max_window_bits < MAX_WINDOW_BITS:
        parts.append(f"server_max_window_bits={options.peer_max_window_bits}")
    # Always offered: it lets the server bound this side's window too.
    if options.max_window_bits < MAX_WINDOW_BITS:
        parts.append(f"client_max_window_bits={options.max_window_bits}")
    else:
        parts.append("client_max_window_bits")
    return "; ".join(parts)


def client_agreement(options: PerMessageDeflate, value: str) -> DeflateParameters:
    """Check the server's answer to :func:`client_offer` (RFC 7692 7.1).

    Raises :class:`NegotiationError` when the client must fail the connection.
    """
    elements = split_extensions(value)
    name, params = parse_element(elements[0]) if len(elements) == 1 else ("", {})
    if name != EXTENSION_NAME:
        raise NegotiationError(f"the server selected extensions that were not offered: {value}")
    _check_flags(params)
    server_bits = MAX_WINDOW_BITS
    if "server_max_window_bits" in params:
        server_bits = _window_bits(params, "server_max_window_bits")
        if server_bits > options.peer_max_window_bits:
            raise NegotiationError("server_max_window_bits above the one offered")
    elif options.peer_max_window_bits < MAX_WINDOW_BITS:
        # RFC 7692 7.1.2.1: the server must confirm the limit asked of it.
        raise NegotiationError("the answer lacks the server_max_window_bits offered")
    client_bits = options.max_window_bits
    if "client_max_window_bits" in params:
        client_bits = _window_bits(params, "client_max_window_bits")
        if client_bits > options.max_window_bits:
            raise NegotiationError("client_max_window_bits above the one offered")
    server_reset = "server_no_context_takeover" in params
    if options.peer_no_context_takeover and not server_reset:
        # RFC 7692 7.1.1.1: a server accepting the offer must confirm it.
        raise NegotiationError("the answer lacks the server_no_context_takeover offered")
    return DeflateParameters(
        server_no_context_takeover=server_reset,
        client_no_context_takeover=(
            options.no_context_takeover or "client_no_context_takeover" in params
        ),
        server_max_window_bits=server_bits,
        client_max_window_bits=client_bits,
    )


# --- server ------------------------------------------------------------------


def server_agreement(
    options: PerMessageDeflate, value: str
) -> tuple[DeflateParameters, str] | None:
    """Accept the first valid offer in a client's header; ``None`` declines them all.

    Returns the agreed parameters and the response header value.
    """
    for element in split_extensions(value):
        try:
            name, params = parse_element(element)
            if name == EXTENSION_NAME:
                return _accept(options, params)
        except NegotiationError:
            continue  # declined (RFC 7692 5); the next offer may do
    return None


def _accept(options: PerMessageDeflate, params: _Params) -> tuple[DeflateParameters, str]:
    _check_flags(params)
    parts = [EXTENSION_NAME]
    server_reset = options.no_context_takeover or "server_no_context_takeover" in params
    if server_reset:
        parts.append("server_no_context_takeover")
    client_reset = options.peer_no_context_takeover or "client_no_context_takeover" in params
    if client_reset:
        parts.append("client_no_context_takeover")
    server_bits = options.max_window_bits
    if "server_max_window_bits" in params:
        server_bits = min(server_bits, _window_bits(params, "server_max_window_bits"))
    if server_bits < MAX_WINDOW_BITS or "server_max_window_bits" in params:
        parts.append(f"server_max_window_bits={server_bits}")
    client_bits = MAX_WINDOW_BITS
    if "client_max_window_bits" in params:
        # Only a client that offered the parameter may be bound by it.
        hint = MAX_WINDOW_BITS
        if params["client_max_window_bits"] is not None:
            hint = _window_bits(params, "client_max_window_bits")
        client_bits = min(options.peer_max_window_bits, hint)
        if client_bits < MAX_WINDOW_BITS:
            parts.append(f"client_max_window_bits={client_bits}")
    agreed = DeflateParameters(
        server_no_context_takeover=server_reset,
        client_no_context_takeover=client_reset,
        server_max_window_bits=server_bits,
        client_max_window_bits=client_bits,
    )
    return agreed, "; ".join(parts)
