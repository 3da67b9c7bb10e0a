"""The runtimes every end-to-end test runs on: one entry per (adapter, anyio backend).

Each adapter module (``lfws_adapters.<adapter>``) offers the same entry
points: ``serve``, ``serve_peers``, ``connect``, ``Server`` and ``Client``.
Add a runtime by adding its entry to :data:`RUNTIMES`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType


@dataclass(frozen=True)
class Runtime:
    adapter: str
    """The module under ``lfws_adapters`` (``asyncio``, ``trio``, ``anyio``)."""
    backend: str
    """The anyio backend the test runs on (``asyncio`` or ``trio``)."""

    @property
    def module(self) -> ModuleType:
        return importlib.import_module(f"lfws_adapters.{self.adapter}")

    def __str__(self) -> str:
        return f"{self.adapter}-on-{self.backend}"


RUNTIMES = [
    Runtime("asyncio", "asyncio"),
    Runtime("trio", "trio"),
    Runtime("anyio", "asyncio"),
    Runtime("anyio", "trio"),
]
