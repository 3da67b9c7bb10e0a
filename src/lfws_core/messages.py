"""The protocol messages (v1, the Dart ``local_first_websocket`` dialect).

One frozen dataclass per message ``type``. :mod:`lfws_core.codec` turns them
into JSON text and back; the session state machines consume and produce them.
Field names are Pythonic here and Dart-cased on the wire (``after_sequence``
is ``afterSequence``); see ``docs/protocol.md`` for every wire form.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final, TypeAlias

from ._builders import slot_builder
from .events import JsonValue, SyncEvent

__all__ = [
    "Ack",
    "Auth",
    "AuthSuccess",
    "ClientMessage",
    "Error",
    "Events",
    "EventsReceived",
    "Message",
    "PERMANENT_ERROR_CODES",
    "Ping",
    "Pong",
    "PushEvent",
    "PushEventsBatch",
    "RequestAllEvents",
    "RequestEvents",
    "ServerMessage",
    "SyncComplete",
]


# --- client -> server -------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class Auth:
    """``auth``: the credentials; ``headers`` are spread at the top level."""

    token: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True, slots=True)
class PushEvent:
    """``push_event``: one local event for ``repository``."""

    repository: str
    event: SyncEvent


# The decoder builds one for every push (values already checked).
_push_event: Callable[[str, SyncEvent], PushEvent] = slot_builder(PushEvent, "repository", "event")


@dataclass(frozen=True, kw_only=True, slots=True)
class PushEventsBatch:
    """``push_events_batch``: several local events for one repository."""

    repository: str
    events: tuple[SyncEvent, ...]


@dataclass(frozen=True, kw_only=True, slots=True)
class RequestEvents:
    """``request_events``: the events of ``repository`` after a cursor.

    ``filter`` holds any other top-level fields (the Dart
    ``onBuildSyncFilter`` result is spread into the message).
    """

    repository: str
    after_sequence: int | None = None
    limit: int | None = None
    filter: Mapping[str, JsonValue] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True, slots=True)
class RequestAllEvents:
    """``request_all_events``: every event of one repository, or of all."""

    repository: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class EventsReceived:
    """``events_received``: the client applied ``count`` events of a batch."""

    repository: str
    count: int


@dataclass(frozen=True, kw_only=True, slots=True)
class Ping:
    """``ping``: an application-level heartbeat (either direction)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Pong:
    """``pong``: the answer to ``ping`` (either direction)."""


# --- server -> client -------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class AuthSuccess:
    """``auth_success``: the credentials were accepted."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Events:
    """``events``: stored events of ``repository`` in sequence order."""

    repository: str
    events: tuple[SyncEvent, ...]


@dataclass(frozen=True, kw_only=True, slots=True)
class Ack:
    """``ack``: these pushed events are durably stored (or were already).

    ``repositories`` maps each repository to its acknowledged ids.
    """

    event_ids: tuple[str, ...]
    repositories: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


# The decoder builds one for every ack (values already checked).
_ack: Callable[[tuple[str, ...], Mapping[str, tuple[str, ...]]], Ack] = slot_builder(
    Ack, "event_ids", "repositories"
)


@dataclass(frozen=True, kw_only=True, slots=True)
class SyncComplete:
    """``sync_complete``: a catch-up request has been answered in full."""

    repository: str | None = None


PERMANENT_ERROR_CODES: Final = frozenset({"forbidden", "invalid"})
"""The ``code`` values of an ``error`` that refuses the pushed events it names for good.

``forbidden``: the principal may not write there; ``invalid``: the store
will never accept these events. Every other code (``unavailable`` for a
store that failed, or one this version does not know) is transient: the
client keeps the events and sends them again.
"""


@dataclass(frozen=True, kw_only=True, slots=True)
class Error:
    """``error``: the server refused something; ``message`` says what.

    An lfws server answering a push also names the events (``event_ids``,
    ``eventIds`` on the wire) and says why in ``code``; both are optional
    extensions of v1, absent from every other ``error``.
    """

    message: str
    event_ids: tuple[str, ...] = ()
    code: str | None = None

    @property
    def permanent(self) -> bool:
        """Whether this error refuses the events it names for good (never resend them)."""
        return bool(self.event_ids) and self.code in PERMANENT_ERROR_CODES


ClientMessage: TypeAlias = (
    Auth
    | PushEvent
    | PushEventsBatch
    | RequestEvents
    | RequestAllEvents
    | EventsReceived
    | Ping
    | Pong
)
"""Every message a client sends."""

ServerMessage: TypeAlias = AuthSuccess | Events | Ack | SyncComplete | Error | Ping | Pong
"""Every message a server sends."""

Message: TypeAlias = ClientMessage | ServerMessage
"""Every protocol message."""
