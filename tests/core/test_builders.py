"""``slot_builder``: the fast constructors of the hot paths build what the constructors do."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lfws_core._builders import slot_builder


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Pair:
    left: object
    right: object = None


@given(st.integers(), st.text())
def test_a_built_object_equals_the_constructed_one(left: int, right: str) -> None:
    build = slot_builder(Pair, "left", "right")
    built = build(left, right)
    assert type(built) is Pair
    assert built == Pair(left=left, right=right)
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.left = 0  # type: ignore[misc]


def test_fields_may_come_in_any_order() -> None:
    assert slot_builder(Pair, "right", "left")(1, 2) == Pair(left=2, right=1)


@pytest.mark.parametrize(
    "fields",
    [("left",), ("left", "right", "left"), ("left", "right", "middle"), ()],
)
def test_every_field_must_be_named_exactly_once(fields: tuple[str, ...]) -> None:
    # A field left out would stay unset: reading it would raise AttributeError.
    with pytest.raises(TypeError, match="must name every field once"):
        slot_builder(Pair, *fields)


def test_a_class_with_post_init_is_refused() -> None:
    @dataclasses.dataclass(frozen=True, slots=True)
    class Checked:
        value: int

        def __post_init__(self) -> None:
            if self.value < 0:
                raise ValueError(self.value)

    with pytest.raises(TypeError, match="__post_init__"):
        slot_builder(Checked, "value")
