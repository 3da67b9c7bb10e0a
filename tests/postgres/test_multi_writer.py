"""The hammer: writers in three processes, one reader by cursor, nothing ever skipped.

Three writer processes (two on asyncio, one on trio), each with its own
connection pool like separate server nodes, store random batches into the
same three repositories at once, drawing event ids from one small pool per
repository so the same ids are pushed by several writers. Meanwhile a reader
in this process pages through every repository by cursor, as a client does,
and a ChangeFeed follows the pointers.

What it proves, per repository:

* every page the reader got started right after its cursor and had no hole:
  whenever sequence N was visible, every sequence below it already was, so
  a cursor never moves past an event that commits later;
* sequences are gap-free (1..N) and each writer's successive stores got
  increasing sequences (sequence order is commit order);
* every id pushed is stored exactly once, whichever writers pushed it, and
  the writers that did not store it were told it is a duplicate;
* the feed's ranges chain from 0 to N with no gap, so a node following it
  fetches every event another node stored.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from lfws_adapters.postgres_change_feed import Change, ChangeFeed
from lfws_adapters.postgres_event_log import PostgresEventLog

from .server import Database, fresh_schema
from .writer import REPOSITORIES

WRITER = Path(__file__).with_name("writer.py")
BACKENDS = ("asyncio", "trio", "asyncio")
STORES_PER_WRITER = 250
PAGE = 7
TIMEOUT = 60.0


@dataclass
class Reading:
    """What the reader and the feed saw while the writers ran."""

    seen: dict[str, list[str]] = field(default_factory=lambda: {r: [] for r in REPOSITORIES})
    holes: list[str] = field(default_factory=list)
    pages_while_writing: int = 0
    changes: list[Change] = field(default_factory=list)
    results: list[list[dict[str, Any]]] = field(default_factory=list)


async def read_while_writing(database: Database, writers: list[subprocess.Popen[str]]) -> Reading:
    reading = Reading()
    log = await PostgresEventLog.open(database.dsn, channel=database.channel, pool_size=2)

    async def collect(writer: subprocess.Popen[str]) -> None:
        assert writer.stdout is not None
        line = await anyio.to_thread.run_sync(writer.stdout.readline)
        reading.results.append(json.loads(line))

    async def read_page(repository: str) -> int:
        seen = reading.seen[repository]
        cursor = len(seen)
        page = await log.fetch(repository, cursor, PAGE)
        got = [e.server_sequence for e in page]
        if got != list(range(cursor + 1, cursor + 1 + len(page))):
            reading.holes.append(f"{repository}: after {cursor} got {got}")
        seen.extend(e.event_id for e in page)
        return len(page)

    async def follow(feed: ChangeFeed) -> None:
        async for change in feed:
            reading.changes.append(change)

    try:
        with anyio.fail_after(TIMEOUT):
            async with (
                ChangeFeed(database.dsn, channel=database.channel, cursors={}) as feed,
                anyio.create_task_group() as group,
            ):
                group.start_soon(follow, feed)
                async with anyio.create_task_group() as collecting:
                    for writer in writers:
                        collecting.start_soon(collect, writer)
                    for writer in writers:
                        assert writer.stdin is not None
                        writer.stdin.write("go\n")
                        writer.stdin.flush()
                    while len(reading.results) < len(writers):
                        for repository in REPOSITORIES:
                            if await read_page(repository):
                                reading.pages_while_writing += 1
                # The writers are done: read what is left.
                for repository in REPOSITORIES:
                    while await read_page(repository):
                        pass
                final = {r: len(seen) for r, seen in reading.seen.items()}
                while feed.cursors != final:
                    await anyio.sleep(0.01)
                group.cancel_scope.cancel()
    finally:
        await log.aclose()
    return reading


def start_writer(database: Database, backend: str, seed: int) -> subprocess.Popen[str]:
    arguments = [database.dsn, database.channel, backend, str(seed), str(STORES_PER_WRITER)]
    return subprocess.Popen(
        [sys.executable, str(WRITER), *arguments],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def test_concurrent_writers_never_let_a_cursor_reader_skip_an_event() -> None:
    with fresh_schema() as database:
        # The schema exists before the feed starts (the writers would race to create it).
        anyio.run(PostgresEventLog(database.dsn, channel=database.channel).aclose)
        writers = [start_writer(database, b, seed) for seed, b in enumerate(BACKENDS, 1)]
        try:
            for writer in writers:
                assert writer.stdout is not None
                assert writer.stdout.readline() == "ready\n"
            reading = anyio.run(read_while_writing, database, writers)
        finally:
            for writer in writers:
                try:
                    writer.communicate(timeout=TIMEOUT)
                except subprocess.TimeoutExpired:
                    writer.kill()
                    writer.communicate()
        assert [writer.returncode for writer in writers] == [0, 0, 0]
        rows = database.execute(
            "SELECT repository, sequence, event_id FROM lfws_events ORDER BY repository, sequence"
        )

    # The reader never saw a hole, and it really read while the writers wrote.
    assert reading.holes == []
    assert reading.pages_while_writing >= 10

    # Gap-free per repository, and the reader's view is the database's.
    stored_rows: dict[str, list[str]] = defaultdict(list)
    for repository, sequence, event_id in rows:
        stored_rows[repository].append(event_id)
        assert sequence == len(stored_rows[repository])
    assert stored_rows == reading.seen

    # Each pushed id is stored exactly once; every other push of it is a duplicate.
    stored_by: dict[tuple[str, str], int] = {}
    storings: Counter[tuple[str, str]] = Counter()
    pushes = duplicates = 0
    cross_writer_duplicates = 0
    for writer_number, calls in enumerate(reading.results):
        for call in calls:
            repository = call["repository"]
            for event_id, sequence in call["stored"]:
                storings[repository, event_id] += 1
                stored_by[repository, event_id] = writer_number
                assert stored_rows[repository][sequence - 1] == event_id
            pushes += len(call["stored"]) + len(call["duplicates"])
            duplicates += len(call["duplicates"])
    for calls in reading.results:
        for call in calls:
            for event_id in call["duplicates"]:
                assert (call["repository"], event_id) in stored_by
    for writer_number, calls in enumerate(reading.results):
        for call in calls:
            for event_id in call["duplicates"]:
                cross_writer_duplicates += stored_by[call["repository"], event_id] != writer_number
    assert set(storings.values()) == {1}
    assert len(storings) == len(rows) == pushes - duplicates
    assert cross_writer_duplicates > 0

    # A writer's later store never got a smaller sequence: commit order.
    for calls in reading.results:
        for repository in REPOSITORIES:
            mine = [s for c in calls if c["repository"] == repository for _, s in c["stored"]]
            assert mine == sorted(mine)

    # The feed's ranges chain from 0 to the end in every repository.
    for repository in REPOSITORIES:
        ranges = [c for c in reading.changes if c.repository == repository]
        assert ranges[0].after_sequence == 0
        assert ranges[-1].up_to_sequence == len(stored_rows[repository])
        for before, after in itertools.pairwise(ranges):
            assert after.after_sequence == before.up_to_sequence
