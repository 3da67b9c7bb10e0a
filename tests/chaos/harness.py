"""Chaos over real sockets: clients, a faulty proxy each, and a server that gets SIGKILLed.

:func:`run_chaos` runs, in one asyncio loop:

* N apps on the public client API (``LocalFirstClient``, ``Repository``,
  ``SqliteLocalFirstStorage`` in a file of their own, ``WebSocketSyncStrategy``),
  editing all the time (shared document ids, so edits conflict), offline too;
* a :class:`~tests.chaos.proxy.FaultyProxy` per app between it and the
  server, aborting, stalling and cutting links mid-frame, and now and then
  going offline (refusing connections) for a while;
* ``lfws serve`` in a child process, SIGKILLed and restarted on the same
  database and port every few seconds, on each runtime in turn;
* a monitor checking, every few seconds, that no synced event is missing from
  the log, no cursor skips an event, and the log has no duplicate and no gap
  (:func:`~tests.chaos.checker.safety_violations`).

Then the faults and the edits stop, and the replicas must converge (every
outbox empty, every replica's events and documents those of the log) within
``convergence_timeout``. Finally everything is stopped and the files are
checked once more. Every random choice comes from ``random.Random(seed)``
(split per proxy, per app, for the killer), so a failing seed replays the
same schedule of faults and edits, though not the same interleaving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from lfws_adapters import LocalFirstClient, Repository, WebSocketSyncStrategy
from lfws_adapters.sqlite_local_storage import SqliteLocalFirstStorage

from .checker import (
    Replica,
    ServerLog,
    Violation,
    convergence_violations,
    read_replica,
    read_server_log,
    safety_violations,
)
from .proxy import FaultCounts, FaultPlan, FaultyProxy
from .server_process import ServerProcess, free_port

__all__ = ["ChaosConfig", "ChaosReport", "run_chaos"]

REPOSITORIES = ("todos", "notes")
_POLL = 0.2  # seconds between convergence checks


@dataclass(frozen=True, kw_only=True, slots=True)
class ChaosConfig:
    """One chaos run (times in seconds)."""

    seed: int = 0
    clients: int = 8
    seconds: float = 50.0
    """How long faults and edits go on (at least)."""
    min_aborts: int = 0
    min_kills: int = 0
    max_seconds: float | None = None
    """Go on after ``seconds`` until ``min_aborts`` and ``min_kills`` are reached, up to this.

    So that a loaded machine (slow server starts, late timers) still gets
    the chaos asked for, and a test can still fail if it did not.
    """
    convergence_timeout: float = 10.0
    edit_interval: float = 0.15
    """Mean time between two edits of one app."""
    documents: int = 20
    """Document ids per repository, shared by every app."""
    delete_probability: float = 0.15
    kill_interval: tuple[float, float] = (1.5, 4.0)
    """Time the server runs between being up and the next SIGKILL."""
    downtime: tuple[float, float] = (0.0, 0.6)
    """Time the server stays down after a SIGKILL (its start-up comes on top)."""
    offline_interval: float = 20.0
    """Mean time between two offline periods of one app."""
    offline_seconds: tuple[float, float] = (0.5, 4.0)
    plan: FaultPlan = field(default_factory=lambda: FaultPlan(fault_interval=0.6))
    runtimes: tuple[str, ...] = ("asyncio", "trio", "anyio")
    """Server runtimes, in turn at each restart."""
    bug: str | None = None
    """A planted bug (see ``broken_server.py``); ``None`` runs the real ``lfws serve``."""


@dataclass(kw_only=True, slots=True)
class ChaosReport:
    """What a run did and found."""

    config: ChaosConfig
    events_created: int = 0
    server_events: int = 0
    faults: FaultCounts = field(default_factory=FaultCounts)
    kills: int = 0
    server_runtimes: list[str] = field(default_factory=list)
    server_start_seconds: list[float] = field(default_factory=list)
    chaos_seconds: float = 0.0
    convergence: float | None = None
    """Seconds from the end of the faults to every replica equal to the log."""
    violations: list[Violation] = field(default_factory=list)
    errors_logged: list[str] = field(default_factory=list)
    wall: float = 0.0

    @property
    def ok(self) -> bool:
        """Whether every promise held."""
        return not self.violations

    def kinds(self) -> set[str]:
        """The kinds of violation found."""
        return {violation.kind for violation in self.violations}

    def summary(self) -> str:
        """The figures, and the first violations."""
        c, f = self.config, self.faults
        runtimes = {name: self.server_runtimes.count(name) for name in c.runtimes}
        lines = [
            f"seed {c.seed}: {c.clients} clients, {self.chaos_seconds:.1f} s of chaos"
            + (f", planted bug {c.bug}" if c.bug else "")
            + f", {self.wall:.1f} s wall",
            f"events: {self.events_created} created, {self.server_events} in the server log",
            f"faults: {f.aborts} aborts ({f.resets} resets), {f.stalls} stalls, "
            f"{f.cuts} mid-frame cuts, {f.offline_periods} offline periods "
            f"({f.refused} connections refused), {self.kills} SIGKILLs; "
            f"{f.connections} connections up {f.link_seconds:.0f} s in all; "
            f"server starts per runtime {runtimes}, "
            f"slowest start {max(self.server_start_seconds, default=0):.1f} s",
            "convergence after the faults stopped: "
            + ("none" if self.convergence is None else f"{self.convergence:.2f} s"),
            f"errors logged by lfws: {len(self.errors_logged)}",
            f"violations: {len(self.violations)}",
        ]
        for kind in sorted(self.kinds()):
            of_kind = [v for v in self.violations if v.kind == kind]
            lines.append(f"  {kind}: {len(of_kind)}, e.g.")
            lines += [f"    {violation.detail}" for violation in of_kind[:3]]
        return "\n".join(lines)


class _ErrorLog(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(f"{record.name}: {record.getMessage()}")


@contextlib.contextmanager
def _errors_logged() -> Iterator[list[str]]:
    handler = _ErrorLog()
    logger = logging.getLogger("lfws")
    logger.addHandler(handler)
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)


class _App:
    """One local-first app and its proxy."""

    def __init__(
        self, index: int, workdir: Path, proxy: FaultyProxy, rng: random.Random, config: ChaosConfig
    ) -> None:
        self.name = f"client-{index}"
        self.path = workdir / f"{self.name}.db"
        self.proxy = proxy
        self.rng = rng
        self.config = config
        # Every other app syncs a second repository too: cursors per repository.
        names = REPOSITORIES if index % 2 == 0 else REPOSITORIES[:1]
        self.repositories = [Repository(name) for name in names]
        self.strategy = WebSocketSyncStrategy(
            f"ws://127.0.0.1:{proxy.port}/sync",
            reconnect_delay=0.05,
            max_reconnect_delay=0.5,
            heartbeat_interval=1.0,
            pong_timeout=1.5,
            connect_timeout=2.0,
            auth_timeout=2.0,
        )
        self.client = LocalFirstClient(
            repositories=self.repositories,
            local_storage=SqliteLocalFirstStorage(self.path),
            sync_strategies=[self.strategy],
        )
        self.created = 0

    def replica(self) -> Replica:
        return read_replica(self.path, self.name, [r.name for r in self.repositories])

    async def start(self) -> None:
        await self.client.initialize()
        await self.strategy.start()

    async def edit(self, stop: asyncio.Event) -> None:
        rng, config = self.rng, self.config
        while not await _stopped(stop, rng.expovariate(1 / config.edit_interval)):
            repository = rng.choice(self.repositories)
            document = f"doc-{rng.randrange(config.documents)}"
            if rng.random() < config.delete_probability:
                event = await repository.delete(document)
            else:
                event = await repository.upsert(
                    {"id": document, "by": self.name, "n": self.created}
                )
            self.created += event is not None

    async def go_offline_now_and_then(self, stop: asyncio.Event) -> None:
        rng, config = self.rng, self.config
        while not await _stopped(stop, rng.expovariate(1 / config.offline_interval)):
            self.proxy.go_offline()
            await _stopped(stop, rng.uniform(*config.offline_seconds))
            self.proxy.go_online()


async def _stopped(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds``; return whether ``stop`` was set meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    return stop.is_set()


async def _kill_now_and_then(
    server: ServerProcess, rng: random.Random, config: ChaosConfig, stop: asyncio.Event
) -> None:
    runtimes = config.runtimes
    while not await _stopped(stop, rng.uniform(*config.kill_interval)):
        await server.kill()
        await asyncio.sleep(rng.uniform(*config.downtime))
        await server.start(runtimes[server.kills % len(runtimes)])


def _snapshot(apps: list[_App]) -> tuple[list[Replica], ServerLog]:
    # Replicas first: every event they hold at or below a cursor was committed before.
    replicas = [app.replica() for app in apps]
    return replicas, read_server_log(apps[0].path.with_name("server.db"))


async def _monitor(apps: list[_App], found: set[Violation], stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    took = 0.0
    # Reading every store takes longer as they grow: keep it a small share of the run.
    while not await _stopped(stop, max(2.0, 5 * took)):
        began = loop.time()
        try:
            replicas, log = await asyncio.to_thread(_snapshot, apps)
        except sqlite3.OperationalError:
            continue  # a killed server's WAL may need recovery, which a reader cannot do
        took = loop.time() - began
        found.update(safety_violations(log, replicas))


async def _converge(apps: list[_App], timeout: float) -> tuple[float | None, list[Violation]]:
    """Wait until a snapshot shows every replica equal to the log; return how long it took."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    while True:
        # What a snapshot shows held when it began, or later: count from then.
        elapsed = loop.time() - started
        try:
            replicas, log = await asyncio.to_thread(_snapshot, apps)
        except sqlite3.OperationalError as error:  # busy: read again
            pending = [Violation("unreadable", str(error))]
        else:
            pending = await asyncio.to_thread(convergence_violations, log, replicas)
        if not pending and elapsed <= timeout:
            return elapsed, []
        if elapsed > timeout:
            return None, pending
        await asyncio.sleep(_POLL)


