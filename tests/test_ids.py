from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lfws_core.errors import LocalProtocolError
from lfws_core.ids import MAX_UNIX_MS, RANDOM_BYTES, Uuid7Generator, uuid7

unix_ms = st.integers(0, MAX_UNIX_MS)
random10 = st.binary(min_size=RANDOM_BYTES, max_size=RANDOM_BYTES)


def clock(*readings: int) -> Callable[[], int]:
    it: Iterator[int] = iter(readings)
    return lambda: next(it)


def fixed_random(byte: int) -> Callable[[int], bytes]:
    return lambda n: bytes([byte]) * n


def counter_of(value: str) -> int:
    return uuid.UUID(value).int >> 64 & 0xFFF


def ms_of(value: str) -> int:
    return uuid.UUID(value).int >> 80


# --- uuid7 ---------------------------------------------------------------------


def test_a_known_id() -> None:
    # The RFC 9562 appendix A.6 example: 2022-02-22T19:22:22Z, 0x017F22E279B0 ms.
    rand = bytes.fromhex("0cc318c4dc0c0c07398f")
    assert uuid7(0x017F22E279B0, rand) == "017f22e2-79b0-7cc3-98c4-dc0c0c07398f"


@given(unix_ms, random10)
def test_version_variant_and_round_trip(ms: int, rand: bytes) -> None:
    text = uuid7(ms, rand)
    parsed = uuid.UUID(text)
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122
    assert str(parsed) == text
    assert ms_of(text) == ms


@given(random10)
def test_all_74_random_bits_are_kept(rand: bytes) -> None:
    value = uuid.UUID(uuid7(0, rand)).int
    bits = int.from_bytes(rand, "big")
    assert value & ((1 << 62) - 1) == bits & ((1 << 62) - 1)
    assert value >> 64 & 0xFFF == bits >> 64 & 0xFFF


@given(unix_ms, random10, unix_ms, random10)
def test_string_order_follows_time_order(a_ms: int, a_r: bytes, b_ms: int, b_r: bytes) -> None:
    a, b = uuid7(a_ms, a_r), uuid7(b_ms, b_r)
    assert (a < b) == (uuid.UUID(a).int < uuid.UUID(b).int)
    if a_ms < b_ms:
        assert a < b


@pytest.mark.parametrize("bad", [-1, MAX_UNIX_MS + 1, True, 1.0])
def test_out_of_range_or_non_int_times_are_refused(bad: object) -> None:
    with pytest.raises(LocalProtocolError, match="unix_ms"):
        uuid7(bad, bytes(RANDOM_BYTES))  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [0, 9, 11, 16])
def test_random_bytes_of_the_wrong_length_are_refused(size: int) -> None:
    with pytest.raises(LocalProtocolError, match="10 random bytes"):
        uuid7(0, bytes(size))


def test_the_extreme_times_are_accepted() -> None:
    assert uuid7(0, bytes(10)) == "00000000-0000-7000-8000-000000000000"
    assert uuid7(MAX_UNIX_MS, b"\xff" * 10) == "ffffffff-ffff-7fff-bfff-ffffffffffff"


# --- Uuid7Generator ----------------------------------------------------------------


@given(st.lists(st.integers(0, 5), min_size=1, max_size=200), st.randoms(use_true_random=False))
def test_ids_strictly_increase_whatever_the_clock_does(
    steps: list[int], rnd: random.Random
) -> None:
    # The clock mostly stands still, sometimes jumps, sometimes steps back.
    readings = [1_000 + (s if s < 5 else -3) + i // 50 for i, s in enumerate(steps)]
    gen = Uuid7Generator(clock(*readings), rnd.randbytes)
    ids = [gen() for _ in readings]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    for text in ids:
        assert uuid.UUID(text).version == 7


def test_a_new_millisecond_reseeds_the_counter_below_2048() -> None:
    gen = Uuid7Generator(clock(5), fixed_random(0xFF))
    first = gen()
    assert ms_of(first) == 5
    assert counter_of(first) == 0x7FF


def test_ids_within_one_millisecond_count_up() -> None:
    gen = Uuid7Generator(clock(7, 7, 7), fixed_random(0x00))
    ids = [gen() for _ in range(3)]
    assert [counter_of(i) for i in ids] == [0, 1, 2]
    assert {ms_of(i) for i in ids} == {7}


def test_a_clock_stepping_back_keeps_the_newest_timestamp() -> None:
    gen = Uuid7Generator(clock(10, 4), fixed_random(0x00))
    first, second = gen(), gen()
    assert ms_of(second) == 10
    assert second > first


def test_counter_rollover_borrows_the_next_millisecond() -> None:
    calls = 0x1000 - 0x7FF + 1
    gen = Uuid7Generator(lambda: 20, fixed_random(0xFF))
    ids = [gen() for _ in range(calls)]
    assert counter_of(ids[-2]) == 0xFFF
    assert ms_of(ids[-2]) == 20
    assert ms_of(ids[-1]) == 21
    assert counter_of(ids[-1]) == 0x7FF
    assert ids == sorted(ids)


def test_rollover_past_the_last_millisecond_is_refused_and_changes_nothing() -> None:
    gen = Uuid7Generator(lambda: MAX_UNIX_MS, fixed_random(0xFF))
    ids = [gen() for _ in range(0x1000 - 0x7FF)]
    assert counter_of(ids[-1]) == 0xFFF
    with pytest.raises(LocalProtocolError, match="exhausted"):
        gen()
    with pytest.raises(LocalProtocolError, match="exhausted"):
        gen()


@pytest.mark.parametrize("reading", [-5, MAX_UNIX_MS + 1])
def test_a_bad_clock_reading_is_refused_and_changes_nothing(reading: int) -> None:
    gen = Uuid7Generator(clock(3, reading, 3), fixed_random(0x00))
    first = gen()
    with pytest.raises(LocalProtocolError, match="unix_ms"):
        gen()
    assert counter_of(gen()) == counter_of(first) + 1


def test_a_short_random_source_is_refused() -> None:
    gen = Uuid7Generator(lambda: 1, lambda n: bytes(n - 1))
    with pytest.raises(LocalProtocolError, match="random bytes"):
        gen()


def test_the_randomness_source_is_asked_for_ten_bytes() -> None:
    asked: list[int] = []

    def source(n: int) -> bytes:
        asked.append(n)
        return bytes(n)

    gen = Uuid7Generator(lambda: 1, source)
    gen()
    gen()
    assert asked == [RANDOM_BYTES, RANDOM_BYTES]
