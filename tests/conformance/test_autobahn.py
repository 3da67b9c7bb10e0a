"""Autobahn TestSuite cases 1-7 and 10, and 12-13 sampled, against the echo endpoint.

kosoku (a native runner for the Autobahn case files) plays the client; the
server is :class:`~lfws_adapters.echo.EchoHub` behind each adapter's
``serve_peers``, i.e. the transport code of the sync server. Each server runs
its own event loop in a background thread, because kosoku's runner needs an
asyncio loop of its own. The per-adapter counts are printed in the terminal
summary; docs/reliability.md records them.

Cases 12 and 13 (permessage-deflate: five data sets, then seven parameter
offers, each at 18 message sizes of 1000 messages) take about six minutes
per runtime in full, so CI runs three sizes of each: 16 and 256 bytes, and
8 KiB cut into 256-byte frames. ``LFWS_AUTOBAHN_FULL=1`` runs all 216.
"""

from __future__ import annotations

import asyncio
import os
import queue
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import anyio
import anyio.to_thread
import pytest

from lfws_adapters.echo import EchoHub
from lfws_core.ws import ServerConfig

from ..e2e.runtimes import RUNTIMES, Runtime
from .verdicts import FAILED, record_counts, verdict

kosoku = pytest.importorskip(
    "kosoku", reason="kosoku (the Autobahn case runner) is not installed: pip install kosoku"
)

CASES = ["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "10.*"]
# What CASES selects in kosoku 0.1: a release that ran fewer would not pass unseen.
CASE_COUNT = 247
# Cases run in parallel: the whole selection takes ~3 s instead of ~9 s.
CONCURRENCY = 8

_DEFLATE_GROUPS = [f"12.{n}" for n in range(1, 6)] + [f"13.{n}" for n in range(1, 8)]
DEFLATE_CASES = (
    ["12.*", "13.*"]
    if os.environ.get("LFWS_AUTOBAHN_FULL")
    else [f"{group}.{size}" for group in _DEFLATE_GROUPS for size in (1, 3, 11)]
)
DEFLATE_CASE_COUNT = 216 if os.environ.get("LFWS_AUTOBAHN_FULL") else 36
START_TIMEOUT = 10.0


@contextmanager
def echo_server(runtime: Runtime, hub: EchoHub) -> Iterator[str]:
    """Serve ``hub`` with ``runtime`` in a thread of its own; yield its URL."""
    serve_peers = runtime.module.serve_peers
    started: queue.Queue[str | BaseException] = queue.Queue()
    stop = threading.Event()
    errors: list[BaseException] = []

    async def serve() -> None:
        async with serve_peers(hub, host="127.0.0.1", port=0) as listener:
            started.put(f"ws://127.0.0.1:{listener.port}/")
            await anyio.to_thread.run_sync(stop.wait)

    def run() -> None:
        try:
            anyio.run(serve, backend=runtime.backend)
        except BaseException as error:  # reported by the test thread
            errors.append(error)
            started.put(error)

    thread = threading.Thread(target=run, name=f"echo-{runtime}")
    thread.start()
    try:
        url = started.get(timeout=START_TIMEOUT)
        if isinstance(url, BaseException):
            raise url
        yield url
    finally:
        stop.set()
        thread.join(START_TIMEOUT)
    assert not thread.is_alive(), "the echo server did not stop"
    if errors:
        raise errors[0]


def run_cases(url: str, cases: Sequence[str]) -> list[Any]:
    """Run ``cases`` against ``url``; every result, passed or not."""

    async def run() -> list[Any]:
        try:
            return list(await kosoku.run_fuzzingclient(url, cases, concurrency=CONCURRENCY))
        except kosoku.FailureError as failure:
            return list(failure.results)

    return asyncio.run(run())


def describe_failures(results: list[Any]) -> str:
    return "\n".join(
        f"{r.case_id}: {r.behavior.value}/{r.behavior_close.value}: {r.result} {r.result_close}"
        for r in results
        if verdict(r) == FAILED
    )


@pytest.mark.parametrize("runtime", RUNTIMES, ids=str)
def test_autobahn_cases_pass(runtime: Runtime, request: pytest.FixtureRequest) -> None:
    with echo_server(runtime, EchoHub()) as url:
        results = run_cases(url, CASES)
    counts = Counter(verdict(r) for r in results)
    record_counts(request.config, str(runtime), counts)
    assert len(results) == CASE_COUNT
    assert counts[FAILED] == 0, describe_failures(results)


# Autobahn's case 12/13 file opens its data sets without closing them.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("runtime", RUNTIMES, ids=str)
def test_autobahn_compression_cases_pass(runtime: Runtime, request: pytest.FixtureRequest) -> None:
    # The echo endpoint accepts permessage-deflate (ECHO_CONFIG.compression).
    with echo_server(runtime, EchoHub()) as url:
        results = run_cases(url, DEFLATE_CASES)
    counts = Counter(verdict(r) for r in results)
    record_counts(request.config, f"{runtime} (12, 13)", counts)
    assert len(results) == DEFLATE_CASE_COUNT
    assert counts[FAILED] == 0, describe_failures(results)


def test_a_failing_endpoint_is_reported_failed() -> None:
    # Without accept_binary the binary echo cases (1.2.x) must fail: the
    # harness above would notice a broken endpoint.
    hub = EchoHub(ServerConfig(path="/"))
    with echo_server(RUNTIMES[0], hub) as url:
        results = run_cases(url, ["1.1.1", "1.2.1"])
    assert [(r.case_id, verdict(r)) for r in results] == [("1.1.1", "OK"), ("1.2.1", FAILED)]