async def _run(config: ChaosConfig, workdir: Path, report: ChaosReport) -> None:
    rng = random.Random(config.seed)
    runtimes = config.runtimes
    server = ServerProcess(
        db=workdir / "server.db", port=free_port(), log_dir=workdir, bug=config.bug
    )
    proxies = [
        FaultyProxy(
            target_port=server.port,
            rng=random.Random(rng.getrandbits(64)),
            plan=config.plan,
            counts=report.faults,
        )
        for _ in range(config.clients)
    ]
    apps: list[_App] = []
    found: set[Violation] = set()
    stop = asyncio.Event()
    try:
        await server.start(runtimes[0])
        for index, proxy in enumerate(proxies):
            await proxy.start()
            apps.append(_App(index, workdir, proxy, random.Random(rng.getrandbits(64)), config))
        for app in apps:
            await app.start()
        killer_rng = random.Random(rng.getrandbits(64))
        async with asyncio.TaskGroup() as tasks:
            for app in apps:
                tasks.create_task(app.edit(stop))
                tasks.create_task(app.go_offline_now_and_then(stop))
            tasks.create_task(_kill_now_and_then(server, killer_rng, config, stop))
            tasks.create_task(_monitor(apps, found, stop))
            began = asyncio.get_running_loop().time()
            await asyncio.sleep(config.seconds)
            deadline = began + (config.max_seconds or config.seconds)
            while (
                report.faults.aborts < config.min_aborts or server.kills < config.min_kills
            ) and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.1)
            report.chaos_seconds = asyncio.get_running_loop().time() - began
            stop.set()
        for proxy in proxies:
            proxy.calm()
        if not server.running:
            await server.start(runtimes[0])
        report.convergence, pending = await _converge(apps, config.convergence_timeout)
        if report.convergence is None:
            found.add(
                Violation(
                    "not-converged",
                    f"{config.convergence_timeout:g} s after the faults: "
                    + "; ".join(map(str, sorted(pending)[:5])),
                )
            )
    finally:
        await asyncio.gather(*(app.client.dispose() for app in apps), return_exceptions=True)
        await server.stop()
        for proxy in proxies:
            await proxy.aclose()
        report.kills = server.kills
        report.server_runtimes = server.runtimes
        report.server_start_seconds = server.start_seconds
        report.events_created = sum(app.created for app in apps)
    if apps:
        replicas, log = _snapshot(apps)
        report.server_events = log.size
        found.update(safety_violations(log, replicas))
        found.update(convergence_violations(log, replicas))
    report.violations = sorted(found)


async def run_chaos(config: ChaosConfig, workdir: Path) -> ChaosReport:
    """Run chaos in ``workdir`` (databases and server logs go there); return the report."""
    report = ChaosReport(config=config)
    started = time.perf_counter()
    with _errors_logged() as errors:
        await _run(config, workdir, report)
    report.errors_logged = errors
    report.wall = time.perf_counter() - started
    return report
