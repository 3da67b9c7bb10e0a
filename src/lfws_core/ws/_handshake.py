"""HTTP/1.1 pieces of the opening handshake (RFC 6455 section 4) both roles share."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from http import HTTPStatus

import h11

from ..errors import LocalProtocolError
from .events import Headers

DEFAULT_MAX_HANDSHAKE_SIZE = 16 * 1024
WEBSOCKET_VERSION = b"13"

# Headers the handshake writes itself; letting callers add them would
# produce contradictory or smuggled framing.
_MANAGED_HEADERS = frozenset(
    {"connection", "content-length", "host", "origin", "transfer-encoding", "upgrade"}
)


def tokens(value: bytes | None) -> set[bytes]:
    """The lower-cased entries of a comma-separated header value."""
    if value is None:
        return set()
    return {token.strip().lower() for token in value.split(b",")}


def decode_headers(raw: Iterable[tuple[bytes, bytes]]) -> Headers:
    return tuple((name.decode("latin-1"), value.decode("latin-1")) for name, value in raw)


def user_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Caller-supplied headers, refused when the handshake owns the name."""
    checked = list(headers)
    for name, _ in checked:
        lowered = name.lower()
        if lowered in _MANAGED_HEADERS or lowered.startswith("sec-websocket-"):
            raise LocalProtocolError(f"the {name} header is set by the handshake")
    return checked


def reason_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


@contextmanager
def caller_input() -> Iterator[None]:
    """Report h11's refusal of caller-supplied values as our own error.

    h11 validates events in their constructors, so a refusal there leaves
    the h11 connection usable. It writes ``str`` values as ASCII, and
    refuses other text with ``UnicodeEncodeError``.
    """
    try:
        yield
    except h11.LocalProtocolError as error:
        raise LocalProtocolError(str(error)) from None
    except UnicodeEncodeError as error:
        raise LocalProtocolError(f"HTTP fields must be ASCII, not {error.object!r}") from None
