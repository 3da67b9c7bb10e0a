"""The client session, alone and behind its WebSocket, driven by a fuzzed script.

The script interleaves what a server sends with what an app and an adapter
do: push events, report batches applied or failed, answer for sync filters,
update credentials, let time pass, open, fail and lose transports, close.
Session calls are made whether or not the state allows them: the
transition table (:data:`lfws_core.client.TRANSITIONS`) says which are
misuse, and those must raise ``LocalProtocolError`` and change nothing;
every other call must not raise at all.

Records: ``K`` (first only) picks the configuration; ``O`` connection made
(byte level: transport made), ``F`` failed, ``X`` lost, ``E`` end of input
(byte level), ``W`` time passes, ``P`` push, ``Y``/``N`` the oldest batch
applied/failed, ``S`` sync filters, ``U`` new credentials, ``Q`` close,
``R`` start again, ``M`` a wrong batch id; any other op delivers its
payload: a text (session) or bytes (connection).

Checked after every step:

* every text the client sends decodes as a client message; at the byte
  level the handshake request and every frame are well formed, and bytes
  go out only on a transport that is open;
* ``ApplyEvents`` batch ids increase; ``MarkSynced``, ``PushFailed`` and
  ``PushRejected`` name only pushed events; at most ``max_pending`` events wait;
* a cursor never moves back and never passes what was applied;
* after ``close()`` the session is closed with no timer left.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial

from lfws_core.actions import (
    Action,
    ApplyEvents,
    CloseTransport,
    ConnectionState,
    MarkSynced,
    OpenConnection,
    PushFailed,
    PushRejected,
    ReconnectScheduled,
    SendBytes,
    SendMessage,
    SyncFiltersNeeded,
)
from lfws_core.client import TRANSITIONS, ClientConfig, ClientInput, ClientSession, OverflowPolicy
from lfws_core.codec import decode_message
from lfws_core.connection import ClientConnection
from lfws_core.errors import LocalProtocolError
from lfws_core.events import JsonValue, Operation, SyncEvent
from lfws_core.messages import ClientMessage
from lfws_core.testing import SplitMix64

from ._input import Payload, records
from ._wire import RequestReader
from .ws import MAX_MESSAGE_SIZE, zeros

__all__ = ["CURSORS", "URL", "fuzz_client_connection", "fuzz_client_session"]

URL = "ws://sync.example:8080/sync"
CURSORS = {"todos": 2}
_REPOSITORIES = ("todos", "notes", "other")
_STEPS = (0.0, 0.5, 1.0, 3.0, 10.0, 30.0, 60.0)
_LOSS_CODES = (None, 1000, 1001, 1006, 1008, 1011, 1013)
_CREATED = datetime(2024, 1, 1, tzinfo=UTC)


def _config(payload: Payload | None) -> ClientConfig:
    """The default configuration, or the variant a leading ``K`` record picks."""
    flags = 0 if payload is None else payload.byte()
    return ClientConfig(
        url=URL,
        token="t0",
        repositories=("todos", "notes"),
        max_pending=6,
        max_batch_size=2,
        max_auth_failures=2,
        custom_sync_filter=bool(flags & 1),
        enable_pending_queue=not flags & 2,
        overflow_policy=OverflowPolicy.DROP_OLDEST if flags & 4 else OverflowPolicy.REJECT_NEW,
    )


def _event(payload: Payload) -> SyncEvent:
    # Few ids, so that pushes repeat ids and acks name them.
    number = payload.below(8)
    delete = payload.flag()
    return SyncEvent(
        event_id=f"e{number}",
        operation=Operation.DELETE if delete else Operation.UPDATE,
        data_id=f"d{payload.below(3)}",
        created_at=_CREATED,
        data=None if delete else {"n": payload.byte()},
    )


def _has_surrogates(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _filters(payload: Payload) -> dict[str, dict[str, JsonValue] | None]:
    choice = payload.below(4)
    if choice == 0:
        return {}
    if choice == 1:
        return {"todos": None}
    if choice == 2:
        return {"todos": {"afterSequence": payload.byte()}}
    return {"notes": {"since": payload.byte()}}


@dataclass
class _App:
    """The app and the adapter around one session; checks what the session emits."""

    config: ClientConfig
    session_of: Callable[[], ClientSession]
    handle_timer: Callable[[float], None]
    now: float = 0.0
    random: SplitMix64 = field(default_factory=lambda: SplitMix64(7))
    batches: deque[ApplyEvents] = field(default_factory=deque)
    last_batch = 0
    pushed: set[str] = field(default_factory=set)
    applied: dict[str, int] = field(default_factory=lambda: dict(CURSORS))
    cursors: dict[str, int] = field(default_factory=lambda: dict(CURSORS))

    def call(self, what: ClientInput, call: Callable[[], object], *, valid: bool = True) -> None:
        """Make ``call``; it must raise if the table forbids ``what`` now, or if not ``valid``."""
        if valid and (self.session_of().state, what) in TRANSITIONS:
            call()
        else:
            self.refused(call)

    def refused(self, call: Callable[[], object]) -> None:
        """Make a forbidden call: ``LocalProtocolError``, and nothing changed."""
        session = self.session_of()
        state = session.state
        try:
            call()
        except LocalProtocolError:
            assert session.state is state, "a refused call changed the state"
            assert not session.drain_actions(), "a refused call emitted actions"
        else:
            raise AssertionError(f"{call} was not refused in {state.value}")

    def step(self, op: str, payload: Payload) -> bool:
        """Run one session-level record; return False if ``op`` is not one."""
        session = self.session_of()
        now = self.now
        match op:
            case "W":
                step = payload.below(len(_STEPS) + 1)
                deadline = session.next_deadline()
                if step == len(_STEPS) and deadline is not None:
                    self.now = max(now, deadline)
                else:
                    self.now += _STEPS[step % len(_STEPS)]
                self.handle_timer(self.now)
            case "P":
                event = _event(payload)
                repository = _REPOSITORIES[payload.below(len(_REPOSITORIES))]
                self.pushed.add(event.event_id)
                self.call(ClientInput.PUSH, lambda: session.push(repository, event, now))
            case "Y" | "N":
                if not self.batches:
                    return True
                batch = self.batches[0]
                if op == "Y":
                    self.call(
                        ClientInput.EVENTS_APPLIED,
                        lambda: session.events_applied(batch.batch_id, now),
                    )
                    self.record_applied(batch)
                else:
                    self.call(
                        ClientInput.EVENTS_APPLY_FAILED,
                        lambda: session.events_apply_failed(batch.batch_id, "disk full", now),
                    )
                self.batches.popleft()
            case "S":
                filters = _filters(payload)
                self.call(
                    ClientInput.SYNC_FILTERS_BUILT, lambda: session.sync_filters_built(filters, now)
                )
            case "U":
                token = payload.text() or None
                self.call(
                    ClientInput.CREDENTIALS_UPDATED,
                    lambda: session.update_credentials(
                        token=token, headers={"x-app": "fuzz"}, now=now
                    ),
                    valid=token is None or not _has_surrogates(token),
                )
            case "Q":
                self.call(ClientInput.CLOSE, lambda: session.close(now))
                assert session.state is ConnectionState.CLOSED
                assert session.next_deadline() is None
            case "R":
                self.call(ClientInput.START, lambda: session.start(now))
            case "M":
                self.misuse(session)
            case _:
                return False
        return True

    def record_applied(self, batch: ApplyEvents) -> None:
        top = max((e.server_sequence or 0 for e in batch.events), default=0)
        self.applied[batch.repository] = max(self.applied.get(batch.repository, 0), top)

    def misuse(self, session: ClientSession) -> None:
        """Report a batch that is not the oldest: refused, or ignored once closed."""
        wrong = self.last_batch + 1000
        if session.state is ConnectionState.CLOSED:
            session.events_applied(wrong, self.now)
            assert not session.drain_actions()
        else:
            self.refused(lambda: session.events_applied(wrong, self.now))

    def saw(self, action: Action) -> None:
        if isinstance(action, SendMessage):
            message = decode_message(action.text)
            assert isinstance(message, ClientMessage), f"the client sent {message!r}"
        elif isinstance(action, ApplyEvents):
            assert action.batch_id > self.last_batch, "batch ids must increase"
            assert action.events, "an empty batch"
            self.last_batch = action.batch_id
            self.batches.append(action)
        elif isinstance(action, MarkSynced | PushFailed | PushRejected):
            ids = (
                [i for ids in action.repositories.values() for i in ids]
                if isinstance(action, MarkSynced)
                else list(action.event_ids)
            )
            assert set(ids) <= self.pushed, f"{action!r} names events never pushed"
        elif isinstance(action, ReconnectScheduled):
            assert 0 <= action.delay <= self.config.max_reconnect_delay
        elif isinstance(action, SyncFiltersNeeded):
            assert self.config.custom_sync_filter

    def check(self) -> None:
        session = self.session_of()
        assert session.pending_count <= self.config.max_pending
        for repository, cursor in session.cursors.items():
            before = self.cursors.get(repository, -1)
            assert cursor >= before, f"the cursor of {repository} moved back"
            assert cursor <= self.applied.get(repository, 0), f"{repository}: cursor past applied"
            self.cursors[repository] = cursor


def _split_config(data: bytes) -> tuple[ClientConfig, list[tuple[int, Payload]]]:
    script = list(records(data))
    if script and script[0][0] == ord("K"):
        return _config(script.pop(0)[1]), script
    return _config(None), script


def fuzz_client_session(data: bytes) -> None:
    config, script = _split_config(data)
    app: _App
    session = ClientSession(config, random=lambda: app.random.random(), cursors=CURSORS)
    app = _App(config, lambda: session, session.handle_timer)
    session.start(0.0)
    for action in session.drain_actions():
        app.saw(action)
    for op, payload in script:
        now = app.now
        name = chr(op)
        if app.step(name, payload):
            pass
        elif name == "O":
            app.call(ClientInput.CONNECTION_MADE, partial(session.connection_made, now))
        elif name == "F":
            app.call(ClientInput.CONNECTION_FAILED, partial(session.connection_failed, now, "nope"))
        elif name == "X":
            code = _LOSS_CODES[payload.below(len(_LOSS_CODES))]
            app.call(
                ClientInput.CONNECTION_LOST, partial(session.connection_lost, now, "gone", code)
            )
        else:
            app.call(
                ClientInput.MESSAGE_RECEIVED, partial(session.receive_text, payload.text(), now)
            )
        for action in session.drain_actions():
            app.saw(action)
        app.check()


class _Transport:
    """The adapter's view of the transports a ClientConnection asks for."""

    def __init__(self) -> None:
        self.requested = False
        self.reader: RequestReader | None = None  # the open transport's output

    def saw(self, action: Action) -> bool:
        """Take a transport action; return False for the others."""
        if isinstance(action, OpenConnection):
            assert self.reader is None and not self.requested, "two transports at once"
            self.requested = True
        elif isinstance(action, SendBytes):
            assert self.reader is not None, "bytes written without an open transport"
            self.reader.feed(action.data)
        elif isinstance(action, CloseTransport):
            assert self.requested or self.reader is not None, "CloseTransport with no transport"
            if self.reader is not None and self.reader.request is not None:
                self.reader.frames.end()
            self.requested = False
            self.reader = None
        else:
            return False
        return True


