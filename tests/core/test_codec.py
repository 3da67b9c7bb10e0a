"""The message codec: wire forms, round trips, and one grammar on both backends."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from tests.strategies import json_values, messages

from lfws_core import _json, codec
from lfws_core.codec import (
    DEFAULT_BACKEND,
    MAX_DEPTH,
    ORJSON,
    STDLIB_JSON,
    EncodedPart,
    JsonBackend,
    decode_message,
    encode_message,
    encode_to_fit,
    utf8_size_over,
)
from lfws_core.errors import InvalidMessage, LocalProtocolError
from lfws_core.events import Operation, SyncEvent
from lfws_core.messages import (
    Ack,
    Auth,
    AuthSuccess,
    Error,
    Events,
    EventsReceived,
    Message,
    Ping,
    Pong,
    PushEvent,
    PushEventsBatch,
    RequestAllEvents,
    RequestEvents,
    SyncComplete,
)

NO_ORJSON = "orjson is not installed (pip install 'lfws[fast]')"
BACKENDS = [
    pytest.param(STDLIB_JSON, id="json"),
    pytest.param(ORJSON, id="orjson", marks=pytest.mark.skipif(ORJSON is None, reason=NO_ORJSON)),
]
needs_orjson = pytest.mark.skipif(ORJSON is None, reason=NO_ORJSON)

WHEN = datetime(2024, 5, 1, 12, 34, 56, 789000, tzinfo=UTC)
EVENT = SyncEvent(
    event_id="0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
    operation=Operation.INSERT,
    data_id="d1",
    created_at=WHEN,
    data={"title": "Buy milk"},
)
EVENT_JSON = (
    '{"_event_id":"0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b","_operation":0,'
    '"_created_at":"2024-05-01T12:34:56.789Z","_data_id":"d1","_data":{"title":"Buy milk"}}'
)


def outcome(backend: JsonBackend, data: str | bytes) -> tuple[str, object]:
    """What decoding ``data`` gives; any exception but InvalidMessage escapes."""
    try:
        return ("message", decode_message(data, backend=backend))
    except InvalidMessage as exc:
        return ("invalid", exc.reason)


def wire(kind: str, **fields: object) -> str:
    """A message as compact JSON text (``fields`` may hold invalid values)."""
    return json.dumps({"type": kind, **fields}, separators=(",", ":"), ensure_ascii=False)


def with_x(value: str) -> str:
    return f'{{"type":"ping","x":{value}}}'


def assert_backends_agree(data: str | bytes) -> None:
    """Same message, or same reason: the backends are interchangeable."""
    assert ORJSON is not None
    assert outcome(STDLIB_JSON, data) == outcome(ORJSON, data)


# --- wire forms ------------------------------------------------------------------


WIRE_FORMS: list[tuple[Message, str]] = [
    (Auth(token="t", headers={"X-Client": "1"}), '{"type":"auth","token":"t","X-Client":"1"}'),
    (Auth(), '{"type":"auth"}'),
    (
        PushEvent(repository="todos", event=EVENT),
        f'{{"type":"push_event","repository":"todos","event":{EVENT_JSON}}}',
    ),
    (
        PushEventsBatch(repository="todos", events=(EVENT, EVENT)),
        f'{{"type":"push_events_batch","repository":"todos","events":[{EVENT_JSON},{EVENT_JSON}]}}',
    ),
    (
        RequestEvents(repository="todos", after_sequence=3, limit=5, filter={"since": "x"}),
        '{"type":"request_events","repository":"todos","afterSequence":3,"limit":5,"since":"x"}',
    ),
    (RequestEvents(repository="todos"), '{"type":"request_events","repository":"todos"}'),
    (RequestAllEvents(), '{"type":"request_all_events"}'),
    (RequestAllEvents(repository="todos"), '{"type":"request_all_events","repository":"todos"}'),
    (
        EventsReceived(repository="todos", count=2),
        '{"type":"events_received","repository":"todos","count":2}',
    ),
    (Ping(), '{"type":"ping"}'),
    (Pong(), '{"type":"pong"}'),
    (AuthSuccess(), '{"type":"auth_success"}'),
    (
        Events(repository="todos", events=(EVENT.with_sequence(7),)),
        '{"type":"events","repository":"todos","events":['
        + EVENT_JSON[:-1]
        + ',"serverSequence":7}]}',
    ),
    (
        Ack(event_ids=("a", "b"), repositories={"todos": ("a", "b")}),
        '{"type":"ack","eventIds":["a","b"],"repositories":{"todos":["a","b"]}}',
    ),
    (Ack(event_ids=()), '{"type":"ack","eventIds":[],"repositories":{}}'),
    (SyncComplete(), '{"type":"sync_complete"}'),
    (SyncComplete(repository="todos"), '{"type":"sync_complete","repository":"todos"}'),
    (Error(message="héllo ☃ 😀"), '{"type":"error","message":"héllo ☃ 😀"}'),
    (
        Error(message="Failed to push event: no", event_ids=("a", "b"), code="forbidden"),
        '{"type":"error","message":"Failed to push event: no","eventIds":["a","b"],'
        '"code":"forbidden"}',
    ),
    (Error(message="m", code="unavailable"), '{"type":"error","message":"m","code":"unavailable"}'),
]


@pytest.mark.parametrize("backend", BACKENDS)
def test_error_fields_may_be_null_or_empty(backend: JsonBackend) -> None:
    text = wire("error", message="m", eventIds=None, code=None)
    assert decode_message(text, backend=backend) == Error(message="m")
    assert decode_message(wire("error", message="m", eventIds=[]), backend=backend) == Error(
        message="m"
    )


def test_only_named_events_with_a_known_code_are_refused_for_good() -> None:
    assert Error(message="m", event_ids=("a",), code="forbidden").permanent
    assert Error(message="m", event_ids=("a",), code="invalid").permanent
    assert not Error(message="m", event_ids=("a",), code="unavailable").permanent
    assert not Error(message="m", event_ids=("a",), code="some future code").permanent
    assert not Error(message="m", event_ids=("a",)).permanent
    assert not Error(message="m", code="forbidden").permanent


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("message", "text"), WIRE_FORMS)
def test_wire_form(backend: JsonBackend, message: Message, text: str) -> None:
    assert encode_message(message, backend=backend) == text
    assert decode_message(text, backend=backend) == message
    assert decode_message(text.encode(), backend=backend) == message


# --- round trips and agreement ------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@given(message=messages)
def test_decode_inverts_encode(backend: JsonBackend, message: Message) -> None:
    text = encode_message(message, backend=backend)
    assert decode_message(text, backend=backend) == message
    assert decode_message(text.encode("utf-8"), backend=backend) == message


@needs_orjson
@given(message=messages)
def test_backends_write_the_same_compact_text(message: Message) -> None:
    assert ORJSON is not None
    text = encode_message(message, backend=STDLIB_JSON)
    assert encode_message(message, backend=ORJSON) == text
    # Compact, and nothing escaped that need not be: writing it again changes nothing.
    assert ORJSON.dumps(json.loads(text)) == text


@needs_orjson
@given(value=json_values)
def test_backends_write_any_payload_alike(value: object) -> None:
    assert ORJSON is not None
    assert STDLIB_JSON.dumps(value) == ORJSON.dumps(value)


@needs_orjson
@given(number=st.floats(allow_nan=False, allow_infinity=False))
@example(1e-05)
@example(-9.99e-05)
@example(1.5e-07)
@example(1e-09)
@example(1e-10)
@example(1e16)
def test_floats_are_written_alike(number: float) -> None:
    assert ORJSON is not None
    assert STDLIB_JSON.dumps([number]) == ORJSON.dumps([number])
    assert STDLIB_JSON.loads(STDLIB_JSON.dumps(number)) == number


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("number", "text"),
    [
        (1e-05, "0.00001"),
        (-9.99e-05, "-0.0000999"),
        (1.5e-07, "1.5e-7"),
        (-2e-06, "-2e-6"),
        (1e-10, "1e-10"),
        (1e16, "1e+16"),
        (0.0001, "0.0001"),
        (-0.0, "-0.0"),
    ],
)
def test_float_format(backend: JsonBackend, number: float, text: str) -> None:
    assert backend.dumps(number) == text


def test_float_format_by_hand_covers_every_container() -> None:
    value = {"a": [1e-7, {"b": (1, "x")}, None, True], "c": 0.5}
    text = '{"a":[1e-7,{"b":[1,"x"]},null,true],"c":0.5}'
    assert STDLIB_JSON.dumps(value) == text
    # "e-0" in a string alone does not take the slow way, and changes nothing.
    assert STDLIB_JSON.dumps(["the-05"]) == '["the-05"]'


@needs_orjson
@settings(max_examples=300, deadline=None)
@given(data=st.text())
def test_backends_agree_on_any_text(data: str) -> None:
    assert_backends_agree(data)


@needs_orjson
@settings(max_examples=300, deadline=None)
@given(data=st.binary())
def test_backends_agree_on_any_bytes(data: bytes) -> None:
    assert_backends_agree(data)


# Pieces that sit on the edges of the grammar.
TOKENS = [
    "{", "}", "[", "]", ",", ":", '"', "\\", " ", "\ufeff", "\ud800", "\x00", "\n",
    '"type"', '"ping"', '"events"', '"repository"', "true", "null", "NaN", "-Infinity",
    "0", "-0", "01", "1.", "1e400", "-1e400", "1e-7", "1e19", "9223372036854775807",
    "9223372036854775808", "-9223372036854775809", "18446744073709551616", "0.00001",
    '"\\ud800"', '"\\udc00"', '"\\ud83d\\ude00"', '"\\u0000"', "[" * 70, "]" * 70,
]  # fmt: skip


@st.composite
def mutated_messages(draw: st.DrawFn) -> str:
    text = encode_message(draw(messages), backend=STDLIB_JSON)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        start = draw(st.integers(min_value=0, max_value=len(text)))
        end = draw(st.integers(min_value=start, max_value=min(len(text), start + 3)))
        piece = draw(st.sampled_from(TOKENS) | st.text(max_size=2))
        text = text[:start] + piece + text[end:]
    return text


@needs_orjson
@settings(max_examples=500, deadline=None)
@given(data=mutated_messages())
def test_backends_agree_on_mutated_messages(data: str) -> None:
    assert_backends_agree(data)
    assert_backends_agree(data.encode("utf-8", "surrogatepass"))


@needs_orjson
@settings(max_examples=300, deadline=None)
@given(pieces=st.lists(st.sampled_from(TOKENS), max_size=12))
def test_backends_agree_on_token_soup(pieces: list[str]) -> None:
    data = '{"type":"error","message":"m","x":' + "".join(pieces) + "}"
    assert_backends_agree(data)
    assert_backends_agree("".join(pieces))


# --- what is accepted ------------------------------------------------------------


DEPTH_64 = '{"type":"ping","x":' + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1) + "}"
DART_EVENT = (
    '{"_event_id":"0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b","_operation":1,'
    '"_created_at":"2024-05-01T12:34:56.789Z","_data":{"a":1},"_data_id":"d1","serverSequence":3}'
)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("text", "message"),
    [
        (wire("ping", future=[1, {"x": None}]), Ping()),
        (DEPTH_64, Ping()),
        (
            wire("events_received", repository="r", count=0, v=2),
            EventsReceived(repository="r", count=0),
        ),
        ('{"type":"error","message":"a","message":"b"}', Error(message="b")),
        ('{"type":"error","message":"\\ud83d\\ude00 \\u00e9\\/"}', Error(message="😀 é/")),
        (' \t\r\n{"type":"pong"}\n ', Pong()),
        (
            wire("auth", token=None, Authorization="Bearer x"),
            Auth(headers={"Authorization": "Bearer x"}),
        ),
        (wire("request_all_events", repository=None), RequestAllEvents()),
        (wire("sync_complete", repository=None), SyncComplete()),
        (
            wire("request_events", repository="r", afterSequence=None, limit=None),
            RequestEvents(repository="r"),
        ),
        (
            wire("request_events", repository="r", afterSequence=0, since="2024-05-01", tags=[1]),
            RequestEvents(
                repository="r", after_sequence=0, filter={"since": "2024-05-01", "tags": [1]}
            ),
        ),
        (wire("ack", eventIds=["a"]), Ack(event_ids=("a",))),
        (wire("ack", eventIds=["a"], repositories=None), Ack(event_ids=("a",))),
        (wire("events", repository="r", events=[]), Events(repository="r", events=())),
        (
            wire("request_events", repository="r", x=[2**63 - 1, -(2**63), 1e19, -0.0]),
            RequestEvents(repository="r", filter={"x": [2**63 - 1, -(2**63), 1e19, -0.0]}),
        ),
        (with_x("-0"), Ping()),
    ],
)
def test_accepted(backend: JsonBackend, text: str, message: Message) -> None:
    assert decode_message(text, backend=backend) == message


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("created_at", ["2024-05-01T12:34:56.789Z", "2024-05-01T12:34:56.789123Z"])
def test_dart_events_survive_a_round_trip(backend: JsonBackend, created_at: str) -> None:
    event = DART_EVENT.replace("2024-05-01T12:34:56.789Z", created_at)
    # The Dart reference server adds the repository to the events it fetches.
    fetched = event[:-1] + ',"repository":"todos"}'
    text = f'{{"type":"events","repository":"todos","events":[{event},{fetched}]}}'
    message = decode_message(text, backend=backend)
    assert json.loads(encode_message(message, backend=backend)) == json.loads(text)
    assert isinstance(message, Events)
    assert message.events[1].extra == {"repository": "todos"}


@pytest.mark.parametrize("backend", BACKENDS)
def test_legacy_event_names_are_read_and_current_ones_written(backend: JsonBackend) -> None:
    legacy = (
        '{"eventId":"e1","operation":"update","createdAt":1714566896789,'
        '"data":{"a":1},"dataId":"d1","serverSequence":3,"repository":"todos"}'
    )
    message = decode_message(
        f'{{"type":"push_event","repository":"todos","event":{legacy}}}', backend=backend
    )
    assert json.loads(encode_message(message, backend=backend))["event"] == {
        "_event_id": "e1",
        "_operation": 1,
        "_created_at": "2024-05-01T12:34:56.789Z",
        "_data": {"a": 1},
        "_data_id": "d1",
        "serverSequence": 3,
        "repository": "todos",
    }


# --- what is rejected, and why -----------------------------------------------------


GOOD: dict[str, object] = {
    "_event_id": "e",
    "_operation": 0,
    "_created_at": "2024-05-01T00:00:00.000Z",
    "_data_id": "d",
    "_data": {},
}


def push(**changes: object) -> str:
    """A push_event whose event is GOOD with ``changes`` (None deletes a field)."""
    event = {**GOOD, **changes}
    return wire(
        "push_event", repository="r", event={k: v for k, v in event.items() if v is not None}
    )


DEEP = "[" * MAX_DEPTH + "]" * MAX_DEPTH
NOT_EMPTY = "must be a non-empty string"
IDS = "must be a list of non-empty strings"
CREATED_AT = "_created_at must be an ISO-8601 string or epoch milliseconds"

BAD_INPUTS: list[tuple[str | bytes, str]] = [
    # bytes and text
    (b"\xff", "not valid UTF-8 (byte 0)"),
    (b'{"type":"ping","x":"\xc3"}', "not valid UTF-8"),
    (b'{"type":"ping","x":"\xed\xa0\x80"}', "not valid UTF-8"),
    ("\ufeff" + '{"type":"ping"}', "byte order mark"),
    (b"\xef\xbb\xbf" + b'{"type":"ping"}', "byte order mark"),
    ('{"type":"ping","x":"\ud800"}', "lone surrogate"),
    (with_x('"\\ud800"'), "lone surrogate"),
    (with_x('"\\udc00\\ud800"'), "lone surrogate"),
    ('{"type":"ping","\\udfff":1}', "lone surrogate"),
    # JSON
    ("", "empty message"),
    (" \n", "empty message"),
    ("{", "not valid JSON"),
    ('{"type":"ping"', "not valid JSON"),
    ("{'type':'ping'}", "not valid JSON"),
    ('{"type":"ping",}', "not valid JSON"),
    (with_x("01"), "not valid JSON"),
    (with_x('"a\x00"'), "not valid JSON"),
    ('{"type":"ping"} {}', "trailing data after the JSON value at line 1 column 17"),
    ('{"type":"ping"}x', "trailing data"),
    (with_x("NaN"), "NaN is not valid JSON"),
    (with_x("Infinity"), "Infinity is not valid JSON"),
    (with_x("-Infinity"), "-Infinity is not valid JSON"),
    (with_x("1e400"), "number 1e400 is too large for a float"),
    (with_x("-1e400"), "too large for a float"),
    (with_x("9223372036854775808"), "integer outside the 64-bit signed range"),
    (with_x("-9223372036854775809"), "integer outside the 64-bit signed range"),
    (with_x("18446744073709551616"), "integer outside the 64-bit signed range"),
    (with_x("1" * 5000), "integer outside the 64-bit signed range"),
    (with_x(DEEP), f"nesting deeper than {MAX_DEPTH} levels"),
    ("[" * 100_000 + "]" * 100_000, "nesting deeper than"),
    # messages
    ("[]", "a message must be a JSON object"),
    ('"ping"', "a message must be a JSON object"),
    ("null", "a message must be a JSON object"),
    ("{}", "message is missing type"),
    ('{"type":null}', "message type must be a string"),
    ('{"type":1}', "message type must be a string"),
    ('{"type":"PING"}', "unknown message type 'PING'"),
    (wire("push_event", event=GOOD), "push_event is missing repository"),
    (wire("push_event", repository="", event=GOOD), f"push_event repository {NOT_EMPTY}"),
    (wire("push_event", repository=["r"], event=GOOD), f"push_event repository {NOT_EMPTY}"),
    (wire("push_event", repository="r"), "push_event is missing event"),
    (wire("push_event", repository="r", event=[]), "push_event event: an event must be a JSON"),
    (wire("push_events_batch", repository="r"), "push_events_batch is missing events"),
    (wire("push_events_batch", repository="r", events={}), "events must be a list of events"),
    (
        wire("push_events_batch", repository="r", events=[GOOD, {}]),
        "push_events_batch events: event is missing _event_id",
    ),
    (
        wire("request_events", repository="r", afterSequence=-1),
        "afterSequence must be an integer >= 0",
    ),
    (
        wire("request_events", repository="r", afterSequence=True),
        "afterSequence must be an integer",
    ),
    (wire("request_events", repository="r", afterSequence="1"), "afterSequence must be an integer"),
    (wire("request_events", repository="r", afterSequence=1.0), "afterSequence must be an integer"),
    (
        wire("request_events", repository="r", limit=0),
        "request_events limit must be an integer >= 1",
    ),
    (wire("request_all_events", repository=""), f"request_all_events repository {NOT_EMPTY}"),
    (
        wire("push_event", repository="r\x00", event=GOOD),
        "push_event repository must not contain NUL characters",
    ),
    (
        wire("events", repository="\x00", events=[]),
        "events repository must not contain NUL characters",
    ),
    (
        wire("request_events", repository="a\x00b"),
        "request_events repository must not contain NUL characters",
    ),
    (
        wire("sync_complete", repository="\x00"),
        "sync_complete repository must not contain NUL characters",
    ),
    # A lone surrogate never gets that far: the JSON grammar refuses it.
    (wire("push_event", repository="r\udc00", event=GOOD), "lone surrogate"),
    (wire("events_received", repository="r", count=-1), "count must be an integer >= 0"),
    (wire("events_received", repository="r"), "events_received is missing count"),
    (wire("events", events=[]), "events is missing repository"),
    (wire("ack"), "ack is missing eventIds"),
    (wire("ack", eventIds="a"), f"ack eventIds {IDS}"),
    (wire("ack", eventIds=[""]), f"ack eventIds {IDS}"),
    (wire("ack", eventIds=[None]), f"ack eventIds {IDS}"),
    (wire("ack", eventIds=[], repositories=[]), "ack repositories must be an object"),
    (wire("ack", eventIds=[], repositories={"": []}), "ack repositories must not have an empty"),
    (wire("ack", eventIds=[], repositories={"r": "a"}), f"ack repositories['r'] {IDS}"),
    (wire("sync_complete", repository=5), f"sync_complete repository {NOT_EMPTY}"),
    (wire("error"), "error is missing message"),
    (wire("error", message=1), "error message must be a string"),
    (wire("error", message="m", eventIds="a"), f"error eventIds {IDS}"),
    (wire("error", message="m", eventIds=[""]), f"error eventIds {IDS}"),
    (wire("error", message="m", eventIds=[1]), f"error eventIds {IDS}"),
    (wire("error", message="m", code=1), "error code must be a string"),
    (wire("error", message="m", code=["forbidden"]), "error code must be a string"),
    (wire("auth", token=1), "auth token must be a string or null"),
    (wire("auth", token="t", **{"X-Id": 7}), "auth header 'X-Id' must be a string"),
    # events
    (push(_event_id=None), "push_event event: event is missing _event_id"),
    (push(_event_id=""), "event _event_id must not be empty"),
    (push(_data_id=4), "event _data_id must be a string"),
    (push(_event_id="e\x00"), "push_event event: event _event_id must not contain NUL characters"),
    (push(_data_id="\x00"), "event _data_id must not contain NUL characters"),
    (push(_event_id="\ud800"), "lone surrogate"),
    (push(_operation=3), "unknown _operation 3"),
    (push(_operation="upsert"), "unknown _operation 'upsert'"),
    (push(_operation=True), "_operation must be 0, 1, 2 or an operation name"),
    (push(_operation=None), "event is missing _operation"),
    (push(_created_at="yesterday"), "_created_at is not ISO-8601: 'yesterday'"),
    (push(_created_at=True), CREATED_AT),
    (push(_created_at=1e300), "_created_at is out of range"),
    (push(_data=[1]), "event _data must be an object or null"),
    (push(_data=None), "event _data is required for insert"),
    (push(serverSequence=0), "event serverSequence must be a positive integer"),
    (push(serverSequence=2**63), "integer outside the 64-bit signed range"),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("data", "reason"), BAD_INPUTS, ids=[f"bad{index}" for index in range(len(BAD_INPUTS))]
)
def test_rejected(backend: JsonBackend, data: str | bytes, reason: str) -> None:
    with pytest.raises(InvalidMessage) as info:
        decode_message(data, backend=backend)
    assert reason in info.value.reason


def test_the_table_is_big_enough() -> None:
    assert len(BAD_INPUTS) >= 40


# --- encoding misuse -------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (Auth(headers={"token": "x"}), "auth header 'token' clashes with a protocol field"),
        (Auth(headers={"type": "x"}), "auth header 'type' clashes"),
        (RequestEvents(repository="r", filter={"limit": 1}), "filter field 'limit' clashes"),
        (RequestEvents(repository="r", filter={"x": {1, 2}}), "cannot encode as JSON"),
        (RequestEvents(repository="r", filter={"x": {1: 1e-7}}), "cannot encode as JSON"),
        ("ping", "not a protocol message: str"),
    ],
)
def test_encode_refuses(backend: JsonBackend, message: Message, reason: str) -> None:
    with pytest.raises(LocalProtocolError) as info:
        encode_message(message, backend=backend)
    assert reason in str(info.value)


# --- the backends ----------------------------------------------------------------


def test_default_backend_is_orjson_when_installed() -> None:
    assert DEFAULT_BACKEND is (ORJSON or STDLIB_JSON)
    assert STDLIB_JSON.name == "json"
    assert ORJSON is None or ORJSON.name == "orjson"
    assert decode_message('{"type":"ping"}') == Ping()
    assert encode_message(Ping()) == '{"type":"ping"}'


def test_without_orjson_there_is_no_orjson_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "orjson", None)  # makes "import orjson" fail
    assert _json._orjson_backend() is None


@pytest.mark.parametrize("backend", BACKENDS)
def test_backends_parse_any_json_value(backend: JsonBackend) -> None:
    assert backend.loads("[1,2.5,null]") == [1, 2.5, None]
    assert backend.loads(b"7") == 7
    with pytest.raises(InvalidMessage, match="64-bit"):
        backend.loads("9223372036854775808")


# --- fitting a size limit ----------------------------------------------------------


def json_list(run: tuple[str, ...]) -> str:
    return json.dumps(list(run), ensure_ascii=False, separators=(",", ":"))


def utf8_len(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


@given(items=st.lists(st.text(max_size=30), max_size=40), limit=st.integers(1, 300))
def test_encode_to_fit_splits_in_order_until_each_part_fits(items: list[str], limit: int) -> None:
    parts = encode_to_fit(items, json_list, limit)
    assert [item for part in parts for item in part.items] == items
    for part in parts:
        assert part.text == json_list(part.items)
        size = utf8_len(part.text)
        # Only a lone item too big alone is over the limit, and it says by how much.
        assert part.oversize == (size if size > limit else 0)
        assert not part.oversize or len(part.items) == 1
    if items and utf8_len(json_list(tuple(items))) <= limit:
        assert parts == [EncodedPart(items=tuple(items), text=json_list(tuple(items)))]


def test_encode_to_fit_encodes_once_when_everything_fits() -> None:
    calls: list[tuple[str, ...]] = []

    def encode(run: tuple[str, ...]) -> str:
        calls.append(run)
        return json_list(run)

    assert encode_to_fit(["a", "b"], encode, 100) == [
        EncodedPart(items=("a", "b"), text='["a","b"]')
    ]
    assert calls == [("a", "b")]
    assert encode_to_fit([], encode, 100) == []


@pytest.mark.parametrize(
    ("text", "limit", "over"),
    [
        ("abc", 3, 0),
        ("abcd", 3, 4),
        ("é", 1, 2),  # counted in UTF-8 bytes, not characters
        ("😀", 4, 0),
        ("\ud800", 2, 3),  # a decoded text may hold a lone surrogate: still counted
    ],
)
def test_utf8_size_over(text: str, limit: int, over: int) -> None:
    assert utf8_size_over(text, limit) == over


# --- the one-pass decoding of the usual messages ------------------------------------


def checked_outcome(backend: JsonBackend, data: str | bytes) -> tuple[str, object]:
    """What the field-by-field path, after a strict parse, makes of ``data`` (as outcome())."""
    try:
        return ("message", codec._decode_checked(data, backend))
    except InvalidMessage as exc:
        return ("invalid", exc.reason)


PUSH = '{"type":"push_event","repository":"todos","event":%s}'
PLAIN_EVENT = (
    '{"_event_id":"e1","_operation":0,"_created_at":"2024-05-01T12:34:56.789Z",'
    '"_data_id":"d1","_data":%s%s}'
)


def plain_push(data: str = '{"a":1}', more: str = "") -> str:
    return PUSH % (PLAIN_EVENT % (data, more))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (plain_push('{"n":9223372036854775808}'), "integer outside the 64-bit signed range"),
        (plain_push('{"n":18446744073709551616}'), "integer outside the 64-bit signed range"),
        (plain_push('{"n":1e19}'), None),
        (plain_push('{"n":-9223372036854775808}'), None),
        (plain_push("{}", ',"serverSequence":9223372036854775808'), "64-bit"),
        # The message is level 1, its event 2, the event's fields 3.
        (plain_push("{}", ',"x":' + "[" * 63 + "]" * 63), "nesting deeper than 64 levels"),
        (plain_push("{}", ',"x":' + "[" * 62 + "]" * 62), None),
        (plain_push('{"a":' + "[" * 62 + "]" * 62 + "}"), "nesting deeper than 64 levels"),
        (plain_push('{"a":' + "[" * 61 + "]" * 61 + "}"), None),
        (plain_push("{}", ',"x":1e400'), "too large for a float"),
        (plain_push('{"a":1}', ',"x":{"y":99999999999999999999}'), "64-bit"),
        (
            '{"type":"push_event","repository":"","event":%s}' % (PLAIN_EVENT % ("{}", "")),
            "repository",
        ),
        ('{"type":"push_event","repository":"todos"}', "push_event is missing event"),
        ('{"type":"push_event","repository":"todos","event":1,"x":2}', "push_event event"),
        ('{"type":"events","repository":"todos","events":[%s]}' % (PLAIN_EVENT % ("{}", "")), None),
        ('{"type":"events","repository":"todos","events":[1]}', "events events"),
        ('{"type":"events","repository":"todos","events":{}}', "a list of events"),
        ('{"type":"push_events_batch","repository":"todos","events":[],"x":1}', None),
        ('{"type":"ack","eventIds":["e1"],"repositories":{"todos":["e1"]}}', None),
        ('{"type":"ack","eventIds":["e1"],"x":[1]}', None),
        ('{"type":"ack","eventIds":[""]}', "ack eventIds must be a list of non-empty strings"),
        ('{"type":"ack","eventIds":["e1"],"x":[99999999999999999999]}', "64-bit"),
    ],
)
def test_the_usual_messages_are_decoded_in_one_pass_with_every_limit(
    backend: JsonBackend, data: str, reason: str | None
) -> None:
    kind, result = outcome(backend, data)
    assert (kind, result) == checked_outcome(backend, data)
    if reason is None:
        assert kind == "message"
    else:
        assert kind == "invalid" and reason in str(result)


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=300, deadline=None)
@given(data=mutated_messages())
def test_one_pass_decoding_agrees_with_the_checked_path(backend: JsonBackend, data: str) -> None:
    assert outcome(backend, data) == checked_outcome(backend, data)


def test_a_backend_without_a_bare_parser_decodes_by_the_checked_path() -> None:
    backend = JsonBackend(name="strict only", loads=STDLIB_JSON.loads, dumps=STDLIB_JSON.dumps)
    assert decode_message(plain_push(), backend=backend) == decode_message(plain_push())
    with pytest.raises(InvalidMessage, match="64-bit"):
        decode_message(plain_push('{"n":9223372036854775808}'), backend=backend)


# --- the acks of the hot paths ------------------------------------------------------

# The characters JSON writers escape, or might: quotes, backslashes, controls, DEL, non-ASCII.
awkward_text = st.text(st.sampled_from('a-0"\\\x00\x1f\x7f é\u2028\ud800😀'), max_size=6)
ack_strings = st.one_of(
    st.sampled_from(["todos", "0190a000-0000-7000-8000-00000000002a"]), awkward_text
)


def backend_outcome(backend: JsonBackend, message: Message) -> tuple[str, object]:
    """What encoding ``message`` on ``backend`` gives, or the kind of error it raises."""
    try:
        return ("text", encode_message(message, backend=backend))
    except LocalProtocolError:
        return ("refused", None)


@settings(max_examples=500, deadline=None)
@given(repository=ack_strings, event_ids=st.lists(ack_strings, max_size=3).map(tuple))
@example(repository="todos", event_ids=())
@example(repository="todos", event_ids=("e1", "e2"))
@example(repository='a"b', event_ids=("e1",))
@example(repository="todos", event_ids=("e\\1",))
def test_the_ack_of_a_push_is_the_text_of_its_message(
    repository: str, event_ids: tuple[str, ...]
) -> None:
    message = Ack(event_ids=event_ids, repositories={repository: event_ids})
    expected = backend_outcome(DEFAULT_BACKEND, message)
    try:
        assert ("text", codec.encode_push_ack(repository, event_ids)) == expected
    except LocalProtocolError:
        assert expected == ("refused", None)
    if expected[0] == "text" and ORJSON is not None:
        assert backend_outcome(STDLIB_JSON, message) == expected  # whatever the backend


ack_ids = st.lists(st.sampled_from(["e1", "e2", ""]) | st.integers(0, 2), max_size=3)


@st.composite
def ack_like(draw: st.DrawFn) -> str:
    """Acks of one repository, valid or nearly: the shape the one-pass decoder looks for."""
    ids = draw(ack_ids | st.none() | st.just("e1"))
    named = ids if draw(st.booleans()) else draw(ack_ids | st.none())
    fields: dict[str, object] = {
        "eventIds": ids,
        "repositories": {draw(st.sampled_from(["todos", ""])): named},
    }
    if draw(st.booleans()):
        fields["x"] = 1
    if draw(st.booleans()):
        del fields["eventIds"]
    return wire("ack", **fields)


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=300, deadline=None)
@given(data=ack_like())
def test_one_pass_ack_decoding_agrees_with_the_checked_path(
    backend: JsonBackend, data: str
) -> None:
    assert outcome(backend, data) == checked_outcome(backend, data)


def test_the_message_builders_build_what_the_constructors_do() -> None:
    from lfws_core.messages import _ack, _push_event

    assert _push_event("todos", EVENT) == PushEvent(repository="todos", event=EVENT)
    ids = ("e1",)
    assert _ack(ids, {"todos": ids}) == Ack(event_ids=ids, repositories={"todos": ids})
