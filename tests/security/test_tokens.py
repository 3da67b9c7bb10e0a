"""Token authentication: what ``token_authenticator`` accepts; its comparisons take constant time.

Timing cannot be measured reliably in a test; what makes it constant is
checked instead: every presented token is compared with every configured
token by :func:`hmac.compare_digest`, whether or not an earlier one matched,
so neither which token matched nor how much of it was right changes the work
done.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator

import pytest

from lfws_adapters.auth import AuthenticationRefused, Credentials, token_authenticator

TOKENS = ["first-token", "second-token", "third-token"]


def credentials(token: str | None = None, **headers: str) -> Credentials:
    return Credentials(token=token, headers=headers, handshake_headers=())


@pytest.fixture
def comparisons(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[bytes, bytes]]]:
    calls: list[tuple[bytes, bytes]] = []
    compare = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return compare(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counting)
    yield calls


@pytest.mark.parametrize("presented", [*TOKENS, "first-tokeX", "x", ""])
def test_every_configured_token_is_compared_whatever_matches(
    presented: str, comparisons: list[tuple[bytes, bytes]]
) -> None:
    authenticate = token_authenticator(TOKENS)
    try:
        principal = authenticate(
            credentials(presented or None, authorization=f"Bearer {presented}")
        )
    except AuthenticationRefused as refused:
        assert presented not in TOKENS
        assert refused.reason == "invalid or missing token"
    else:
        assert principal == f"token#{TOKENS.index(presented)}"
    # One full round (every configured token) per presented token, never cut short.
    assert len(comparisons) % len(TOKENS) == 0
    for start in range(0, len(comparisons), len(TOKENS)):
        round_ = comparisons[start : start + len(TOKENS)]
        assert [b for _, b in round_] == [t.encode() for t in TOKENS]
        assert len({a for a, _ in round_}) == 1


@pytest.mark.parametrize(
    "presented",
    [
        credentials("second-token"),
        credentials(authorization="Bearer second-token"),
        credentials(Authorization="bearer   second-token  "),
        Credentials(
            token=None, headers={}, handshake_headers=(("authorization", "Bearer second-token"),)
        ),
    ],
)
def test_the_token_may_come_in_the_auth_message_or_the_handshake(presented: Credentials) -> None:
    assert token_authenticator(TOKENS)(presented) == "token#1"


@pytest.mark.parametrize(
    "presented",
    [
        credentials(),
        credentials("SECOND-TOKEN"),
        credentials("second-token "),
        credentials(authorization="Basic second-token"),
        credentials(authorization="Bearer"),
        credentials(authorization="second-token"),
        credentials(**{"x-token": "second-token"}),
    ],
)
def test_anything_else_is_refused(presented: Credentials) -> None:
    with pytest.raises(AuthenticationRefused, match="invalid or missing token"):
        token_authenticator(TOKENS)(presented)


def test_there_must_be_a_token_to_accept() -> None:
    with pytest.raises(ValueError, match="at least one token"):
        token_authenticator([])
