"""A small, seeded pseudo-random generator for deterministic tests.

The core may not import :mod:`random`; simulations still need reproducible
randomness, so this is SplitMix64 (Steele, Lea & Flood, 2014): tiny, fast and
good enough for scheduling faults and jitter.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

__all__ = ["SplitMix64"]

_MASK = (1 << 64) - 1
_T = TypeVar("_T")


class SplitMix64:
    """A seeded generator; the same seed always gives the same sequence."""

    def __init__(self, seed: int) -> None:
        self._state = seed & _MASK

    def next_u64(self) -> int:
        """Return the next 64-bit unsigned integer."""
        self._state = (self._state + 0x9E3779B97F4A7C15) & _MASK
        z = self._state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
        return z ^ (z >> 31)

    def random(self) -> float:
        """Return a float in [0, 1), like :func:`random.random`."""
        return (self.next_u64() >> 11) / float(1 << 53)

    def uniform(self, low: float, high: float) -> float:
        """Return a float in [low, high)."""
        return low + (high - low) * self.random()

    def randrange(self, stop: int) -> int:
        """Return an int in [0, stop); ``stop`` must be positive."""
        if stop <= 0:
            raise ValueError("stop must be positive")
        return self.next_u64() % stop

    def chance(self, probability: float) -> bool:
        """Return True with the given probability."""
        return self.random() < probability

    def choice(self, items: Sequence[_T]) -> _T:
        """Return one item of a non-empty sequence."""
        return items[self.randrange(len(items))]

    def bytes(self, n: int) -> bytes:
        """Return ``n`` pseudo-random bytes (for mask keys in tests)."""
        out = bytearray()
        while len(out) < n:
            out += self.next_u64().to_bytes(8, "little")
        return bytes(out[:n])
