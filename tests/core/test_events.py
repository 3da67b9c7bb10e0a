"""Sync events and their Dart JSON form."""

from __future__ import annotations

import dataclasses
import math
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.strategies import event_ids, json_objects, sequences, sync_events

from lfws_core import events
from lfws_core.errors import InvalidMessage
from lfws_core.events import (
    JsonValue,
    Operation,
    SyncEvent,
    event_from_json,
    event_to_json,
    format_timestamp,
    parse_timestamp,
)

WHEN = datetime(2024, 5, 1, 12, 34, 56, 789000, tzinfo=UTC)


def dart_event(**fields: JsonValue) -> dict[str, JsonValue]:
    """An event as Dart's ``LocalFirstEvent.toJson`` writes it, with overrides."""
    event: dict[str, JsonValue] = {
        "_event_id": "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
        "_operation": 1,
        "_created_at": "2024-05-01T12:34:56.789Z",
        "_data": {"a": 1},
        "_data_id": "d1",
        "serverSequence": 3,
    }
    event.update(fields)
    return event


# --- timestamps ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("instant", "text"),
    [
        (WHEN, "2024-05-01T12:34:56.789Z"),
        (WHEN.replace(microsecond=789123), "2024-05-01T12:34:56.789123Z"),
        (WHEN.replace(microsecond=0), "2024-05-01T12:34:56.000Z"),
        (WHEN.replace(microsecond=1), "2024-05-01T12:34:56.000001Z"),
        (datetime(5, 1, 2, tzinfo=UTC), "0005-01-02T00:00:00.000Z"),
        (WHEN.astimezone(timezone(timedelta(hours=2))), "2024-05-01T12:34:56.789Z"),
        (WHEN.replace(tzinfo=None), "2024-05-01T12:34:56.789Z"),
    ],
)
def test_format_timestamp_writes_dart_iso_8601(instant: datetime, text: str) -> None:
    assert format_timestamp(instant) == text


@given(
    # Away from the ends of datetime's range, which a time zone can push UTC past.
    instant=st.datetimes(
        min_value=datetime(2, 1, 1),
        max_value=datetime(9998, 12, 31),
        timezones=st.none() | st.just(UTC) | st.timezones(),
    )
)
def test_format_timestamp_is_isoformat_to_the_millisecond_or_microsecond(
    instant: datetime,
) -> None:
    utc = instant.replace(tzinfo=UTC) if instant.tzinfo is None else instant.astimezone(UTC)
    timespec = "microseconds" if utc.microsecond % 1000 else "milliseconds"
    assert format_timestamp(instant) == utc.isoformat(timespec=timespec)[:-6] + "Z"


@given(instant=st.datetimes(timezones=st.just(UTC)))
def test_parse_timestamp_inverts_format_timestamp(instant: datetime) -> None:
    assert parse_timestamp(format_timestamp(instant)) == instant


@pytest.mark.parametrize(
    ("value", "instant"),
    [
        ("2024-05-01T12:34:56.789Z", WHEN),
        ("2024-05-01T12:34:56.789", WHEN),
        ("2024-05-01T14:34:56.789+02:00", WHEN),
        (1714566896789, WHEN),
        (1714566896789.0, WHEN),
        (0, datetime(1970, 1, 1, tzinfo=UTC)),
    ],
)
def test_parse_timestamp_reads_iso_8601_and_epoch_millis(value: object, instant: datetime) -> None:
    parsed = parse_timestamp(value)
    assert parsed == instant
    assert parsed.tzinfo is UTC


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (True, "must be an ISO-8601 string or epoch milliseconds"),
        (None, "must be an ISO-8601 string or epoch milliseconds"),
        ([2024], "must be an ISO-8601 string or epoch milliseconds"),
        (math.nan, "_created_at must be finite"),
        (math.inf, "_created_at must be finite"),
        (10**20, "_created_at is out of range"),
        (-(10**20), "_created_at is out of range"),
        ("yesterday", "_created_at is not ISO-8601: 'yesterday'"),
        ("0001-01-01T00:00:00+01:00", "_created_at is out of range"),
    ],
)
def test_parse_timestamp_rejects(value: object, reason: str) -> None:
    with pytest.raises(InvalidMessage, match=reason):
        parse_timestamp(value)


