"""``lfws serve`` over a deliberately broken event log, for the planted-bug chaos tests.

    python tests/chaos/broken_server.py BUG [lfws serve options]

BUG is one of:

* ``dedupe-off``: every pushed event is stored, replays included (the
  unique index on event ids is dropped from the file, so the rows really
  are there twice);
* ``ack-before-commit``: a store returns (so the ack and the broadcast go
  out) while its transaction is still open; the commit follows
  :data:`COMMIT_DELAY` seconds later, so a SIGKILL in between loses acked
  events. It needs ``--runtime asyncio`` (the commit is a loop timer).

Everything else is the real server: :func:`lfws_adapters.cli.main` with the
event log class replaced.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import sys
from collections.abc import Sequence

from lfws_adapters import cli
from lfws_adapters.event_log import StoreResult
from lfws_adapters.sqlite_event_log import SqliteEventLog
from lfws_core.events import SyncEvent, event_to_json, format_timestamp

COMMIT_DELAY = 0.4

_LOOSE_EVENTS = (
    """
    CREATE TABLE loose_events (
        repository TEXT NOT NULL,
        sequence INTEGER NOT NULL,
        event_id TEXT NOT NULL,
        created_at TEXT NOT NULL,
        payload TEXT NOT NULL,
        PRIMARY KEY (repository, sequence)
    )
    """,
    "INSERT INTO loose_events SELECT repository, sequence, event_id, created_at, payload"
    " FROM events",
    "DROP TABLE events",
    "ALTER TABLE loose_events RENAME TO events",
)

_INSERT = (
    "INSERT INTO events (repository, sequence, event_id, created_at, payload)"
    " VALUES (?, ?, ?, ?, ?)"
)
_INSERT_NEW = _INSERT + " ON CONFLICT (repository, event_id) DO NOTHING"
_ADVANCE = (
    "INSERT INTO repositories (repository, last_sequence) VALUES (?, ?)"
    " ON CONFLICT (repository) DO UPDATE SET last_sequence = excluded.last_sequence"
)


def _payload(event: SyncEvent) -> str:
    obj = event_to_json(event)
    obj.pop("serverSequence", None)
    return json.dumps(obj, separators=(",", ":"))


class BrokenEventLog(SqliteEventLog):
    """A :class:`SqliteEventLog` whose writes go through a second, buggy connection.

    Reads (fetch, stats) are the real ones; they see what was committed.
    """

    dedupe = True
    commit_delay = 0.0

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__(path)
        self._writer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._writer.execute("PRAGMA busy_timeout = 5000")
        if not self.dedupe and self._has_unique_ids():
            self._writer.execute("BEGIN IMMEDIATE")
            for statement in _LOOSE_EVENTS:
                self._writer.execute(statement)
            self._writer.execute("COMMIT")

    def _has_unique_ids(self) -> bool:
        rows = self._writer.execute("PRAGMA index_list(events)").fetchall()
        return any(unique for _, _, unique, *_ in rows)

    def store_now(self, repository: str, events: Sequence[SyncEvent]) -> StoreResult:
        if not events:
            return StoreResult(stored=(), duplicates=())
        writer = self._writer
        if not writer.in_transaction:
            writer.execute("BEGIN IMMEDIATE")
            if self.commit_delay:
                asyncio.get_running_loop().call_later(self.commit_delay, self._commit)
        (last,) = writer.execute(
            "SELECT coalesce(max(last_sequence), 0) FROM repositories WHERE repository = ?",
            (repository,),
        ).fetchone()
        stored: list[SyncEvent] = []
        duplicates: list[str] = []
        insert = _INSERT_NEW if self.dedupe else _INSERT
        for event in events:
            row = (repository, last + 1, event.event_id, format_timestamp(event.created_at))
            if writer.execute(insert, (*row, _payload(event))).rowcount:
                last += 1
                stored.append(event.with_sequence(last))
            else:
                duplicates.append(event.event_id)
        writer.execute(_ADVANCE, (repository, last))
        if not self.commit_delay:
            self._commit()
        return StoreResult(stored=tuple(stored), duplicates=tuple(duplicates))

    async def store(self, repository: str, events: Sequence[SyncEvent]) -> StoreResult:
        return self.store_now(repository, events)

    def _commit(self) -> None:
        if self._writer.in_transaction:
            self._writer.execute("COMMIT")

    async def aclose(self) -> None:
        self._commit()
        self._writer.close()
        await super().aclose()


class DedupeOff(BrokenEventLog):
    dedupe = False


class AckBeforeCommit(BrokenEventLog):
    commit_delay = COMMIT_DELAY


BUGS: dict[str, type[BrokenEventLog]] = {
    "dedupe-off": DedupeOff,
    "ack-before-commit": AckBeforeCommit,
}


def main(argv: list[str]) -> int:
    bug, *serve_options = argv
    cli.SqliteEventLog = BUGS[bug]  # type: ignore[attr-defined]
    return cli.main(["serve", *serve_options])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
