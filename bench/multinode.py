"""Multi-node on PostgreSQL against one node on SQLite: ``python -m bench.multinode``.

Every configuration runs real ``lfws serve`` processes (asyncio runtime) on
127.0.0.1, and the same clients (the ``websockets`` library) measure them:

* **push throughput**: writer connections, spread over the nodes, push as
  fast as the acks come back (a window of unacknowledged messages each),
  either one event per ``push_event`` or ``push_events_batch`` messages;
  the figure is acknowledged events per second;
* **latency**: one writer pushes one event at a time; a reader on another
  node (the same node for a single node) times from the send to the
  ``events`` message: the cross-node latency, NOTIFY and fetch included.

The configurations: ``sqlite`` (one node, ``--db``), ``postgres x1`` (one
node, ``--database``), ``postgres x2`` and ``x3`` (several nodes on one
database). PostgreSQL comes from ``--dsn``, else ``LFWS_BENCH_POSTGRES_DSN``
or ``LFWS_TEST_POSTGRES_DSN`` (``source .ci/postgres.sh`` starts a throwaway
server; mind that it runs with ``fsync=off``); each run gets a fresh database.
Ratios are against ``sqlite``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection, connect

START_TIMEOUT = 30.0


@dataclass(frozen=True, kw_only=True, slots=True)
class Settings:
    writers: int = 4
    events_per_writer: int = 1000
    batch: int = 50
    window: int = 8
    latency_samples: int = 300
    rounds: int = 3


QUICK = Settings(events_per_writer=300, latency_samples=50, rounds=1)


# --- servers ---------------------------------------------------------------------


@asynccontextmanager
async def nodes(count: int, storage: list[str], log_dir: Path) -> AsyncIterator[list[str]]:
    """Run ``count`` ``lfws serve`` processes with ``storage`` arguments; yield their URLs."""
    processes: list[asyncio.subprocess.Process] = []
    urls: list[str] = []
    try:
        for number in range(count):
            with (log_dir / f"node-{number}.log").open("w") as log:
                process = await asyncio.create_subprocess_exec(
                    sys.executable,
                    *("-m", "lfws_adapters.cli", "serve", "--port", "0", *storage),
                    *("--log-level", "WARNING"),
                    stdout=asyncio.subprocess.PIPE,
                    stderr=log,
                )
            processes.append(process)
            assert process.stdout is not None
            line = await asyncio.wait_for(process.stdout.readline(), START_TIMEOUT)
            if not line.startswith(b"listening on "):
                raise RuntimeError(f"lfws serve did not start: {line!r}")
            urls.append(line.decode().split()[-1])
        yield urls
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            await process.wait()


@asynccontextmanager
async def fresh_database(dsn: str) -> AsyncIterator[str]:
    """A new database on the server of ``dsn`` (its URL), dropped afterwards."""
    import psycopg

    name = f"lfws_bench_{uuid.uuid4().hex[:12]}"
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as admin:
        await admin.execute(f"CREATE DATABASE {name}")
    try:
        yield urlunsplit(urlsplit(dsn)._replace(path=f"/{name}"))
    finally:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as admin:
            await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")


@asynccontextmanager
async def configuration(
    kind: str, count: int, dsn: str | None, log_dir: Path
) -> AsyncIterator[list[str]]:
    """The URLs of ``count`` nodes on ``kind`` storage (``sqlite`` or ``postgres``)."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as directory:
            async with nodes(count, ["--db", f"{directory}/lfws.db"], log_dir) as urls:
                yield urls
        return
    assert dsn is not None
    async with (
        fresh_database(dsn) as database,
        nodes(count, ["--database", database], log_dir) as urls,
    ):
        yield urls


# --- clients ---------------------------------------------------------------------


def wire_event(event_id: str) -> dict[str, Any]:
    return {
        "_event_id": event_id,
        "_operation": 0,
        "_created_at": "2026-01-01T00:00:00.000Z",
        "_data_id": event_id,
        "_data": {"title": "a todo of ordinary length", "done": False},
    }


async def authenticated(url: str) -> ClientConnection:
    # An unbounded queue: a writer that is done still reads, so closing never waits.
    ws = await connect(url, max_size=None, max_queue=None, compression=None)
    await ws.send(json.dumps({"type": "auth", "token": "bench"}))
    assert json.loads(await ws.recv())["type"] == "auth_success"
    return ws


async def write(
    ws: ClientConnection, prefix: str, repository: str, settings: Settings, batch: int
) -> None:
    """Push ``events_per_writer`` events, ``batch`` per message, ``window`` messages in flight.

    ``events_per_writer`` must be a multiple of ``batch``.
    """
    messages = []
    for start in range(0, settings.events_per_writer, batch):
        events = [wire_event(f"{prefix}-{k}") for k in range(start, start + batch)]
        if batch == 1:
            messages.append({"type": "push_event", "repository": repository, "event": events[0]})
        else:
            messages.append(
                {"type": "push_events_batch", "repository": repository, "events": events}
            )
    # The server may answer several pipelined pushes with one ack: count ids.
    total = settings.events_per_writer
    window = settings.window * batch
    sent = acked = 0
    progressed = asyncio.Event()

    async def read_acks() -> None:
        nonlocal acked
        async for raw in ws:
            message = json.loads(raw)
            if message["type"] == "ack":
                acked += len(message["eventIds"])
                progressed.set()
                if acked >= total:
                    return

    reader = asyncio.create_task(read_acks())
    for message in messages:
        while sent - acked + batch > window:
            progressed.clear()
            await progressed.wait()
        await ws.send(json.dumps(message))
        sent += batch
    await reader


