"""WebSocket URLs (``ws://`` and ``wss://``, RFC 6455 §3) and their parts.

The client opens a connection from the parts: host and port for the
transport, ``secure`` for TLS, ``resource`` for the handshake's request line.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from .errors import LocalProtocolError

__all__ = ["WsUrl", "parse_ws_url"]

_DEFAULT_PORTS = {"ws": 80, "wss": 443}
# Characters a request target may carry as they are (RFC 3986 reserved and
# unreserved, plus "%" so that existing escapes survive): only the rest is
# percent-encoded, as UTF-8.
_RESOURCE_SAFE = "!#$%&'()*+,/:;=?@[]~"


@dataclass(frozen=True, kw_only=True, slots=True)
class WsUrl:
    """The parts of a WebSocket URL that opening a connection needs.

    ``host`` is an IPv6 literal without brackets, a lowercased name (IDNA
    encoded) or an IPv4 address; ``resource`` is the path and query, ``"/"``
    at least.
    """

    host: str
    port: int
    secure: bool
    resource: str


def parse_ws_url(url: str) -> WsUrl:
    """Split a ``ws://`` or ``wss://`` URL into :class:`WsUrl`.

    Raises :class:`LocalProtocolError` for anything else: another scheme, no
    host, a bad port, a fragment (RFC 6455 forbids one), credentials in the
    URL (send them as headers or a token), whitespace or control characters.
    """
    if not isinstance(url, str):
        raise LocalProtocolError(f"a WebSocket URL must be a string, not {type(url).__name__}")
    # urlsplit silently drops tabs and newlines; a URL with them is a mistake.
    if any(char.isspace() or ord(char) < 0x20 or ord(char) == 0x7F for char in url):
        raise LocalProtocolError(f"the WebSocket URL contains whitespace: {url!r}")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise LocalProtocolError(f"invalid WebSocket URL {url!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise LocalProtocolError(f"a WebSocket URL starts with ws:// or wss://, not {url!r}")
    if not parts.hostname:
        raise LocalProtocolError(f"the WebSocket URL has no host: {url!r}")
    if parts.username is not None or parts.password is not None:
        raise LocalProtocolError("credentials in a WebSocket URL are not supported; use headers")
    if "#" in url:
        raise LocalProtocolError(f"a WebSocket URL cannot have a fragment: {url!r}")
    if port == 0:
        raise LocalProtocolError(f"port 0 is not a port one can connect to: {url!r}")
    resource = parts.path or "/"
    if parts.query:
        resource += "?" + parts.query
    return WsUrl(
        host=_host(parts.hostname),
        port=_DEFAULT_PORTS[scheme] if port is None else port,
        secure=scheme == "wss",
        resource=quote(resource, safe=_RESOURCE_SAFE),
    )


def _host(hostname: str) -> str:
    if hostname.isascii():
        return hostname
    try:
        return hostname.encode("idna").decode("ascii")
    except UnicodeError:
        raise LocalProtocolError(f"invalid host name {hostname!r}") from None
