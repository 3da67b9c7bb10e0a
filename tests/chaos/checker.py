"""What must hold after chaos, checked on the SQLite files themselves.

The server's event log and every client's local store are read directly
(read-only connections; WAL lets them read while the owners write), so the
verdict is about what is durable, not about what a process believes.

Violations, by kind:

* ``lost``: a client holds an event as synced (``OK``: acknowledged, or
  received from the server) that the server log does not have;
* ``duplicate``: an event id stored twice in one repository of the log;
* ``gap``: the log's sequences of a repository are not 1..n;
* ``cursor-skip``: a client's stored cursor is at or past a log event of
  that repository that the client does not hold;
* ``outbox``: a client still has unsynced (pending, failed or rejected) events;
* ``diverged``: a client's events of a repository are not exactly the log's;
* ``documents``: a client's documents are not those the log's events merge to.

The first four are checked during the run too (read the replicas first: an
event a replica holds as synced, or below its cursor, was committed before),
the last three only once the replicas should have converged.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from lfws_core.events import SyncEvent, event_from_json
from lfws_core.merge import merge_events

__all__ = [
    "Replica",
    "ServerLog",
    "Violation",
    "convergence_violations",
    "read_replica",
    "read_server_log",
    "safety_violations",
]

_OK = 1  # SyncStatus.OK in the local store


@dataclass(frozen=True, slots=True, order=True)
class Violation:
    """One broken promise: its kind and what exactly."""

    kind: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.detail}"


@dataclass(frozen=True, kw_only=True, slots=True)
class ServerLog:
    """The server's event log: ``(sequence, event id, payload)`` rows per repository."""

    rows: Mapping[str, list[tuple[int, str, str]]]

    def ids(self, repository: str) -> set[str]:
        return {event_id for _, event_id, _ in self.rows.get(repository, [])}

    @property
    def size(self) -> int:
        return sum(len(rows) for rows in self.rows.values())


@dataclass(frozen=True, kw_only=True, slots=True)
class Replica:
    """One client's local store: its events, cursors and documents."""

    name: str
    repositories: tuple[str, ...]
    events: Mapping[str, tuple[str, int, bool]]
    """event id -> (repository, status, rejected)."""
    cursors: Mapping[str, int]
    winners: Mapping[tuple[str, str], str] = field(default_factory=dict)
    """(repository, document id) -> id of the event that wins it."""

    def ids(self, repository: str) -> set[str]:
        return {i for i, (repo, _, _) in self.events.items() if repo == repository}


@contextmanager
def _read_only(path: Path) -> Iterator[sqlite3.Connection]:
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as connection:
        connection.execute("PRAGMA busy_timeout = 5000")
        connection.execute("BEGIN")  # one snapshot for every query
        yield connection


def read_server_log(path: Path) -> ServerLog:
    """Read the event log's rows (an absent file is an empty log)."""
    rows: dict[str, list[tuple[int, str, str]]] = defaultdict(list)
    if path.exists():
        with _read_only(path) as db:
            tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master")}
            if "events" in tables:
                query = "SELECT repository, sequence, event_id, payload FROM events ORDER BY 1, 2"
                for repository, sequence, event_id, payload in db.execute(query):
                    rows[repository].append((sequence, event_id, payload))
    return ServerLog(rows=dict(rows))


def read_replica(path: Path, name: str, repositories: Iterable[str]) -> Replica:
    """Read a client's local store."""
    with _read_only(path) as db:
        events = {
            event_id: (repository, status, rejected is not None)
            for event_id, repository, status, rejected in db.execute(
                "SELECT event_id, repository, status, rejected_at FROM events"
            )
        }
        cursors = dict(db.execute("SELECT repository, cursor FROM cursors").fetchall())
        winners = {
            (repository, data_id): event_id
            for repository, data_id, event_id in db.execute(
                "SELECT repository, id, event_id FROM documents"
            )
        }
    return Replica(
        name=name,
        repositories=tuple(repositories),
        events=events,
        cursors=cursors,
        winners=winners,
    )


def safety_violations(log: ServerLog, replicas: Iterable[Replica]) -> list[Violation]:
    """Lost, duplicated, gaps and cursor skips (read ``replicas`` before ``log``)."""
    found: list[Violation] = []
    for repository, rows in log.rows.items():
        for event_id, count in Counter(event_id for _, event_id, _ in rows).items():
            if count > 1:
                found.append(Violation("duplicate", f"{repository}/{event_id} stored {count}x"))
        sequences = [sequence for sequence, _, _ in rows]
        if sequences != list(range(1, len(rows) + 1)):
            found.append(Violation("gap", f"{repository} sequences are not 1..{len(rows)}"))
    logged = {repository: log.ids(repository) for repository in log.rows}
    for replica in replicas:
        for event_id, (repository, status, _) in replica.events.items():
            if status == _OK and event_id not in logged.get(repository, ()):
                found.append(
                    Violation("lost", f"{replica.name} holds {repository}/{event_id} as synced")
                )
        for repository, cursor in replica.cursors.items():
            held = replica.ids(repository)
            for sequence, event_id, _ in log.rows.get(repository, []):
                if sequence <= cursor and event_id not in held:
                    found.append(
                        Violation(
                            "cursor-skip",
                            f"{replica.name} cursor {repository}@{cursor} "
                            f"skips #{sequence} {event_id}",
                        )
                    )
    return found


def _merged_winners(log: ServerLog, repository: str) -> dict[tuple[str, str], str]:
    by_document: dict[str, list[SyncEvent]] = defaultdict(list)
    for _, _, payload in log.rows.get(repository, []):
        event = event_from_json(json.loads(payload))
        by_document[event.data_id].append(event)
    winners: dict[tuple[str, str], str] = {}
    for data_id, events in by_document.items():
        winner = merge_events(events)
        assert winner is not None
        winners[(repository, data_id)] = winner.event_id
    return winners


def convergence_violations(log: ServerLog, replicas: Iterable[Replica]) -> list[Violation]:
    """Outboxes not empty, replicas not equal to the log (events and documents)."""
    found: list[Violation] = []
    replicas = list(replicas)
    for replica in replicas:
        unsynced = [i for i, (_, status, rejected) in replica.events.items() if status != _OK]
        rejected = [i for i, (_, _, rejected) in replica.events.items() if rejected]
        if unsynced or rejected:
            found.append(
                Violation(
                    "outbox",
                    f"{replica.name}: {len(unsynced)} unsynced, {len(rejected)} rejected",
                )
            )
        for repository in replica.repositories:
            held, logged = replica.ids(repository), log.ids(repository)
            if held != logged:
                found.append(
                    Violation(
                        "diverged",
                        f"{replica.name}/{repository}: {len(logged - held)} missing, "
                        f"{len(held - logged)} not in the log",
                    )
                )
    if found:
        return found  # the documents are worth merging the log for only once the events agree
    expected = {repository: _merged_winners(log, repository) for repository in log.rows}
    for replica in replicas:
        for repository in replica.repositories:
            winners = {k: v for k, v in replica.winners.items() if k[0] == repository}
            if winners != expected.get(repository, {}):
                found.append(
                    Violation("documents", f"{replica.name}/{repository} differs from the log")
                )
    return found
