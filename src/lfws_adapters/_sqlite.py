"""SQLite plumbing shared by the server's event log and the client's local store."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from .event_log import IncompatibleSchema

_logger = logging.getLogger("lfws.store.sqlite")


def use_wal(connection: sqlite3.Connection, path: str, synchronous: str) -> None:
    """Switch to WAL (readers never block the writer) with ``synchronous``.

    WAL with NORMAL survives a killed process; FULL also survives power loss.
    """
    (mode,) = connection.execute("PRAGMA journal_mode = WAL").fetchone()
    if mode != "wal":
        _logger.warning("%s: WAL mode unavailable, journal mode is %s", path, mode)
    connection.execute(f"PRAGMA synchronous = {synchronous}")


@contextmanager
def transaction(connection: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """Run the block in one write transaction: all of it is committed, or none."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield connection
        connection.execute("COMMIT")
    except BaseException:
        # SQLite may have ended the transaction itself (an I/O error).
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise


def ensure_schema(
    connection: sqlite3.Connection,
    *,
    path: str,
    kind: str,
    version: int,
    statements: Iterable[str],
    application_id: int | None = None,
) -> None:
    """Create the schema of an empty database, accept our own, refuse anything else.

    Call inside :func:`transaction`. ``kind`` names the store in messages.
    """
    found_id = connection.execute("PRAGMA application_id").fetchone()[0]
    (found,) = connection.execute("PRAGMA user_version").fetchone()
    if application_id is None or found_id == application_id:
        if found > version:
            raise IncompatibleSchema(
                f"{path} has {kind} schema version {found}; this lfws "
                f"understands versions up to {version}: upgrade lfws"
            )
        if found == version:
            return
    if connection.execute("SELECT 1 FROM sqlite_master").fetchone() is not None:
        raise IncompatibleSchema(f"{path} is a database but not an lfws {kind}")
    for statement in statements:
        connection.execute(statement)
    _logger.info("%s: created %s schema version %d", path, kind, version)
