"""The PostgreSQL server the tests use: LFWS_TEST_POSTGRES_DSN, one fresh schema per test.

CI starts a throwaway server (.ci/postgres.sh) and exports the DSN; locally,
`source .ci/postgres.sh` in a shell does the same. Without a DSN the tests
skip, saying why; with one that does not answer they fail, since a server
was promised.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest

DSN_VARIABLE = "LFWS_TEST_POSTGRES_DSN"
UNAVAILABLE_VARIABLE = "LFWS_TEST_POSTGRES_UNAVAILABLE"


def server_dsn() -> str:
    """The test server's DSN; skips the test, with the reason, when there is none."""
    pytest.importorskip("psycopg", reason="psycopg is not installed (the 'postgres' extra)")
    dsn = os.environ.get(DSN_VARIABLE)
    if not dsn:
        reason = os.environ.get(UNAVAILABLE_VARIABLE) or (
            f"{DSN_VARIABLE} is not set; `source .ci/postgres.sh` starts a throwaway server"
        )
        pytest.skip(f"no PostgreSQL: {reason}")
    return dsn


@dataclass(frozen=True, kw_only=True, slots=True)
class Database:
    """A schema of its own on the test server, and the NOTIFY channel to go with it."""

    dsn: str  # connects with the schema as search_path
    server_dsn: str  # connects with the default search_path
    schema: str

    @property
    def channel(self) -> str:
        return self.schema

    def execute(self, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run one statement in the schema on a connection of its own; return its rows."""
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as connection:
            cursor = connection.execute(query, params)
            return cursor.fetchall() if cursor.description else []


@contextmanager
def fresh_schema() -> Iterator[Database]:
    """A new, empty schema, dropped afterwards."""
    import psycopg
    from psycopg.conninfo import make_conninfo

    dsn = server_dsn()
    schema = f"lfws_test_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    try:
        yield Database(
            dsn=make_conninfo(dsn, options=f"-c search_path={schema}"),
            server_dsn=dsn,
            schema=schema,
        )
    finally:
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")
