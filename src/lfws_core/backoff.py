"""Reconnect delays: capped exponential backoff with full jitter.

The Dart client waits a fixed 3 s before every reconnect, so after a server
restart every client comes back in the same instant. Full jitter (AWS
Architecture Blog, "Exponential Backoff And Jitter", 2015) spreads them out:
attempt ``n`` waits a uniformly random time in ``[0, min(cap, base * m**n)]``.

The first delay can therefore be close to zero. That is intended: a single
dropped connection is usually restored at once, and the envelope doubles
quickly when the server stays away.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import LocalProtocolError

__all__ = ["Backoff"]


@dataclass(frozen=True, slots=True)
class Backoff:
    """A pure backoff policy: ``delay(attempt, random_value)`` in seconds.

    ``base`` is the envelope of the first retry, ``cap`` the largest envelope,
    ``multiplier`` its growth per attempt.
    """

    base: float
    cap: float
    multiplier: float = 2.0

    def __post_init__(self) -> None:
        for name in ("base", "cap", "multiplier"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise LocalProtocolError(f"backoff {name} must be a number, not {value!r}")
            if not math.isfinite(value):
                raise LocalProtocolError(f"backoff {name} must be finite, not {value!r}")
        if self.base <= 0:
            raise LocalProtocolError(f"backoff base must be positive, not {self.base!r}")
        if self.cap < self.base:
            raise LocalProtocolError(f"backoff cap {self.cap!r} is below its base {self.base!r}")
        if self.multiplier < 1:
            raise LocalProtocolError(f"backoff multiplier must be >= 1, not {self.multiplier!r}")

    def ceiling(self, attempt: int) -> float:
        """Return the envelope of retry ``attempt`` (0 for the first retry).

        Never decreases with ``attempt`` and never exceeds ``cap``.
        """
        if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 0:
            raise LocalProtocolError(f"attempt must be an int >= 0, not {attempt!r}")
        try:
            return min(self.cap, self.base * self.multiplier**attempt)
        except OverflowError:
            return self.cap

    def delay(self, attempt: int, random_value: float) -> float:
        """Return the delay before retry ``attempt``: ``random_value * ceiling(attempt)``.

        ``random_value`` is a uniform draw from ``[0, 1]`` (``random.random()``).
        """
        if not 0.0 <= random_value <= 1.0:  # also rejects NaN
            raise LocalProtocolError(f"random_value must be in [0, 1], not {random_value!r}")
        return random_value * self.ceiling(attempt)
