"""The stored form of an event, shared by the SQL event logs.

An event is stored as the client's compact JSON without ``serverSequence``
(the sequence has its own column) and read back with the stdlib, so every
value round-trips exactly: orjson writes fast but reads integers beyond 64
bits as floats, and refuses some values (those beyond 64 bits, lone
surrogates) that the stdlib writes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from lfws_core.events import JsonValue, SyncEvent, event_from_json, event_to_json

_fast_dumps: Callable[[Any], bytes] | None
try:
    import orjson

    _fast_dumps = orjson.dumps
except ImportError:  # pragma: no cover - orjson is the optional "fast" extra
    _fast_dumps = None

# SQL integers (SQLite's, PostgreSQL's bigint) are signed 64-bit; a cursor or
# a limit from the wire may be larger.
MAX_SQL_INTEGER = 2**63 - 1


def encode_payload(event: SyncEvent) -> str:
    payload: dict[str, JsonValue] = event_to_json(event)
    payload.pop("serverSequence", None)
    if _fast_dumps is not None:
        try:
            return _fast_dumps(payload).decode()
        except TypeError:
            pass  # integers beyond 64 bits, lone surrogates: the stdlib writes those
    return json.dumps(payload, separators=(",", ":"))


def decode_payload(sequence: int, payload: str) -> SyncEvent:
    obj = json.loads(payload)
    obj["serverSequence"] = sequence
    return event_from_json(obj)


def fetch_bounds(after_sequence: int, limit: int) -> tuple[int, int]:
    """Clamp a fetch's cursor and limit into the SQL integer range."""
    return min(max(after_sequence, 0), MAX_SQL_INTEGER), min(limit, MAX_SQL_INTEGER)
