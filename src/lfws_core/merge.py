"""The merge rule: last-writer-wins by (``created_at``, ``event_id``).

Every event carries the whole document as it stood after the change (the
Dart ``local_first`` package writes the full document into ``_data`` for an
update, not a patch), so merging never combines fields: for each document
one event *wins*, and the winner alone says what the document is. An insert
or update winner holds the document in :attr:`~lfws_core.events.SyncEvent.data`;
a delete winner means the document is absent.

The winner is the event with the greatest :func:`merge_key`. That key is a
total order over distinct events, so the winner of a set of events does not
depend on the order they arrive in: replicas that saw the same events agree.
The Dart original compares ``created_at`` alone and lets the remote side win
a tie, so two replicas that receive the same pair of equal-time events in
opposite orders keep different documents; the event id breaks that tie here.

Deletes are tombstones, ordinary events under the same rule: an insert or
update with a greater key brings a deleted document back, and one with a
smaller key (an older edit arriving late) does not.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from .errors import LocalProtocolError
from .events import JsonValue, Operation, SyncEvent

__all__ = [
    "apply_event",
    "document_state",
    "merge_events",
    "merge_key",
    "wins",
]


def merge_key(event: SyncEvent) -> tuple[datetime, str]:
    """Return the key that orders ``event`` among the changes to its document.

    ``created_at`` first, then ``event_id`` as a tie-break. Event ids are
    unique, so distinct events never share a key; UUIDv7 ids also sort by
    creation time, so the tie-break agrees with the clock where it can.
    """
    return (event.created_at, event.event_id)


def wins(candidate: SyncEvent, current: SyncEvent | None) -> bool:
    """Return whether ``candidate`` replaces ``current`` as its document's winner.

    ``current`` is the winner so far (``None`` when the document has never
    been seen). An equal key means the same event again, which changes
    nothing, so merging is idempotent. Raises :class:`LocalProtocolError` if
    the two events are about different documents.
    """
    if current is None:
        return True
    if candidate.data_id != current.data_id:
        raise LocalProtocolError(
            f"cannot merge an event of document {candidate.data_id!r} "
            f"into document {current.data_id!r}"
        )
    return merge_key(candidate) > merge_key(current)


def apply_event(current_winner: SyncEvent | None, incoming: SyncEvent) -> SyncEvent:
    """Merge ``incoming`` into a document and return the document's new winner."""
    if current_winner is None or wins(incoming, current_winner):
        return incoming
    return current_winner


def merge_events(
    events: Iterable[SyncEvent], current_winner: SyncEvent | None = None
) -> SyncEvent | None:
    """Fold :func:`apply_event` over ``events`` of one document.

    Returns the winner, or ``current_winner`` when ``events`` is empty.
    """
    winner = current_winner
    for event in events:
        winner = apply_event(winner, event)
    return winner


def document_state(winner: SyncEvent | None) -> Mapping[str, JsonValue] | None:
    """Return the document a winner stands for: its data, or ``None`` if absent.

    ``None`` for a document never seen and for one whose winner is a delete.
    """
    if winner is None or winner.operation is Operation.DELETE:
        return None
    return winner.data
