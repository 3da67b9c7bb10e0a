"""What the PostgreSQL event log and its change feed share: psycopg, errors, the pointer format."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

from .event_log import StoreError

try:
    import psycopg
    import psycopg.conninfo
    import psycopg.sql
except ImportError as exc:  # pragma: no cover - the optional "postgres" extra
    raise ImportError(
        "the PostgreSQL event log needs psycopg 3: pip install 'lfws[postgres]'"
    ) from exc

__all__ = [
    "DEFAULT_CHANNEL",
    "MAX_POINTER_BYTES",
    "SCAN_REPOSITORIES",
    "decode_pointer",
    "describe",
    "encode_pointer",
    "postgres_errors",
    "psycopg",
]

DEFAULT_CHANNEL = "lfws_events"

# PostgreSQL refuses a NOTIFY payload of 8000 bytes or more; a pointer that
# would not fit (an absurdly long repository name) is sent as a bare "*".
MAX_POINTER_BYTES = 7000
_ANY_REPOSITORY = "*"

# Every repository with its highest sequence: the counter rows, one per
# repository, so this stays cheap next to the events themselves.
SCAN_REPOSITORIES = (
    "SELECT repository, last_sequence FROM lfws_repositories WHERE last_sequence > 0"
)


def describe(dsn: str) -> str:
    """Name the database of ``dsn`` for messages, without its password."""
    try:
        params = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.Error:
        return "PostgreSQL"
    host = params.get("host") or params.get("hostaddr") or "localhost"
    port = f":{params['port']}" if params.get("port") else ""
    return f"PostgreSQL {params.get('dbname') or '(default database)'} at {host}{port}"


@contextmanager
def postgres_errors(where: str) -> Iterator[None]:
    """Turn psycopg's errors (the pool's timeouts among them) into StoreError.

    A string PostgreSQL text cannot hold fails too: a NUL character (a
    psycopg error) or a lone surrogate (the UTF-8 encoder's).
    """
    try:
        yield
    except (psycopg.Error, UnicodeEncodeError) as exc:
        raise StoreError(f"{where}: {exc}") from exc


def encode_pointer(repository: str, sequence: int) -> str:
    """The NOTIFY payload saying ``repository`` now holds events up to ``sequence``."""
    payload = json.dumps([repository, sequence], separators=(",", ":"))
    return payload if len(payload.encode()) <= MAX_POINTER_BYTES else _ANY_REPOSITORY


def decode_pointer(payload: str) -> tuple[str, int] | None:
    """Read a pointer; ``None`` means "some repository changed: scan them all"."""
    try:
        repository, sequence = json.loads(payload)
    except (ValueError, TypeError):
        return None
    if not isinstance(repository, str) or type(sequence) is not int:
        return None
    return repository, sequence
