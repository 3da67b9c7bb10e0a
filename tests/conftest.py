"""Shared fixtures: adapter tests run on both anyio backends; hypothesis without deadlines."""

from __future__ import annotations

import pytest
from hypothesis import settings

# CI machines are shared and noisy: hypothesis's 200 ms per-example limit
# turns load into failures. Tests that bound time do it themselves (the fuzz
# smoke test gives every input a budget).
settings.register_profile("lfws", deadline=None)
settings.load_profile("lfws")


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)
