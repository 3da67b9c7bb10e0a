"""The events every contender pushes: the same JSON, as SyncEvents for lfws."""

from __future__ import annotations

from typing import Any

from lfws_core.events import SyncEvent, event_from_json

REPOSITORY = "todos"
TOKEN = "bench"


def event_json(index: int, run: int = 0) -> dict[str, Any]:
    """A small Dart-shaped insert event; ``run`` keeps ids unique across runs on one store."""
    data_id = f"todo-{index}"
    return {
        "_event_id": f"0190a000-{run:04x}-7000-8000-{index:012x}",
        "_operation": 0,
        "_created_at": "2024-05-01T12:34:56.789Z",
        "_data": {"id": data_id, "title": f"buy milk #{index}", "done": False},
        "_data_id": data_id,
    }


def event_dicts(count: int, run: int = 0) -> list[dict[str, Any]]:
    """``count`` distinct events as JSON objects (what the peers send)."""
    return [event_json(index, run) for index in range(count)]


def sync_events(count: int, run: int = 0) -> list[SyncEvent]:
    """The same events as :class:`SyncEvent` objects (what an lfws app pushes)."""
    return [event_from_json(event) for event in event_dicts(count, run)]


def push_message(event: dict[str, Any]) -> dict[str, Any]:
    """The Dart ``push_event`` message carrying ``event``."""
    return {"type": "push_event", "repository": REPOSITORY, "event": event}


def ack_message(repository: str, event_id: str) -> dict[str, Any]:
    """The Dart ``ack`` for one pushed event."""
    return {"type": "ack", "eventIds": [event_id], "repositories": {repository: [event_id]}}
