"""Scenario 5: server memory per idle, authenticated connection.

Each server runs alone in a child process (``python -m bench.servers``):
the figure is the growth of that process's resident set size (RSS, from
``/proc``) when ``connections`` bare WebSocket clients in this process
open, authenticate and then sit idle, divided by ``connections``. A few
connections are opened first and counted in the baseline, so that one-off
allocations (first handshake, lazy imports) are not charged per connection.
:func:`allocations` explains a figure with tracemalloc in the same setup.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.measure import Contender, RatioSpec, Scenario, Target
from bench.servers import TRACE_VARIABLE, rss_bytes
from bench.settings import Settings
from bench.wsclient import close_clients, open_clients

BASELINE_CONNECTIONS = 10
SETTLE = 0.3  # seconds for the server to finish what the last handshakes started


@contextmanager
def server_process(kind: str, trace: Path | None = None) -> Iterator[tuple[int, int]]:
    """Start ``python -m bench.servers KIND``; yield its pid and port."""
    environment = dict(os.environ)
    if trace is not None:
        environment[TRACE_VARIABLE] = str(trace)
    server = subprocess.Popen(
        [sys.executable, "-m", "bench.servers", kind],
        stdout=subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[2],
        env=environment,
        text=True,
    )
    try:
        assert server.stdout is not None
        yield server.pid, int(server.stdout.readline())
    finally:
        server.terminate()
        server.wait()


def _with_idle_clients(port: int, connections: int, measure: Callable[[], object]) -> None:
    """Open the baseline clients, ``measure()``, open ``connections`` more, ``measure()``."""

    async def main() -> None:
        first = await open_clients(port, BASELINE_CONNECTIONS, b"")
        await asyncio.sleep(SETTLE)
        measure()
        clients = await open_clients(port, connections, b"")
        await asyncio.sleep(SETTLE)
        measure()
        close_clients([*first, *clients])

    asyncio.run(main())


def idle_memory(kind: str, connections: int) -> float:
    """Bytes of server RSS per idle connection."""
    readings: list[int] = []
    with server_process(kind) as (pid, port):
        _with_idle_clients(port, connections, lambda: readings.append(rss_bytes(pid)))
    before, after = readings
    return (after - before) / connections


def allocations(kind: str, connections: int, top: int = 20) -> list[str]:
    """The allocation sites that grew most with ``connections`` idle clients (tracemalloc)."""
    with tempfile.TemporaryDirectory(prefix="lfws-bench-") as name:
        directory = Path(name)
        with server_process(kind, directory) as (pid, port):
            dumps = iter(range(2))

            def snapshot() -> None:
                path = directory / f"{next(dumps)}.snapshot"
                os.kill(pid, signal.SIGUSR1)
                while not path.exists():
                    time.sleep(0.05)  # the clients are idle: blocking the loop is harmless

            _with_idle_clients(port, connections, snapshot)
        before, after = (
            tracemalloc.Snapshot.load(str(directory / f"{n}.snapshot")) for n in (0, 1)
        )
    differences = after.compare_to(before, "lineno")
    total = sum(difference.size_diff for difference in differences)
    lines = [f"traced growth: {total / connections:,.0f} bytes/connection"]
    for difference in differences[:top]:
        frame = difference.traceback[0]
        lines.append(
            f"{difference.size_diff / connections:8,.0f} B/conn "
            f"{difference.count_diff / connections:6.2f} blocks/conn  "
            f"{frame.filename.rsplit('site-packages/', 1)[-1]}:{frame.lineno}"
        )
    return lines


def scenario(settings: Settings) -> Scenario:
    connections = settings.idle_connections
    return Scenario(
        name="memory",
        title="Server memory per idle connection (RSS growth of the server process)",
        unit="bytes/connection",
        better="lower",
        params={"connections": connections, "baseline_connections": BASELINE_CONNECTIONS},
        contenders=[
            Contender("lfws", "lfws asyncio server", lambda: idle_memory("lfws", connections)),
            Contender(
                "websockets", "websockets peer", lambda: idle_memory("websockets", connections)
            ),
        ],
        ratios=[RatioSpec("lfws", "websockets", "lfws memory share", Target("<=", 0.5), "lower")],
        note="Bytes per connection; a ratio below 1 means lfws uses less memory.",
    )
