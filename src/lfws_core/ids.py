"""UUIDv7 event ids (RFC 9562), built from a time and randomness passed in.

A UUIDv7 starts with the Unix time in milliseconds, so ids sort by creation
time both as integers and as their canonical lowercase strings; that is what
makes them good ``_event_id`` values and a meaningful merge tie-break.

The core stays pure: :func:`uuid7` takes the time and the random bytes as
arguments, and :class:`Uuid7Generator` takes a clock and a randomness source
as callables. Bad arguments are caller misuse and raise
:class:`~lfws_core.errors.LocalProtocolError` (a :class:`~lfws_core.errors.LfwsError`),
like every other misuse of the core.
"""

from __future__ import annotations

from collections.abc import Callable

from .errors import LocalProtocolError

__all__ = [
    "MAX_UNIX_MS",
    "RANDOM_BYTES",
    "Uuid7Generator",
    "uuid7",
]

MAX_UNIX_MS = (1 << 48) - 1
"""The last millisecond a UUIDv7 can hold (48 bits: the year 10889)."""

RANDOM_BYTES = 10
"""How many random bytes one id consumes."""

_VERSION_BITS = 0x7 << 76
_VARIANT_BITS = 0b10 << 62
_RAND_A_MAX = 0xFFF
_RAND_B_MASK = (1 << 62) - 1
# A fresh counter starts below the midpoint of its 12 bits, so at least 2048
# ids fit in one millisecond before the counter rolls over.
_COUNTER_SEED_MASK = 0x7FF


def _check_unix_ms(unix_ms: int) -> None:
    if isinstance(unix_ms, bool) or not isinstance(unix_ms, int):
        raise LocalProtocolError(f"unix_ms must be an int, not {type(unix_ms).__name__}")
    if not 0 <= unix_ms <= MAX_UNIX_MS:
        raise LocalProtocolError(f"unix_ms must be in 0..2**48-1, got {unix_ms}")


def _random_int(random_bytes: bytes) -> int:
    if len(random_bytes) != RANDOM_BYTES:
        raise LocalProtocolError(
            f"a UUIDv7 needs {RANDOM_BYTES} random bytes, got {len(random_bytes)}"
        )
    return int.from_bytes(random_bytes, "big")


def _format(unix_ms: int, rand_a: int, rand_b: int) -> str:
    value = (unix_ms << 80) | _VERSION_BITS | (rand_a << 64) | _VARIANT_BITS | rand_b
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def uuid7(unix_ms: int, random_bytes: bytes) -> str:
    """Return the canonical UUIDv7 string for ``unix_ms`` and 10 random bytes.

    The 80 random bits fill everything after the timestamp; the version
    (``7``) and variant (``10``) bits then overwrite six of them, leaving the
    74 random bits RFC 9562 asks for. Raises :class:`LocalProtocolError` if
    ``unix_ms`` is not an int in ``0 .. 2**48 - 1`` or ``random_bytes`` is not
    exactly :data:`RANDOM_BYTES` long.
    """
    _check_unix_ms(unix_ms)
    rand = _random_int(random_bytes)
    return _format(unix_ms, (rand >> 64) & _RAND_A_MAX, rand & _RAND_B_MASK)


class Uuid7Generator:
    """Strictly increasing UUIDv7 ids, even within one millisecond.

    RFC 9562 §6.2 method 1: the 12 ``rand_a`` bits are a counter. The first
    id of a millisecond seeds it randomly below 2048; each further id in the
    same millisecond adds one. Should the counter run out, or the clock step
    backwards, the generator keeps counting on from the newest timestamp it
    used (borrowing the next millisecond on rollover), so ids never go down.
    The 62 ``rand_b`` bits are fresh randomness in every id.

    ``clock_ms`` returns the Unix time in milliseconds; ``random_bytes(n)``
    returns ``n`` random bytes (``os.urandom`` in an adapter, a seeded
    generator in a simulation). Calling the generator returns the next id.
    """

    __slots__ = ("_clock_ms", "_counter", "_last_ms", "_random_bytes")

    def __init__(self, clock_ms: Callable[[], int], random_bytes: Callable[[int], bytes]) -> None:
        self._clock_ms = clock_ms
        self._random_bytes = random_bytes
        self._last_ms = -1
        self._counter = 0

    def __call__(self) -> str:
        """Return the next id, greater than every id this generator returned.

        Raises :class:`LocalProtocolError` if the clock or the randomness
        source returns something unusable, or if borrowing a millisecond
        would run past :data:`MAX_UNIX_MS`; the generator is unchanged then.
        """
        now = self._clock_ms()
        _check_unix_ms(now)
        rand = _random_int(self._random_bytes(RANDOM_BYTES))
        seed = (rand >> 64) & _COUNTER_SEED_MASK
        if now > self._last_ms:
            unix_ms, counter = now, seed
        elif self._counter < _RAND_A_MAX:
            unix_ms, counter = self._last_ms, self._counter + 1
        else:
            unix_ms, counter = self._last_ms + 1, seed
            if unix_ms > MAX_UNIX_MS:
                raise LocalProtocolError("UUIDv7 counter exhausted at the last millisecond")
        self._last_ms, self._counter = unix_ms, counter
        return _format(unix_ms, counter, rand & _RAND_B_MASK)
