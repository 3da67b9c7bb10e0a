"""The client driver against a scripted connector (no sockets)."""

from __future__ import annotations

import asyncio

import pytest

from lfws_adapters.asyncio import AsyncioLoop
from lfws_adapters.driver import ClientDriver, ClientHost, Receiver
from lfws_core.actions import ConnectionState, OpenConnection
from lfws_core.client import ClientConfig

pytestmark = pytest.mark.anyio


class ResetAtOnce:
    """A connector whose transports end before ``connect`` returns them."""

    def __init__(self) -> None:
        self.attempts = 0
        self.closed_links = 0

    async def connect(self, target: OpenConnection, receiver: Receiver) -> ResetAtOnce:
        self.attempts += 1
        receiver.connection_lost("connection reset by peer")
        return self

    # The Link the connector hands back.
    def write(self, data: bytes) -> None:
        raise AssertionError("nothing may be written to a transport that ended")

    def close(self) -> None:
        self.closed_links += 1

    def buffered(self) -> int:
        return 0

    async def drained(self) -> None:
        return None


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_transport_that_ends_before_it_is_returned_is_a_failed_attempt(
    anyio_backend: str,
) -> None:
    # Before the fix the session never heard of it and stayed "connecting".
    connector = ResetAtOnce()
    config = ClientConfig(
        url="ws://127.0.0.1:9/sync", repositories=("todos",), reconnect_delay=0.01
    )
    loop = AsyncioLoop()
    driver = ClientDriver(config, ClientHost(), loop, connector)  # type: ignore[arg-type]
    driver.start()
    try:
        for _ in range(500):
            if connector.attempts >= 3:
                break
            await asyncio.sleep(0.01)
        assert connector.attempts >= 3  # it keeps retrying
        assert connector.closed_links >= 2
        assert driver.session_state in {
            ConnectionState.WAITING_TO_RECONNECT,
            ConnectionState.CONNECTING,
        }
    finally:
        driver.close()
        await loop.aclose()


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_store_work_goes_on_after_the_worker_task_is_cancelled(anyio_backend: str) -> None:
    config = ClientConfig(url="ws://127.0.0.1:9/sync", repositories=("todos",))
    loop = AsyncioLoop()
    driver = ClientDriver(config, ClientHost(), loop, ResetAtOnce())  # type: ignore[arg-type]
    done: list[str] = []

    async def leaks_a_cancellation() -> None:
        raise asyncio.CancelledError  # as a store might let one out

    async def record() -> None:
        done.append("after")

    try:
        driver._queue_store_work(leaks_a_cancellation)
        for _ in range(3):
            await asyncio.sleep(0)
        driver._queue_store_work(record)
        for _ in range(100):
            if driver.idle():
                break
            await asyncio.sleep(0)
        assert done == ["after"]
    finally:
        await loop.aclose()
