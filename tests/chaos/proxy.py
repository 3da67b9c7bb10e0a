"""A fault-injecting TCP proxy (asyncio, 127.0.0.1 only) for the chaos tests.

One proxy stands between one client and the server. Every connection it
accepts is forwarded to the server, and while faults are on, each link
draws its next fault from the proxy's seeded :class:`random.Random`:

* **abort**: both sides dropped at once, with a TCP reset (``SO_LINGER`` 0)
  or a plain close;
* **stall**: nothing forwarded for a while, both ways or one way only
  (long stalls are for the heartbeats to find);
* **cut**: the next chunk read is forwarded only in part (at least one byte,
  never all of it), then both sides are aborted: the peer is left with half
  a frame.

:meth:`FaultyProxy.go_offline` drops every link and refuses (resets) new
connections until :meth:`FaultyProxy.go_online`: the client is offline. The
counts of what was injected are in :class:`FaultCounts`.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
from dataclasses import dataclass

__all__ = ["FaultCounts", "FaultPlan", "FaultyProxy"]

_CHUNK = 64 * 1024
_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST


@dataclass(frozen=True, kw_only=True, slots=True)
class FaultPlan:
    """How often and how hard a proxy strikes (times in seconds)."""

    fault_interval: float = 2.0
    """Mean time between faults on one link (exponentially distributed)."""
    abort_weight: float = 0.6
    stall_weight: float = 0.2
    cut_weight: float = 0.2
    reset_probability: float = 0.7
    """Share of aborts that send a TCP reset (the rest close plainly)."""
    stall_seconds: tuple[float, float] = (0.1, 2.5)


@dataclass(kw_only=True, slots=True)
class FaultCounts:
    """What the proxies injected (shared by all the proxies of a run)."""

    connections: int = 0
    aborts: int = 0
    resets: int = 0
    stalls: int = 0
    cuts: int = 0
    refused: int = 0
    """Connections reset at once because the proxy was offline."""
    offline_periods: int = 0
    link_seconds: float = 0.0
    """Time links were up, summed over every link."""


def _drop(writer: asyncio.StreamWriter, *, reset: bool) -> None:
    sock = writer.get_extra_info("socket")
    if reset and sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
    writer.transport.abort()


class _Link:
    """One client connection and its server connection, pumped both ways."""

    def __init__(
        self,
        proxy: FaultyProxy,
        client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        server: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    ) -> None:
        self._proxy = proxy
        self._client = client
        self._server = server
        # One per direction, "up" (to the server) and "down": a stall may block either or both.
        self._flowing = {"up": asyncio.Event(), "down": asyncio.Event()}
        self._flow()
        self._cut_pending = False
        self._dropped = False

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            up = tasks.create_task(self._pump(self._client[0], self._server[1], "up"))
            down = tasks.create_task(self._pump(self._server[0], self._client[1], "down"))
            faults = tasks.create_task(self._strike())
            await asyncio.wait([up, down])
            faults.cancel()

    def drop(self, *, reset: bool = True) -> None:
        """Abort both sides now."""
        if not self._dropped:
            self._dropped = True
            self._flow()  # a stalled pump must see the end
            _drop(self._client[1], reset=reset)
            _drop(self._server[1], reset=reset)

    def _flow(self) -> None:
        for flowing in self._flowing.values():
            flowing.set()

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, direction: str
    ) -> None:
        flowing = self._flowing[direction]
        try:
            while not self._dropped:
                await flowing.wait()
                data = await reader.read(_CHUNK)
                if not data:
                    break
                await flowing.wait()
                if self._dropped:
                    return
                if self._cut_pending and len(data) >= 2:
                    self._cut_pending = False
                    writer.write(data[: self._proxy.rng.randrange(1, len(data))])
                    with contextlib.suppress(ConnectionError):
                        await writer.drain()
                    self._proxy.counts.cuts += 1
                    self.drop()
                    return
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        # One side ended (or failed): end the other side too, after what was read.
        if not self._dropped:
            self._dropped = True
            self._flow()
            for _, other in (self._client, self._server):
                other.close()

    async def _strike(self) -> None:
        proxy = self._proxy
        rng = proxy.rng
        plan = proxy.plan
        while not self._dropped:
            await asyncio.sleep(rng.expovariate(1 / plan.fault_interval))
            if self._dropped or not proxy.faults_on:
                continue
            kind = rng.choices(
                ("abort", "stall", "cut"),
                weights=(plan.abort_weight, plan.stall_weight, plan.cut_weight),
            )[0]
            if kind == "abort":
                reset = rng.random() < plan.reset_probability
                proxy.counts.aborts += 1
                proxy.counts.resets += reset
                self.drop(reset=reset)
            elif kind == "cut":
                self._cut_pending = True
            else:
                proxy.counts.stalls += 1
                # Half the stalls block both ways; the others one way only (acks
                # held while pushes get through, or the reverse).
                directions = rng.choice((("up", "down"), ("up", "down"), ("up",), ("down",)))
                for direction in directions:
                    self._flowing[direction].clear()
                try:
                    await asyncio.sleep(rng.uniform(*plan.stall_seconds))
                finally:
                    self._flow()

    def heal(self) -> None:
        """Stop any stall or pending cut."""
        self._cut_pending = False
        self._flow()


class FaultyProxy:
    """Forward ``127.0.0.1:<port>`` to ``127.0.0.1:<target_port>``, injecting faults."""

    def __init__(
        self, *, target_port: int, rng: random.Random, plan: FaultPlan, counts: FaultCounts
    ) -> None:
        self.target_port = target_port
        self.rng = rng
        self.plan = plan
        self.counts = counts
        self.faults_on = True
        self.offline = False
        self.port = 0
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Start listening on a free port (see :attr:`port`)."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def go_offline(self) -> None:
        """Drop every link and refuse new connections until :meth:`go_online`."""
        if not self.offline:
            self.offline = True
            self.counts.offline_periods += 1
            for link in list(self._links):
                link.drop()

    def go_online(self) -> None:
        """Accept connections again."""
        self.offline = False

    def calm(self) -> None:
        """Stop injecting faults for good: heal stalls, go online."""
        self.faults_on = False
        self.go_online()
        for link in self._links:
            link.heal()

    async def aclose(self) -> None:
        """Stop listening and drop every link."""
        if self._server is not None:
            self._server.close()
        for link in list(self._links):
            link.drop()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            if self.offline:
                self.counts.refused += 1
                _drop(writer, reset=True)
                return
            try:
                server = await asyncio.open_connection("127.0.0.1", self.target_port)
            except OSError:
                _drop(writer, reset=True)  # the server is down: so is the connection
                return
            self.counts.connections += 1
            link = _Link(self, (reader, writer), server)
            self._links.add(link)
            opened = asyncio.get_running_loop().time()
            try:
                await link.run()
            finally:
                self._links.discard(link)
                link.drop(reset=False)
                self.counts.link_seconds += asyncio.get_running_loop().time() - opened
        finally:
            self._tasks.discard(task)
