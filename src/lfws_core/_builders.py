"""Fast constructors for the frozen, slotted dataclasses built once per message.

A frozen dataclass's ``__init__`` sets each field through
``object.__setattr__``; the slots' own descriptors do the same in about half
the time. The hot paths (every push, ack, frame and decoded event) build
their objects through :func:`slot_builder`, and only from values already
checked: no defaults, no validation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

_T = TypeVar("_T")


def slot_builder(cls: type[_T], *fields: str) -> Callable[..., _T]:
    """Return ``build(*values)``: a ``cls`` with ``fields`` set to ``values``, in order.

    ``fields`` must name every field of ``cls``, so that no object is ever
    left half set, and ``cls`` may have no ``__post_init__`` (it would be
    skipped). The function is generated, as ``dataclasses`` generates
    ``__init__``, so that it costs one call and one setter call per field.
    """
    if sorted(fields) != sorted(field.name for field in dataclasses.fields(cls)):  # type: ignore[arg-type]
        raise TypeError(f"slot_builder({cls.__name__}) must name every field once")
    if hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__} has a __post_init__, which a slot builder would skip")
    namespace: dict[str, Any] = {"new": object.__new__, "cls": cls}
    arguments = ", ".join(f"v{index}" for index in range(len(fields)))
    lines = [f"def build({arguments}):", "    obj = new(cls)"]
    for index, name in enumerate(fields):
        namespace[f"set{index}"] = getattr(cls, name).__set__
        lines.append(f"    set{index}(obj, v{index})")
    lines.append("    return obj")
    exec("\n".join(lines), namespace)
    build: Callable[..., _T] = namespace["build"]
    build.__qualname__ = build.__name__ = f"build_{cls.__name__}"
    return build
