"""End-to-end fixtures: every test runs once per runtime and, where asked, per event log."""

from __future__ import annotations

from pathlib import Path

import pytest

from .helpers import EventLogs
from .runtimes import RUNTIMES, Runtime


@pytest.fixture(params=RUNTIMES, ids=str)
def runtime(request: pytest.FixtureRequest) -> Runtime:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def anyio_backend(runtime: Runtime) -> str:
    return runtime.backend


@pytest.fixture(params=["memory", "sqlite"])
def logs(request: pytest.FixtureRequest, tmp_path: Path) -> EventLogs:
    return EventLogs(request.param, tmp_path / "events.db")
