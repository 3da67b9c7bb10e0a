"""The backoff policy: capped exponential envelope, full jitter."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lfws_core.backoff import Backoff
from lfws_core.errors import LocalProtocolError

policies = st.builds(
    lambda base, factor, multiplier: Backoff(base, base * factor, multiplier),
    st.floats(0.001, 100.0),
    st.floats(1.0, 1000.0),
    st.floats(1.0, 10.0),
)
attempts = st.integers(0, 10_000)
draws = st.floats(0.0, 1.0)


def test_envelope_doubles_up_to_the_cap() -> None:
    backoff = Backoff(3.0, 60.0)
    assert [backoff.ceiling(n) for n in range(7)] == [3.0, 6.0, 12.0, 24.0, 48.0, 60.0, 60.0]


def test_full_jitter() -> None:
    backoff = Backoff(3.0, 60.0)
    assert backoff.delay(0, 0.0) == 0.0
    assert backoff.delay(0, 0.5) == 1.5
    assert backoff.delay(2, 0.25) == 3.0
    assert backoff.delay(100, 1.0) == 60.0


def test_custom_multiplier() -> None:
    assert Backoff(1.0, 100.0, multiplier=3.0).ceiling(2) == 9.0
    assert Backoff(2.0, 2.0, multiplier=1.0).ceiling(10**6) == 2.0


def test_huge_attempt_is_capped_not_overflowing() -> None:
    assert Backoff(0.1, 20.0).ceiling(100_000) == 20.0


@pytest.mark.parametrize(
    "args",
    [
        (0.0, 1.0),
        (-1.0, 1.0),
        (2.0, 1.0),
        (1.0, 2.0, 0.5),
        (math.nan, 1.0),
        (1.0, math.inf),
        (1.0, 2.0, math.inf),
        (True, 2.0),
        ("1", 2.0),
    ],
)
def test_nonsense_policy(args: tuple[object, ...]) -> None:
    with pytest.raises(LocalProtocolError):
        Backoff(*args)  # type: ignore[arg-type]


@pytest.mark.parametrize("attempt", [-1, True, 1.0, "1"])
def test_bad_attempt(attempt: object) -> None:
    with pytest.raises(LocalProtocolError, match="attempt"):
        Backoff(1.0, 2.0).delay(attempt, 0.5)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [-0.1, 1.1, math.nan, math.inf])
def test_bad_random_value(value: float) -> None:
    with pytest.raises(LocalProtocolError, match="random_value"):
        Backoff(1.0, 2.0).delay(0, value)


@given(policies, attempts, draws)
def test_delay_within_zero_and_cap(backoff: Backoff, attempt: int, draw: float) -> None:
    delay = backoff.delay(attempt, draw)
    assert 0.0 <= delay <= backoff.ceiling(attempt) <= backoff.cap


@given(policies, attempts, attempts)
def test_envelope_is_monotone(backoff: Backoff, a: int, b: int) -> None:
    low, high = sorted((a, b))
    assert backoff.base <= backoff.ceiling(0) <= backoff.ceiling(low) <= backoff.ceiling(high)


@given(policies, attempts, draws, draws)
def test_delay_grows_with_the_draw(backoff: Backoff, attempt: int, a: float, b: float) -> None:
    low, high = sorted((a, b))
    assert backoff.delay(attempt, low) <= backoff.delay(attempt, high)


def test_policy_is_frozen() -> None:
    backoff = Backoff(1.0, 2.0)
    with pytest.raises(AttributeError):
        backoff.base = 3.0  # type: ignore[misc]
