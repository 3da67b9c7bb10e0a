"""Protocol messages to JSON text and back, in the v1 (Dart) wire forms.

:func:`encode_message` writes compact JSON with non-ASCII characters as is;
:func:`decode_message` is the one decoder for both directions and raises
:class:`~lfws_core.errors.InvalidMessage`, and nothing else, with a precise
reason. The JSON grammar is strict (see :class:`JsonBackend`); on top of it
every message is checked field by field:

* ``type`` must name a known message.
* Repositories are non-empty strings; event ids too. Repository names and
  the ids of an event contain no NUL character and no lone surrogate (stores
  cannot keep them).
* ``afterSequence`` and ``count`` are integers >= 0, ``limit`` >= 1 (a JSON
  ``true`` is not an integer).
* An optional field may be absent or ``null``; both read as "not given".
* Unknown fields are ignored (a newer peer may add some), except in ``auth``,
  where every other field is a header whose value must be a string, and in
  ``request_events``, where they are the sync filter.

Both backends give the same text for a message, the same message for a text,
and reject the same texts. Message payloads (event data, filters) must be
JSON values the decoder would accept: the encoder does not check them again,
since most events it writes were checked when they were decoded.

:func:`encode_to_fit` splits a list of items (events) over as many messages
as a size limit demands; both sessions use it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeAlias, TypeGuard, TypeVar

from ._json import _MAX_INT, DEFAULT_BACKEND, MAX_DEPTH, ORJSON, STDLIB_JSON, JsonBackend
from ._json import within_limits as _within_limits
from ._names import name_fault
from .errors import InvalidMessage, LocalProtocolError
from .events import JsonValue, SyncEvent, event_from_json, event_wire_object
from .messages import (
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
    _ack,
    _push_event,
)

__all__ = [
    "DEFAULT_BACKEND",
    "EncodedPart",
    "JsonBackend",
    "MAX_DEPTH",
    "ORJSON",
    "STDLIB_JSON",
    "decode_message",
    "encode_message",
    "encode_push_ack",
    "encode_to_fit",
    "utf8_size_over",
]

_Object: TypeAlias = dict[str, JsonValue]


# --- decoding ----------------------------------------------------------------


def _invalid(obj: _Object, key: str, expected: str) -> InvalidMessage:
    if key not in obj:
        return InvalidMessage(f"{obj['type']} is missing {key}")
    return InvalidMessage(f"{obj['type']} {key} must be {expected}")


def _repository(obj: _Object) -> str:
    value = obj.get("repository")
    if type(value) is not str or not value:
        raise _invalid(obj, "repository", "a non-empty string")
    fault = name_fault(value)
    if fault is not None:
        raise InvalidMessage(f"{obj['type']} repository {fault}")
    return value


def _optional_repository(obj: _Object) -> str | None:
    return None if obj.get("repository") is None else _repository(obj)


def _count(obj: _Object, key: str, minimum: int) -> int:
    value = obj.get(key)
    if type(value) is int and value >= minimum:
        return value
    raise _invalid(obj, key, f"an integer >= {minimum}")


def _optional_count(obj: _Object, key: str, minimum: int) -> int | None:
    return None if obj.get(key) is None else _count(obj, key, minimum)


def _events(obj: _Object) -> tuple[SyncEvent, ...]:
    value = obj.get("events")
    if type(value) is not list:
        raise _invalid(obj, "events", "a list of events")
    try:
        return tuple([event_from_json(item) for item in value])
    except InvalidMessage as exc:
        raise InvalidMessage(f"{obj['type']} events: {exc.reason}") from None


def _ids(where: str, value: JsonValue) -> tuple[str, ...]:
    if type(value) is list and all(type(item) is str and item for item in value):
        return tuple(value)  # type: ignore[arg-type]  # checked just above
    raise InvalidMessage(f"{where} must be a list of non-empty strings")


def _decode_auth(obj: _Object) -> Auth:
    token = obj.get("token")
    if not (token is None or isinstance(token, str)):
        raise InvalidMessage("auth token must be a string or null")
    headers: dict[str, str] = {}
    for key, value in obj.items():
        if key in _AUTH_FIELDS:
            continue
        if not isinstance(value, str):
            raise InvalidMessage(f"auth header {key[:40]!r} must be a string")
        headers[key] = value
    return Auth(token=token, headers=headers)


def _decode_push_event(obj: _Object) -> PushEvent:
    repository = _repository(obj)
    if "event" not in obj:
        raise InvalidMessage("push_event is missing event")
    try:
        event = event_from_json(obj["event"])
    except InvalidMessage as exc:
        raise InvalidMessage(f"push_event event: {exc.reason}") from None
    return PushEvent(repository=repository, event=event)


def _decode_push_events_batch(obj: _Object) -> PushEventsBatch:
    return PushEventsBatch(repository=_repository(obj), events=_events(obj))


def _decode_request_events(obj: _Object) -> RequestEvents:
    return RequestEvents(
        repository=_repository(obj),
        after_sequence=_optional_count(obj, "afterSequence", 0),
        limit=_optional_count(obj, "limit", 1),
        filter={key: value for key, value in obj.items() if key not in _REQUEST_EVENTS_FIELDS},
    )


def _decode_request_all_events(obj: _Object) -> RequestAllEvents:
    return RequestAllEvents(repository=_optional_repository(obj))


def _decode_events_received(obj: _Object) -> EventsReceived:
    return EventsReceived(repository=_repository(obj), count=_count(obj, "count", 0))


def _decode_events(obj: _Object) -> Events:
    return Events(repository=_repository(obj), events=_events(obj))


def _decode_ack(obj: _Object) -> Ack:
    if "eventIds" not in obj:
        raise InvalidMessage("ack is missing eventIds")
    event_ids = _ids("ack eventIds", obj["eventIds"])
    by_repository = obj.get("repositories")
    if by_repository is None:
        return Ack(event_ids=event_ids)
    if type(by_repository) is not dict:
        raise _invalid(obj, "repositories", "an object")
    repositories: dict[str, tuple[str, ...]] = {}
    for name, ids in by_repository.items():
        if not name:
            raise InvalidMessage("ack repositories must not have an empty name")
        repositories[name] = _ids(f"ack repositories[{name[:40]!r}]", ids)
    return Ack(event_ids=event_ids, repositories=repositories)


def _decode_sync_complete(obj: _Object) -> SyncComplete:
    return SyncComplete(repository=_optional_repository(obj))


def _decode_error(obj: _Object) -> Error:
    message = obj.get("message")
    if type(message) is not str:
        raise _invalid(obj, "message", "a string")
    ids = obj.get("eventIds")
    code = obj.get("code")
    if not (code is None or type(code) is str):
        raise _invalid(obj, "code", "a string")
    return Error(
        message=message,
        event_ids=() if ids is None else _ids("error eventIds", ids),
        code=code,
    )


_AUTH_FIELDS = frozenset({"type", "token"})
_REQUEST_EVENTS_FIELDS = frozenset({"type", "repository", "afterSequence", "limit"})

_DECODERS: dict[str, Callable[[_Object], Message]] = {
    "auth": _decode_auth,
    "push_event": _decode_push_event,
    "push_events_batch": _decode_push_events_batch,
    "request_events": _decode_request_events,
    "request_all_events": _decode_request_all_events,
    "events_received": _decode_events_received,
    "ping": lambda obj: Ping(),
    "pong": lambda obj: Pong(),
    "auth_success": lambda obj: AuthSuccess(),
    "events": _decode_events,
    "ack": _decode_ack,
    "sync_complete": _decode_sync_complete,
    "error": _decode_error,
}


# --- the fast path: one pass for the messages of the hot paths ------------------
#
# Each returns the message the checked path below would return for ``obj``,
# or None whenever that path might do anything else (refuse it, or parse the
# text again by the book): then the checked path runs and decides. Every
# part of ``obj`` is either checked by its field's decoder (strings, ids,
# small integers) or walked for the depth and integer limits.


def _plain_name(value: JsonValue) -> TypeGuard[str]:
    return type(value) is str and value != "" and name_fault(value) is None


def _plain_event(obj: JsonValue, depth: int) -> SyncEvent | None:
    """Return the event of ``obj`` (a container at ``depth``) if valid and within the limits."""
    try:
        event = event_from_json(obj)
    except InvalidMessage:
        return None
    data = event.data
    sequence = event.server_sequence
    if (
        (sequence is not None and sequence > _MAX_INT)
        or (data and not _within_limits(data, depth + 1))  # type: ignore[arg-type]  # a dict
        or (event.extra and not _within_limits(event.extra, depth))  # type: ignore[arg-type]
    ):
        return None
    return event


def _plain_push_event(obj: _Object) -> Message | None:
    repository = obj.get("repository")
    if len(obj) != 3 or not _plain_name(repository):
        return None
    event = _plain_event(obj.get("event"), 2)
    return None if event is None else _push_event(repository, event)


def _plain_events(obj: _Object) -> Message | None:
    """``events`` and ``push_events_batch``: a repository and a list of events."""
    repository = obj.get("repository")
    items = obj.get("events")
    if len(obj) != 3 or not _plain_name(repository) or type(items) is not list:
        return None
    events = []
    for item in items:
        event = _plain_event(item, 3)
        if event is None:
            return None
        events.append(event)
    if obj["type"] == "events":
        return Events(repository=repository, events=tuple(events))
    return PushEventsBatch(repository=repository, events=tuple(events))


def _plain_ack(obj: _Object) -> Message | None:
    # Every field of an ack is a string, a list of strings or an object of
    # those: a decoded one is within the limits.
    ids = obj.get("eventIds")
    by_repository = obj.get("repositories")
    if len(obj) == 3 and type(by_repository) is dict and len(by_repository) == 1:
        # The usual ack, of one push: the same ids for one repository.
        ((name, named),) = by_repository.items()
        if named == ids and name and type(ids) is list and all(type(i) is str and i for i in ids):
            event_ids: tuple[str, ...] = tuple(ids)  # type: ignore[arg-type]  # checked
            return _ack(event_ids, {name: event_ids})
    if not obj.keys() <= _ACK_FIELDS:
        return None
    try:
        return _decode_ack(obj)
    except InvalidMessage:
        return None


_ACK_FIELDS = frozenset({"type", "eventIds", "repositories"})

_PLAIN_DECODERS: dict[str, Callable[[_Object], Message | None]] = {
    "push_event": _plain_push_event,
    "push_events_batch": _plain_events,
    "events": _plain_events,
    "ack": _plain_ack,
}


def decode_message(data: str | bytes, *, backend: JsonBackend | None = None) -> Message:
    """Decode one text frame (``str``, or UTF-8 ``bytes``) into a message.

    Raises :class:`~lfws_core.errors.InvalidMessage`, and nothing else, when
    ``data`` is not one valid protocol message; ``reason`` says why.
    ``backend`` defaults to :data:`DEFAULT_BACKEND`.
    """
    if backend is None:
        backend = DEFAULT_BACKEND
    parse = backend.parse
    if parse is not None:
        # One parse and one pass for the usual messages; the checked path
        # (a second parse) only for the rest and for whatever is in doubt.
        try:
            obj = parse(data)
        except (ValueError, RecursionError):
            pass
        else:
            if type(obj) is dict:
                kind = obj.get("type")
                plain = _PLAIN_DECODERS.get(kind) if type(kind) is str else None
                message = None if plain is None else plain(obj)
                if message is not None:
                    return message
    return _decode_checked(data, backend)


def _decode_checked(data: str | bytes, backend: JsonBackend) -> Message:
    obj = backend.loads(data)
    if type(obj) is not dict:
        raise InvalidMessage("a message must be a JSON object")
    kind = obj.get("type")
    if type(kind) is not str:
        if kind is None and "type" not in obj:
            raise InvalidMessage("message is missing type")
        raise InvalidMessage("message type must be a string")
    decoder = _DECODERS.get(kind)
    if decoder is None:
        raise InvalidMessage(f"unknown message type {kind[:40]!r}")
    return decoder(obj)


# --- encoding ----------------------------------------------------------------


def _reject_clashes(fields: Mapping[str, object], reserved: frozenset[str], what: str) -> None:
    if not reserved.isdisjoint(fields):
        clash = min(reserved.intersection(fields))
        raise LocalProtocolError(f"{what} {clash!r} clashes with a protocol field")


def _encode_auth(message: Auth) -> _Object:
    _reject_clashes(message.headers, _AUTH_FIELDS, "auth header")
    obj: _Object = {"type": "auth"}
    if message.token is not None:
        obj["token"] = message.token
    obj.update(message.headers)
    return obj


def _encode_push_event(message: PushEvent) -> _Object:
    return {
        "type": "push_event",
        "repository": message.repository,
        "event": event_wire_object(message.event),
    }


def _encode_push_events_batch(message: PushEventsBatch) -> _Object:
    return {
        "type": "push_events_batch",
        "repository": message.repository,
        "events": [event_wire_object(event) for event in message.events],
    }


def _encode_request_events(message: RequestEvents) -> _Object:
    _reject_clashes(message.filter, _REQUEST_EVENTS_FIELDS, "request_events filter field")
    obj: _Object = {"type": "request_events", "repository": message.repository}
    if message.after_sequence is not None:
        obj["afterSequence"] = message.after_sequence
    if message.limit is not None:
        obj["limit"] = message.limit
    obj.update(message.filter)
    return obj


def _encode_request_all_events(message: RequestAllEvents) -> _Object:
    if message.repository is None:
        return {"type": "request_all_events"}
    return {"type": "request_all_events", "repository": message.repository}


def _encode_events_received(message: EventsReceived) -> _Object:
    return {
        "type": "events_received",
        "repository": message.repository,
        "count": message.count,
    }


def _encode_events(message: Events) -> _Object:
    return {
        "type": "events",
        "repository": message.repository,
        "events": [event_wire_object(event) for event in message.events],
    }


def _encode_ack(message: Ack) -> _Object:
    return {
        "type": "ack",
        "eventIds": list(message.event_ids),
        "repositories": {name: list(ids) for name, ids in message.repositories.items()},
    }


def _encode_sync_complete(message: SyncComplete) -> _Object:
    if message.repository is None:
        return {"type": "sync_complete"}
    return {"type": "sync_complete", "repository": message.repository}


def _encode_error(message: Error) -> _Object:
    obj: _Object = {"type": "error", "message": message.message}
    if message.event_ids:
        obj["eventIds"] = list(message.event_ids)
    if message.code is not None:
        obj["code"] = message.code
    return obj


# Any: each encoder takes its own message class, which the key guarantees.
_ENCODERS: dict[type[Message], Callable[[Any], _Object]] = {
    Auth: _encode_auth,
    PushEvent: _encode_push_event,
    PushEventsBatch: _encode_push_events_batch,
    RequestEvents: _encode_request_events,
    RequestAllEvents: _encode_request_all_events,
    EventsReceived: _encode_events_received,
    Ping: lambda message: {"type": "ping"},
    Pong: lambda message: {"type": "pong"},
    AuthSuccess: lambda message: {"type": "auth_success"},
    Events: _encode_events,
    Ack: _encode_ack,
    SyncComplete: _encode_sync_complete,
    Error: _encode_error,
}


def encode_message(message: Message, *, backend: JsonBackend | None = None) -> str:
    """Encode ``message`` as compact JSON text in its v1 wire form.

    Raises :class:`~lfws_core.errors.LocalProtocolError` for an object that
    is not a message, a header or filter field named like a protocol field,
    or a payload JSON cannot carry. ``backend`` defaults to
    :data:`DEFAULT_BACKEND`.
    """
    encoder = _ENCODERS.get(type(message))
    if encoder is None:
        raise LocalProtocolError(f"not a protocol message: {type(message).__name__}")
    return (DEFAULT_BACKEND if backend is None else backend).dumps(encoder(message))


def encode_push_ack(repository: str, event_ids: tuple[str, ...]) -> str:
    """Encode the ``ack`` of one push: ``event_ids``, all of ``repository``.

    The text of ``encode_message(Ack(event_ids=event_ids,
    repositories={repository: event_ids}))``, written from a template when
    no string needs escaping (the usual ids and names), which the server
    does for every push.
    """
    # Both backends write a string as is between quotes when none of its
    # characters needs escaping: test them all at once.
    written = repository + "".join(event_ids)
    if written.isascii() and written.isprintable() and '"' not in written and "\\" not in written:
        ids = '"' + '","'.join(event_ids) + '"' if event_ids else ""
        return f'{{"type":"ack","eventIds":[{ids}],"repositories":{{"{repository}":[{ids}]}}}}'
    return encode_message(Ack(event_ids=event_ids, repositories={repository: event_ids}))


# --- size limits ---------------------------------------------------------------

_T = TypeVar("_T")


@dataclass(frozen=True, kw_only=True, slots=True)
class EncodedPart(Generic[_T]):
    """One message of :func:`encode_to_fit`: the items it carries and its text."""

    items: tuple[_T, ...]
    text: str
    oversize: int = 0
    """The UTF-8 size of ``text`` when it is over the limit (one item, too big alone), else 0."""


def encode_to_fit(
    items: Sequence[_T], encode: Callable[[tuple[_T, ...]], str], max_size: int
) -> list[EncodedPart[_T]]:
    """Encode ``items`` as messages of at most ``max_size`` UTF-8 bytes each, in order.

    ``encode`` writes the message carrying a run of items. The usual case
    costs one encoding: everything fits one message. A list that does not
    is cut into about ``size / max_size`` runs of equal length, each encoded
    and cut again while it is still too big. An item too big even alone
    gets a part of its own with ``oversize`` set, for the caller to decide
    about. No items, no parts.
    """
    parts: list[EncodedPart[_T]] = []
    todo = [tuple(items)] if items else []  # a stack: the next run last
    while todo:
        run = todo.pop()
        text = encode(run)
        size = utf8_size_over(text, max_size)
        if not size or len(run) == 1:
            parts.append(EncodedPart(items=run, text=text, oversize=size))
            continue
        count = min(len(run), -(-size // max_size))
        cuts = [len(run) * part // count for part in range(count + 1)]
        todo.extend(run[cuts[part - 1] : cuts[part]] for part in range(count, 0, -1))
    return parts


def utf8_size_over(text: str, limit: int) -> int:
    """Return the UTF-8 size of ``text`` when it is over ``limit`` bytes, else 0."""
    # UTF-8 spends at most 4 bytes on a character: most texts need no count.
    if len(text) * 4 <= limit:
        return 0
    # surrogatepass: a text handed over decoded may hold a lone surrogate.
    size = len(text.encode("utf-8", "surrogatepass"))
    return size if size > limit else 0