# --- operations ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "operation"),
    [
        (0, Operation.INSERT),
        (1, Operation.UPDATE),
        (2, Operation.DELETE),
        ("insert", Operation.INSERT),
        ("Update", Operation.UPDATE),
        ("DELETE", Operation.DELETE),
    ],
)
def test_operation_parse(value: object, operation: Operation) -> None:
    assert Operation.parse(value) is operation


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (True, "_operation must be 0, 1, 2 or an operation name"),
        (1.0, "_operation must be 0, 1, 2 or an operation name"),
        (None, "_operation must be 0, 1, 2 or an operation name"),
        (3, "unknown _operation 3"),
        (-1, "unknown _operation -1"),
        ("0", "unknown _operation '0'"),
        ("upsert", "unknown _operation 'upsert'"),
    ],
)
def test_operation_parse_rejects(value: object, reason: str) -> None:
    with pytest.raises(InvalidMessage, match=reason):
        Operation.parse(value)


# --- events ----------------------------------------------------------------------


def test_event_from_dart_json() -> None:
    event = event_from_json(dart_event(repository="todos"))
    assert event == SyncEvent(
        event_id="0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
        operation=Operation.UPDATE,
        data_id="d1",
        created_at=WHEN,
        data={"a": 1},
        server_sequence=3,
        extra={"repository": "todos"},
    )


@pytest.mark.parametrize("created_at", ["2024-05-01T12:34:56.789Z", "2024-05-01T12:34:56.789123Z"])
def test_dart_json_survives_a_round_trip(created_at: str) -> None:
    obj = dart_event(_created_at=created_at, repository="todos")
    assert event_to_json(event_from_json(obj)) == obj


@given(
    event_id=event_ids,
    operation=st.sampled_from(Operation),
    millis=st.integers(min_value=0, max_value=253402300799999),
    data=json_objects,
    sequence=st.none() | sequences,
)
def test_any_dart_event_survives_a_round_trip(
    event_id: str,
    operation: Operation,
    millis: int,
    data: dict[str, JsonValue],
    sequence: int | None,
) -> None:
    created_at = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=millis)
    obj: dict[str, JsonValue] = {
        "_event_id": event_id,
        "_operation": int(operation),
        # Dart's toIso8601String, written independently of format_timestamp.
        "_created_at": created_at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "_data": data,
        "_data_id": "d",
    }
    if sequence is not None:
        obj["serverSequence"] = sequence
    assert event_to_json(event_from_json(obj)) == obj


@given(event=sync_events)
def test_event_from_json_inverts_event_to_json(event: SyncEvent) -> None:
    assert event_from_json(event_to_json(event)) == event


def test_legacy_names_are_read_when_current_ones_are_absent() -> None:
    legacy: dict[str, JsonValue] = {
        "eventId": "e1",
        "operation": "insert",
        "createdAt": 1714566896789,
        "data": {"a": 1},
        "dataId": "d1",
        "serverSequence": 3,
        "repository": "todos",
    }
    event = event_from_json(legacy)
    assert event == SyncEvent(
        event_id="e1",
        operation=Operation.INSERT,
        data_id="d1",
        created_at=WHEN,
        data={"a": 1},
        server_sequence=3,
        extra={"repository": "todos"},
    )
    assert event_to_json(event) == {
        "repository": "todos",
        "_event_id": "e1",
        "_operation": 0,
        "_created_at": "2024-05-01T12:34:56.789Z",
        "_data_id": "d1",
        "_data": {"a": 1},
        "serverSequence": 3,
    }


def test_a_legacy_name_beside_its_current_name_is_just_an_extra_field() -> None:
    event = event_from_json(dart_event(eventId="old", dataId="old-d"))
    assert event.event_id == "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
    assert event.data_id == "d1"
    assert event.extra == {"eventId": "old", "dataId": "old-d"}


def test_non_ascii_ids_are_fine() -> None:
    event = event_from_json(dart_event(_event_id="é-1", _data_id="документ 😀"))
    assert (event.event_id, event.data_id) == ("é-1", "документ 😀")


def test_a_delete_carries_no_data() -> None:
    obj = dart_event(_operation=2)
    del obj["_data"]
    event = event_from_json(obj)
    assert event.operation is Operation.DELETE
    assert event.data is None
    assert event_to_json(event) == obj
    assert event_from_json(dart_event(_operation=2, _data=None)).data is None


def test_unsequenced_events_write_no_sequence() -> None:
    obj = dart_event()
    del obj["serverSequence"]
    event = event_from_json(obj)
    assert event.server_sequence is None
    assert "serverSequence" not in event_to_json(event)
    assert event_from_json(dart_event(serverSequence=None)).server_sequence is None


def test_with_sequence_changes_only_the_sequence() -> None:
    event = event_from_json(dart_event(repository="todos"))
    sequenced = event.with_sequence(9)
    assert sequenced.server_sequence == 9
    assert sequenced == SyncEvent(
        event_id=event.event_id,
        operation=event.operation,
        data_id=event.data_id,
        created_at=event.created_at,
        data=event.data,
        server_sequence=9,
        extra=event.extra,
    )


