"""Hypothesis strategies for events and protocol messages, shared by the suites.

Import them as ``from tests.strategies import sync_events, client_messages,
server_messages``; every name is a strategy (``@given(sync_events)``).
Everything drawn here is valid: it encodes, and decodes back to an equal
value, on every JSON backend.
"""

from __future__ import annotations

from datetime import UTC

from hypothesis import strategies as st

from lfws_core.events import JsonValue, Operation, SyncEvent
from lfws_core.messages import (
    Ack,
    Auth,
    AuthSuccess,
    ClientMessage,
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
    ServerMessage,
    SyncComplete,
)

__all__ = [
    "client_messages",
    "event_ids",
    "json_objects",
    "json_values",
    "messages",
    "repositories",
    "sequences",
    "server_messages",
    "sync_events",
]

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
sequences = st.integers(min_value=1, max_value=2**63 - 1)
"""Server sequence numbers."""

json_scalars: st.SearchStrategy[JsonValue] = st.one_of(
    st.none(),
    st.booleans(),
    INT64,
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(),
)
json_values: st.SearchStrategy[JsonValue] = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=12,
)
"""Any JSON value the codec accepts (shallow enough for every position)."""

json_objects: st.SearchStrategy[dict[str, JsonValue]] = st.dictionaries(
    st.text(), json_values, max_size=5
)

names = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1)
"""Ids and repository names: non-empty, no NUL (text() draws no lone surrogates)."""

repositories = st.one_of(st.sampled_from(["todos", "notes", "counter_log"]), names)
"""Repository names: non-empty strings."""

event_ids = st.one_of(st.uuids(version=4).map(str), names)
"""Event ids: non-empty strings (UUIDs mostly)."""

# Fields an event writes itself, and the pre-0.8 names read in their place:
# neither may appear among the extra fields of an event that must round-trip.
_EVENT_FIELDS = frozenset(
    {"_event_id", "_operation", "_created_at", "_data", "_data_id", "serverSequence"}
    | {"eventId", "operation", "createdAt", "data", "dataId"}
)


@st.composite
def _sync_events(draw: st.DrawFn) -> SyncEvent:
    """Events of every operation, with or without a sequence and extra fields."""
    operation = draw(st.sampled_from(Operation))
    data = draw(json_objects if operation is not Operation.DELETE else st.none() | json_objects)
    return SyncEvent(
        event_id=draw(event_ids),
        operation=operation,
        data_id=draw(names),
        created_at=draw(st.datetimes(timezones=st.just(UTC))),
        data=data,
        server_sequence=draw(st.none() | sequences),
        extra=draw(
            st.dictionaries(
                st.text().filter(lambda key: key not in _EVENT_FIELDS), json_values, max_size=3
            )
        ),
    )


sync_events: st.SearchStrategy[SyncEvent] = _sync_events()
"""Events of every operation, with or without a sequence and extra fields."""

_event_tuples = st.lists(sync_events, max_size=4).map(tuple)
_id_tuples = st.lists(event_ids, max_size=4).map(tuple)


def _fields_except(*reserved: str) -> st.SearchStrategy[str]:
    return st.text().filter(lambda key: key not in reserved)


client_messages: st.SearchStrategy[ClientMessage] = st.one_of(
    st.builds(
        Auth,
        token=st.none() | st.text(),
        headers=st.dictionaries(_fields_except("type", "token"), st.text(), max_size=3),
    ),
    st.builds(PushEvent, repository=repositories, event=sync_events),
    st.builds(PushEventsBatch, repository=repositories, events=_event_tuples),
    st.builds(
        RequestEvents,
        repository=repositories,
        after_sequence=st.none() | st.integers(min_value=0, max_value=2**63 - 1),
        limit=st.none() | sequences,
        filter=st.dictionaries(
            _fields_except("type", "repository", "afterSequence", "limit"), json_values, max_size=3
        ),
    ),
    st.builds(RequestAllEvents, repository=st.none() | repositories),
    st.builds(
        EventsReceived,
        repository=repositories,
        count=st.integers(min_value=0, max_value=2**63 - 1),
    ),
    st.just(Ping()),
    st.just(Pong()),
)
"""Every message a client sends, with every field drawn."""

server_messages: st.SearchStrategy[ServerMessage] = st.one_of(
    st.just(AuthSuccess()),
    st.builds(Events, repository=repositories, events=_event_tuples),
    st.builds(
        Ack,
        event_ids=_id_tuples,
        repositories=st.dictionaries(repositories, _id_tuples, max_size=3),
    ),
    st.builds(SyncComplete, repository=st.none() | repositories),
    st.builds(
        Error,
        message=st.text(),
        event_ids=_id_tuples,
        code=st.none() | st.sampled_from(["forbidden", "invalid", "unavailable"]) | st.text(),
    ),
    st.just(Ping()),
    st.just(Pong()),
)
"""Every message a server sends, with every field drawn."""

messages: st.SearchStrategy[Message] = st.one_of(client_messages, server_messages)
"""Every protocol message."""
