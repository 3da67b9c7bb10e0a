"""A server alone in its process, for measuring its memory: ``python -m bench.servers KIND``.

KIND is ``lfws`` (the asyncio adapter, in-memory log) or ``websockets``
(the peer). It listens on 127.0.0.1, prints its port, and serves until
terminated. With ``BENCH_TRACEMALLOC=DIR`` in its environment it traces
allocations and, on each SIGUSR1, dumps a tracemalloc snapshot to
``DIR/0.snapshot``, ``DIR/1.snapshot``, ...
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import os
import signal
import sys
import tracemalloc
from pathlib import Path

from bench.lfws_side import OPTIONS
from bench.peer import MemoryStore, serve_peer
from lfws_adapters.asyncio import serve
from lfws_adapters.event_log import InMemoryEventLog

KINDS = ("lfws", "websockets")
TRACE_VARIABLE = "BENCH_TRACEMALLOC"


def rss_bytes(pid: int) -> int:
    """The resident set size of process ``pid`` (Linux ``/proc``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def _dump_snapshots_on_signal(directory: Path) -> None:
    tracemalloc.start(8)
    numbers = itertools.count()

    def dump() -> None:
        gc.collect()
        path = directory / f"{next(numbers)}.snapshot"
        tracemalloc.take_snapshot().dump(str(path.with_suffix(".part")))
        path.with_suffix(".part").rename(path)  # whole once visible

    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, dump)


async def _serve(kind: str) -> None:
    if trace := os.environ.get(TRACE_VARIABLE):
        _dump_snapshots_on_signal(Path(trace))
    if kind == "lfws":
        async with serve(event_log=InMemoryEventLog(), port=0, options=OPTIONS) as server:
            print(server.port, flush=True)
            await server.serve_forever()
    else:
        async with serve_peer(MemoryStore()) as (_, port):
            print(port, flush=True)
            await asyncio.get_running_loop().create_future()


def main() -> None:
    kind = sys.argv[1] if len(sys.argv) == 2 else ""
    if kind not in KINDS:
        raise SystemExit(f"usage: python -m bench.servers {{{','.join(KINDS)}}}")
    asyncio.run(_serve(kind))


if __name__ == "__main__":
    main()