async def throughput(urls: list[str], settings: Settings, batch: int, *, spread: bool) -> float:
    """Acknowledged events per second, writers spread round robin over ``urls``.

    The writers share one repository, or with ``spread`` each has its own.
    """
    sockets = [await authenticated(urls[n % len(urls)]) for n in range(settings.writers)]
    run = uuid.uuid4().hex[:8]
    try:
        started = time.perf_counter()
        await asyncio.gather(
            *(
                write(ws, f"{run}-{n}", f"todos-{n}" if spread else "todos", settings, batch)
                for n, ws in enumerate(sockets)
            )
        )
        elapsed = time.perf_counter() - started
    finally:
        for ws in sockets:
            await ws.close()
    return settings.writers * settings.events_per_writer / elapsed


async def latency(urls: list[str], settings: Settings) -> list[float]:
    """Seconds from a push on the first node to its broadcast on the last, per sample."""
    writer = await authenticated(urls[0])
    reader = await authenticated(urls[-1])
    run = uuid.uuid4().hex[:8]
    samples = []
    try:
        for k in range(settings.latency_samples):
            event_id = f"{run}-{k}"
            started = time.perf_counter()
            await writer.send(
                json.dumps(
                    {"type": "push_event", "repository": "todos", "event": wire_event(event_id)}
                )
            )
            while True:
                message = json.loads(await reader.recv())
                if message["type"] == "events" and any(
                    e["_event_id"] == event_id for e in message["events"]
                ):
                    break
            samples.append(time.perf_counter() - started)
            while json.loads(await writer.recv())["type"] != "ack":
                pass  # a broadcast of an earlier writer's events
            await asyncio.sleep(0.002)
    finally:
        await writer.close()
        await reader.close()
    return samples


# --- the run ---------------------------------------------------------------------

CONFIGURATIONS = (("sqlite", 1), ("postgres", 1), ("postgres", 2), ("postgres", 3))


async def measure(kind: str, count: int, dsn: str | None, settings: Settings) -> dict[str, Any]:
    single: list[float] = []
    spread: list[float] = []
    batched: list[float] = []
    delays: list[float] = []
    with tempfile.TemporaryDirectory() as logs:
        for _ in range(settings.rounds):
            async with configuration(kind, count, dsn, Path(logs)) as urls:
                await latency(urls, Settings(latency_samples=10))  # warm up
                delays.extend(await latency(urls, settings))
                single.append(await throughput(urls, settings, 1, spread=False))
                spread.append(await throughput(urls, settings, 1, spread=True))
                batched.append(await throughput(urls, settings, settings.batch, spread=False))
    delays.sort()

    def quantile(q: float) -> float:
        return delays[min(len(delays) - 1, int(q * len(delays)))] * 1000

    return {
        "configuration": f"{kind} x{count}",
        "push_event_per_s": statistics.median(single),
        "push_event_spread_per_s": statistics.median(spread),
        "batch_events_per_s": statistics.median(batched),
        "latency_p50_ms": quantile(0.5),
        "latency_p90_ms": quantile(0.9),
        "latency_p99_ms": quantile(0.99),
    }


def table(results: list[dict[str, Any]], settings: Settings) -> str:
    base = results[0]
    lines = [
        "| configuration | push_event, one repository | push_event, a repository per writer"
        f" | push_events_batch ({settings.batch}) | latency p50 | p90 | p99 |",
        "|---|---|---|---|---|---|---|",
    ]

    def ratio(result: dict[str, Any], key: str, fmt: Callable[[float], str]) -> str:
        return f"{fmt(result[key])} ({result[key] / base[key]:.2f}x)"

    for result in results:
        lines.append(
            f"| {result['configuration']} "
            f"| {ratio(result, 'push_event_per_s', lambda v: f'{v:,.0f}')} "
            f"| {ratio(result, 'push_event_spread_per_s', lambda v: f'{v:,.0f}')} "
            f"| {ratio(result, 'batch_events_per_s', lambda v: f'{v:,.0f}')} "
            f"| {ratio(result, 'latency_p50_ms', lambda v: f'{v:.2f} ms')} "
            f"| {result['latency_p90_ms']:.2f} ms | {result['latency_p99_ms']:.2f} ms |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.multinode", description=__doc__)
    parser.add_argument("--dsn", help="PostgreSQL server to create the databases on")
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the figures")
    args = parser.parse_args(argv)
    dsn = (
        args.dsn
        or os.environ.get("LFWS_BENCH_POSTGRES_DSN")
        or os.environ.get("LFWS_TEST_POSTGRES_DSN")
    )
    settings = QUICK if args.quick else Settings()
    configurations = [c for c in CONFIGURATIONS if dsn or c[0] == "sqlite"]
    if not dsn:
        print("no PostgreSQL (--dsn, or `source .ci/postgres.sh`): SQLite only", file=sys.stderr)
    results = []
    for kind, count in configurations:
        print(f"measuring {kind} x{count} ...", file=sys.stderr, flush=True)
        results.append(asyncio.run(measure(kind, count, dsn, settings)))
    print(
        f"events/s acknowledged: {settings.writers} writers,"
        f" {settings.events_per_writer} events each,"
        f" window {settings.window}; {settings.latency_samples} latency samples x"
        f" {settings.rounds} rounds; {os.cpu_count()} CPUs"
    )
    print(table(results, settings))
    if args.json:
        args.json.write_text(json.dumps({"settings": vars_of(settings), "results": results}))
    return 0


def vars_of(settings: Settings) -> dict[str, int]:
    return {name: getattr(settings, name) for name in Settings.__dataclass_fields__}


if __name__ == "__main__":
    sys.exit(main())
