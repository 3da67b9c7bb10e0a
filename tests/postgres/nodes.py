"""Several ``lfws serve --database`` nodes on one fresh PostgreSQL database, and a load balancer.

:func:`fresh_database` creates a database of its own (LISTEN/NOTIFY is per
database, so nothing else on the test server can talk on its channel).
:class:`Node` is one ``lfws serve`` process that can be SIGKILLed.
:class:`Balancer` is a round-robin TCP load balancer on 127.0.0.1: each
connection goes to the next node that accepts it, so the clients of a
killed node reconnect to the others, as behind nginx or HAProxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from .server import server_dsn

START_TIMEOUT = 20.0  # a loaded 2-core machine may take seconds to import and connect
STOP_TIMEOUT = 10.0


@contextmanager
def fresh_database() -> Iterator[str]:
    """A new, empty database on the test server (its URL), dropped afterwards."""
    import psycopg

    dsn = server_dsn()
    name = f"lfws_nodes_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    parts = urlsplit(dsn)
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE {name} WITH (FORCE)")


class Node:
    """One ``lfws serve --database`` process."""

    def __init__(self, database: str, log_path: Path, *, runtime: str = "asyncio") -> None:
        self.database = database
        self.log_path = log_path
        self.runtime = runtime
        self.port = 0
        self.url = ""
        self._process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        """Start the node and wait for its ``listening on`` line."""
        command = [
            sys.executable,
            "-m",
            "lfws_adapters.cli",
            "serve",
            "--database",
            self.database,
            "--port",
            "0",
            "--runtime",
            self.runtime,
            "--log-level",
            "INFO",
            "--ping-interval",
            "1",
            "--ping-timeout",
            "5",
        ]
        with self.log_path.open("w") as log:
            self._process = await asyncio.create_subprocess_exec(
                *command, stdout=asyncio.subprocess.PIPE, stderr=log
            )
        assert self._process.stdout is not None
        try:
            line = await asyncio.wait_for(self._process.stdout.readline(), START_TIMEOUT)
        except TimeoutError:
            line = b""
        if not line.startswith(b"listening on "):
            await self.kill()
            raise RuntimeError(f"lfws serve did not start:\n{self.log_path.read_text()}")
        self.url = line.decode().split()[-1]
        self.port = int(urlsplit(self.url).port or 0)

    async def kill(self) -> None:
        """SIGKILL the node: no close frames, nothing flushed."""
        await self._reap(signal.SIGKILL)

    async def stop(self) -> None:
        """Stop the node gracefully (SIGTERM)."""
        await self._reap(signal.SIGTERM)

    async def _reap(self, signum: int) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signum)
        try:
            await asyncio.wait_for(process.wait(), STOP_TIMEOUT)
        except TimeoutError:
            process.kill()
            await process.wait()
        assert process.stdout is not None
        await process.stdout.read()


class Balancer:
    """A round-robin TCP load balancer in front of ``nodes`` (asyncio, 127.0.0.1)."""

    def __init__(self, nodes: list[Node]) -> None:
        self.nodes = nodes
        self.port = 0
        self.connections: list[int] = []  # the node index of every connection made
        self._turn = 0
        self._server: asyncio.Server | None = None
        self._pumps: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        """The URL clients connect to."""
        return f"ws://127.0.0.1:{self.port}/sync"

    async def __aenter__(self) -> Balancer:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for pump in list(self._pumps):
            pump.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)

    async def _open_next(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        for _ in range(len(self.nodes)):
            index = self._turn % len(self.nodes)
            self._turn += 1
            node = self.nodes[index]
            if not node.port:
                continue
            try:
                upstream = await asyncio.open_connection("127.0.0.1", node.port)
            except OSError:
                continue  # a dead node: try the next, as a load balancer's health check would
            self.connections.append(index)
            return upstream
        return None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream = await self._open_next()
        if upstream is None:
            writer.transport.abort()
            return
        up_reader, up_writer = upstream
        pumps = [
            asyncio.create_task(self._pump(reader, up_writer)),
            asyncio.create_task(self._pump(up_reader, writer)),
        ]
        self._pumps.update(pumps)
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
                self._pumps.discard(pump)
            writer.transport.abort()
            up_writer.transport.abort()

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
