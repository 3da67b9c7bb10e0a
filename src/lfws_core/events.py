"""Sync events: the unit of replication, and their Dart JSON form.

An event records one change to one document of one repository. Its JSON form
is the one the Dart ``local_first`` package writes (``_event_id``,
``_operation``, ``_created_at``, ``_data``, ``_data_id``, ``serverSequence``);
unknown fields are kept in :attr:`SyncEvent.extra` and written back, so events
from newer peers survive a round trip through lfws.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TypeAlias

from ._builders import slot_builder
from ._names import name_fault
from .errors import InvalidMessage

__all__ = [
    "JsonValue",
    "Operation",
    "SyncEvent",
    "event_from_json",
    "event_to_json",
    "format_timestamp",
    "parse_timestamp",
]

JsonValue: TypeAlias = "bool | int | float | str | list[JsonValue] | dict[str, JsonValue] | None"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Dates outside what datetime can hold are rejected rather than clamped.
_MAX_EPOCH_MS = int((datetime.max.replace(tzinfo=UTC) - _EPOCH).total_seconds() * 1000)
_MIN_EPOCH_MS = int((datetime.min.replace(tzinfo=UTC) - _EPOCH).total_seconds() * 1000)


class Operation(enum.IntEnum):
    """What an event does to its document (the Dart ``SyncOperation``)."""

    INSERT = 0
    UPDATE = 1
    DELETE = 2

    @classmethod
    def parse(cls, value: object) -> Operation:
        """Read an operation from its wire form: an int or a name (any case).

        Raises :class:`InvalidMessage` for anything else.
        """
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise InvalidMessage("_operation must be 0, 1, 2 or an operation name")
        try:
            return _OPERATIONS[value.upper() if isinstance(value, str) else value]
        except KeyError:
            raise InvalidMessage(f"unknown _operation {value!r}") from None


# A plain dict lookup: calling the enum is several times slower, on the hot path.
_OPERATIONS: dict[int | str, Operation] = {
    key: operation for operation in Operation for key in (operation.value, operation.name)
}


@dataclass(frozen=True, kw_only=True, slots=True)
class SyncEvent:
    """One change to one document, as replicated between peers.

    ``created_at`` is timezone-aware UTC. ``server_sequence`` is ``None``
    until a server has stored the event. ``data`` is ``None`` for deletes.
    """

    event_id: str
    operation: Operation
    data_id: str
    created_at: datetime
    data: Mapping[str, JsonValue] | None = None
    server_sequence: int | None = None
    extra: Mapping[str, JsonValue] = field(default_factory=dict)

    def with_sequence(self, server_sequence: int) -> SyncEvent:
        """Return a copy of this event carrying ``server_sequence``."""
        return _new_event(
            self.event_id,
            self.operation,
            self.data_id,
            self.created_at,
            self.data,
            server_sequence,
            self.extra,
        )


# Events are built by the thousand (a catch-up page, a store): through the
# slots' setters, from values already checked, in the constructor's order.
_new_event: Callable[
    [
        str,
        Operation,
        str,
        datetime,
        Mapping[str, JsonValue] | None,
        int | None,
        Mapping[str, JsonValue],
    ],
    SyncEvent,
] = slot_builder(
    SyncEvent, "event_id", "operation", "data_id", "created_at", "data", "server_sequence", "extra"
)


def format_timestamp(value: datetime) -> str:
    """Format a UTC instant as Dart's ``toUtc().toIso8601String()`` does.

    Milliseconds are always written; microseconds only when not zero. A
    naive value is taken as UTC, as :func:`parse_timestamp` does.
    """
    if value.tzinfo is not UTC:
        # astimezone() would read a naive value in the machine's local time zone.
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    # isoformat() zero-pads years before 1000 (strftime does not on every
    # platform): "YYYY-MM-DDTHH:MM:SS[.ffffff]+00:00", of which Dart writes
    # the milliseconds always, the microseconds when not zero, and "Z". Cut
    # to length, it costs half of isoformat(timespec=...).
    text = value.isoformat()
    microsecond = value.microsecond
    if not microsecond:
        return text[:19] + ".000Z"
    return text[:23] + "Z" if microsecond % 1000 == 0 else text[:26] + "Z"


def parse_timestamp(value: object) -> datetime:
    """Read ``_created_at``: ISO-8601 (a naive value is taken as UTC) or epoch ms.

    Raises :class:`InvalidMessage` for anything else.
    """
    if isinstance(value, bool):
        raise InvalidMessage("_created_at must be an ISO-8601 string or epoch milliseconds")
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidMessage("_created_at must be finite")
        if not _MIN_EPOCH_MS <= value <= _MAX_EPOCH_MS:
            raise InvalidMessage("_created_at is out of range")
        return _EPOCH + timedelta(milliseconds=value)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise InvalidMessage(f"_created_at is not ISO-8601: {value[:40]!r}") from None
        if parsed.tzinfo is None:
            return parsed.replace(tzinfo=UTC)
        try:
            return parsed.astimezone(UTC)
        except OverflowError:
            raise InvalidMessage("_created_at is out of range") from None
    raise InvalidMessage("_created_at must be an ISO-8601 string or epoch milliseconds")


_KNOWN_FIELDS = frozenset(
    {"_event_id", "_operation", "_created_at", "_data", "_data_id", "serverSequence"}
)

# The field names of Dart local_first before 0.8, which the Dart reference
# server still writes. Read only where the current name is absent; never written.
_LEGACY_NAMES = {
    "eventId": "_event_id",
    "operation": "_operation",
    "createdAt": "_created_at",
    "data": "_data",
    "dataId": "_data_id",
}


def _with_current_names(obj: dict[str, JsonValue]) -> dict[str, JsonValue]:
    if _LEGACY_NAMES.keys().isdisjoint(obj):
        return obj
    renamed = {old: new for old, new in _LEGACY_NAMES.items() if old in obj and new not in obj}
    return {renamed.get(key, key): value for key, value in obj.items()}


def _required_string(obj: Mapping[str, object], key: str) -> str:
    if key not in obj:
        raise InvalidMessage(f"event is missing {key}")
    value = obj[key]
    if not isinstance(value, str):
        raise InvalidMessage(f"event {key} must be a string")
    if not value:
        raise InvalidMessage(f"event {key} must not be empty")
    fault = name_fault(value)
    if fault is not None:
        raise InvalidMessage(f"event {key} {fault}")
    return value


def event_from_json(obj: object) -> SyncEvent:
    """Build a :class:`SyncEvent` from its decoded JSON object.

    Validates every field; raises :class:`InvalidMessage` with the reason.
    The ids must be non-empty and free of NUL characters and lone
    surrogates, which stores cannot keep. The pre-0.8 Dart names
    (``eventId``, ``operation``, ``createdAt``, ``data``, ``dataId``) are
    read in place of absent current names.
    """
    if type(obj) is dict and _LEGACY_NAMES.keys().isdisjoint(obj):
        event = _plain_event(obj)
        if event is not None:
            return event
    return _checked_event(obj)


def _plain_event(obj: dict[str, JsonValue]) -> SyncEvent | None:
    """Build the usual event (integer operation, UTC or naive ISO time) in one go.

    Returns ``None`` for anything else, valid or not: :func:`_checked_event`
    then decides, field by field, and gives the reason of the first fault.
    """
    event_id = obj.get("_event_id")
    data_id = obj.get("_data_id")
    created = obj.get("_created_at")
    data = obj.get("_data")
    sequence = obj.get("serverSequence")
    wire_operation = obj.get("_operation")
    # Exact ints only: True == 1, and a bool is no operation.
    operation = _OPERATIONS.get(wire_operation) if type(wire_operation) is int else None
    if (
        operation is None
        or type(event_id) is not str
        or type(data_id) is not str
        or type(created) is not str
        or not event_id
        or not data_id
        # name_fault() without a call: NUL, or non-ASCII (a lone surrogate?)
        or "\x00" in event_id
        or "\x00" in data_id
        or not (event_id.isascii() and data_id.isascii())
        or (type(data) is not dict and (data is not None or operation is not Operation.DELETE))
        or (sequence is not None and (type(sequence) is not int or sequence < 1))
    ):
        return None
    try:
        created_at = datetime.fromisoformat(created)
    except ValueError:
        return None
    zone = created_at.tzinfo
    if zone is None:
        created_at = created_at.replace(tzinfo=UTC)
    elif zone is not UTC:
        return None
    known = 4 + ("_data" in obj) + ("serverSequence" in obj)
    return _new_event(
        event_id,
        operation,
        data_id,
        created_at,
        data,  # a dict or None, checked above
        sequence,
        {k: v for k, v in obj.items() if k not in _KNOWN_FIELDS} if len(obj) > known else {},
    )


def _checked_event(obj: object) -> SyncEvent:
    if not isinstance(obj, dict):
        raise InvalidMessage("an event must be a JSON object")
    obj = _with_current_names(obj)
    event_id = _required_string(obj, "_event_id")
    data_id = _required_string(obj, "_data_id")
    if "_operation" not in obj:
        raise InvalidMessage("event is missing _operation")
    operation = Operation.parse(obj["_operation"])
    if "_created_at" not in obj:
        raise InvalidMessage("event is missing _created_at")
    created_at = parse_timestamp(obj["_created_at"])
    data = obj.get("_data")
    if data is not None and not isinstance(data, dict):
        raise InvalidMessage("event _data must be an object or null")
    if data is None and operation is not Operation.DELETE:
        raise InvalidMessage(f"event _data is required for {operation.name.lower()}")
    sequence = obj.get("serverSequence")
    if sequence is not None and (
        isinstance(sequence, bool) or not isinstance(sequence, int) or sequence < 1
    ):
        raise InvalidMessage("event serverSequence must be a positive integer")
    extra = {k: v for k, v in obj.items() if k not in _KNOWN_FIELDS}
    return SyncEvent(
        event_id=event_id,
        operation=operation,
        data_id=data_id,
        created_at=created_at,
        data=data,
        server_sequence=sequence,
        extra=extra,
    )


def event_to_json(event: SyncEvent) -> dict[str, JsonValue]:
    """Return the Dart JSON object of ``event`` (operation as its integer)."""
    obj = event_wire_object(event)
    data = obj.get("_data")
    if data is not None and data is event.data:
        obj["_data"] = dict(data)  # the caller's own copy
    return obj


def event_wire_object(event: SyncEvent) -> dict[str, JsonValue]:
    """Return what :func:`event_to_json` does, sharing ``_data`` with ``event``.

    For encoders, which only read it: no copy of the data on the hot path.
    """
    extra = event.extra
    obj: dict[str, JsonValue] = dict(extra) if extra else {}
    obj["_event_id"] = event.event_id
    obj["_operation"] = int(event.operation)
    obj["_created_at"] = format_timestamp(event.created_at)
    obj["_data_id"] = event.data_id
    data = event.data
    if data is not None:
        # A dict is shared as is; any other mapping becomes one (JSON libraries want dicts).
        obj["_data"] = data if type(data) is dict else dict(data)
    if event.server_sequence is not None:
        obj["serverSequence"] = event.server_sequence
    return obj