def _without(key: str) -> dict[str, JsonValue]:
    obj = dart_event()
    del obj[key]
    return obj


@pytest.mark.parametrize(
    ("obj", "reason"),
    [
        ([], "an event must be a JSON object"),
        ("e", "an event must be a JSON object"),
        (_without("_event_id"), "event is missing _event_id"),
        (_without("_data_id"), "event is missing _data_id"),
        (_without("_operation"), "event is missing _operation"),
        (_without("_created_at"), "event is missing _created_at"),
        (_without("_data"), "event _data is required for update"),
        (dart_event(_event_id=1), "event _event_id must be a string"),
        (dart_event(_event_id=""), "event _event_id must not be empty"),
        (dart_event(_data_id=None), "event _data_id must be a string"),
        # Stores cannot keep them: PostgreSQL refuses NUL, SQLite's driver lone surrogates.
        (dart_event(_event_id="e\x00"), "event _event_id must not contain NUL characters"),
        (dart_event(_event_id="\udc80e"), "event _event_id must not contain lone surrogates"),
        (dart_event(_data_id="\x00"), "event _data_id must not contain NUL characters"),
        (dart_event(_data_id="d\ud800"), "event _data_id must not contain lone surrogates"),
        (dart_event(_operation=5), "unknown _operation 5"),
        (dart_event(_created_at="soon"), "_created_at is not ISO-8601"),
        (dart_event(_data=[]), "event _data must be an object or null"),
        (dart_event(_data="x"), "event _data must be an object or null"),
        (dart_event(_operation=0, _data=None), "event _data is required for insert"),
        (dart_event(serverSequence=0), "event serverSequence must be a positive integer"),
        (dart_event(serverSequence=-3), "event serverSequence must be a positive integer"),
        (dart_event(serverSequence=True), "event serverSequence must be a positive integer"),
        (dart_event(serverSequence="3"), "event serverSequence must be a positive integer"),
        (dart_event(serverSequence=3.0), "event serverSequence must be a positive integer"),
    ],
)
def test_event_from_json_rejects(obj: object, reason: str) -> None:
    with pytest.raises(InvalidMessage, match=reason):
        event_from_json(obj)


@pytest.mark.parametrize(
    ("created_at", "instant"),
    [
        ("2024-05-01T12:34:56.789", WHEN),  # naive: taken as UTC
        ("2024-05-01T14:34:56.789+02:00", WHEN),
        ("2024-05-01T12:34:56.789Z", WHEN),
    ],
)
def test_created_at_is_read_as_utc(created_at: str, instant: datetime) -> None:
    event = event_from_json(dart_event(_created_at=created_at))
    assert event.created_at == instant
    assert event.created_at.tzinfo is UTC


FIELD_VALUES = st.sampled_from(
    [
        None, True, False, 0, 1, 2, 3, -1, 1.5, 1714566896789, "", "e", "e\x00", "\ud800", "é",
        "insert", "DELETE", "2024-05-01T12:34:56.789Z", "2024-05-01T12:34:56",
        "2024-05-01T12:34:56+02:00", "soon", {}, {"a": 1}, [], ["x"],
    ]
)  # fmt: skip
FIELD_NAMES = st.sampled_from(
    [
        "_event_id", "_operation", "_created_at", "_data", "_data_id", "serverSequence",
        "eventId", "operation", "createdAt", "data", "dataId", "other",
    ]
)  # fmt: skip


@given(
    base=st.booleans(),
    fields=st.dictionaries(FIELD_NAMES, FIELD_VALUES, max_size=6),
)
def test_the_one_pass_reading_agrees_with_the_field_by_field_one(
    base: bool, fields: dict[str, JsonValue]
) -> None:
    obj = dart_event(**fields) if base else fields
    try:
        expected: object = events._checked_event(obj)
    except InvalidMessage as exc:
        expected = exc.reason
    try:
        got: object = event_from_json(obj)
    except InvalidMessage as exc:
        got = exc.reason
    assert got == expected
    if isinstance(got, SyncEvent):
        assert got.created_at.tzinfo is UTC


def test_the_fast_constructor_sets_every_field() -> None:
    # events._new_event bypasses the dataclass __init__: a new field must be added there too.
    assert [f.name for f in dataclasses.fields(SyncEvent)] == [
        "event_id",
        "operation",
        "data_id",
        "created_at",
        "data",
        "server_sequence",
        "extra",
    ]
    event = event_from_json(dart_event(other=1))
    assert event == SyncEvent(
        event_id=event.event_id,
        operation=event.operation,
        data_id=event.data_id,
        created_at=event.created_at,
        data=event.data,
        server_sequence=event.server_sequence,
        extra={"other": 1},
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.data_id = "changed"  # type: ignore[misc]