def fuzz_client_connection(data: bytes) -> None:
    config, script = _split_config(data)
    app: _App
    transport = _Transport()
    connection = ClientConnection(
        config,
        random=lambda: app.random.random(),
        random_bytes=zeros,
        cursors=CURSORS,
        max_message_size=MAX_MESSAGE_SIZE,
        close_timeout=5.0,
    )
    app = _App(config, lambda: connection.session, connection.handle_timer)
    connection.session.start(0.0)
    for action in connection.drain_actions(0.0):
        if not transport.saw(action):
            app.saw(action)
    for op, payload in script:
        now = app.now
        name = chr(op)
        if app.step(name, payload):
            pass
        elif name == "O":
            if transport.requested:
                transport.requested = False
                transport.reader = RequestReader()
                connection.transport_made(now)
            else:
                try:
                    connection.transport_made(now)
                except LocalProtocolError:
                    pass
                else:
                    raise AssertionError("transport_made without a request was accepted")
        elif name == "F":
            if transport.requested:
                transport.requested = False
                connection.transport_failed(now, "refused")
        elif name == "X":
            if transport.reader is not None:
                transport.reader = None
                connection.transport_lost(now, "reset")
        elif name == "E":
            connection.receive_data(b"", now)
        else:
            connection.receive_data(payload.rest(), now)
        for action in connection.drain_actions(now):
            if not transport.saw(action):
                app.saw(action)
        app.check()
