"""Who may connect and what they may touch: authenticators and authorizers.

An *authenticator* turns the credentials of an ``auth`` message into a
principal (any object but ``None``) or refuses them, by returning ``None`` or
raising :class:`AuthenticationRefused`. An *authorizer* says whether a
principal may read or write a repository. Both may be plain functions or
coroutine functions.
"""

from __future__ import annotations

import enum
import hmac
import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TypeAlias, TypeVar

from lfws_core.errors import LfwsError

__all__ = [
    "Access",
    "AuthCredentials",
    "AuthenticationRefused",
    "Authenticator",
    "Authorizer",
    "Credentials",
    "allow_anyone",
    "resolve",
    "token_authenticator",
]

_T = TypeVar("_T")


class Access(enum.Enum):
    """What a principal wants to do with a repository."""

    READ = "read"
    WRITE = "write"


class AuthenticationRefused(LfwsError):
    """Raised by an authenticator to refuse credentials, with the reason sent back."""

    def __init__(self, reason: str = "invalid credentials") -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class AuthCredentials:
    """Client side: credentials for the server (the Dart ``AuthCredentials``).

    ``auth_token`` is sent as ``token``; ``headers`` are spread into the
    ``auth`` message. ``None`` keeps the current value.
    """

    auth_token: str | None = None
    headers: Mapping[str, str] | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Credentials:
    """What a client presented: the ``auth`` message and the handshake headers."""

    token: str | None
    headers: Mapping[str, str]
    """The header fields spread into the ``auth`` message."""
    handshake_headers: tuple[tuple[str, str], ...]
    """The HTTP headers of the WebSocket handshake (lower-case names)."""

    def bearer_tokens(self) -> list[str]:
        """Return every token presented: ``token`` and ``Authorization: Bearer`` values."""
        found = [self.token] if self.token else []
        values = [v for k, v in self.headers.items() if k.lower() == "authorization"]
        values += [v for k, v in self.handshake_headers if k == "authorization"]
        for value in values:
            scheme, _, credential = value.strip().partition(" ")
            if scheme.lower() == "bearer" and credential.strip():
                found.append(credential.strip())
        return found


Authenticator: TypeAlias = Callable[[Credentials], object | Awaitable[object]]
"""Credentials in; a principal out (``None`` or :class:`AuthenticationRefused` refuses)."""

Authorizer: TypeAlias = Callable[[object, str, Access], bool | Awaitable[bool]]
"""``(principal, repository, access)`` in; whether it is allowed out."""


def allow_anyone(credentials: Credentials) -> object:
    """Accept every ``auth``, as the Dart reference server does."""
    return credentials.token or "anonymous"


def token_authenticator(tokens: Iterable[str]) -> Authenticator:
    """Accept only credentials carrying one of ``tokens``.

    The token may come as the ``token`` field or as ``Authorization: Bearer``
    (in the ``auth`` message or the handshake). Comparisons take constant
    time, so response timing does not leak how much of a token was right.
    """
    expected = [t.encode() for t in tokens]
    if not expected:
        raise ValueError("token_authenticator needs at least one token")

    def authenticate(credentials: Credentials) -> object:
        for presented in credentials.bearer_tokens():
            candidate = presented.encode()
            # Compare with every token, always, so timing says nothing.
            matches = [hmac.compare_digest(candidate, token) for token in expected]
            if any(matches):
                return f"token#{matches.index(True)}"
        raise AuthenticationRefused("invalid or missing token")

    return authenticate


async def resolve(value: _T | Awaitable[_T]) -> _T:
    """Await ``value`` if a callback returned an awaitable, else return it."""
    if inspect.isawaitable(value):
        return await value
    return value
