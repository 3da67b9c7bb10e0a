"""The server session: every message and transition, on a fake clock.

The test plays the adapter: :class:`Adapter` answers the session's requests
from an in-memory event log (or leaves them pending, to answer by hand) and
decodes what the session sends, so assertions read as protocol messages.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from tests import strategies as shared

from lfws_core.actions import (
    Authenticate,
    CloseConnection,
    EventsConfirmed,
    EventsStored,
    FetchEvents,
    ListRepositories,
    OversizedEventSent,
    ProtocolErrorReported,
    SendMessage,
    ServerAction,
    StoreEvents,
)
from lfws_core.codec import decode_message, encode_message
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
from lfws_core.server import (
    TRANSITIONS,
    EncodedEvents,
    ServerConfig,
    ServerInput,
    ServerSession,
    ServerState,
    encode_events,
    next_state,
)
from lfws_core.testing import MemoryEventLog

T0 = datetime(2026, 1, 1, tzinfo=UTC)
HANDSHAKE = (("origin", "https://app.example"),)


def event(event_id: str, data_id: str = "doc") -> SyncEvent:
    return SyncEvent(
        event_id=event_id,
        operation=Operation.UPDATE,
        data_id=data_id,
        created_at=T0 + timedelta(seconds=len(event_id)),
        data={"id": data_id, "by": event_id},
    )


def numbered(*sequences: int, repository: str = "todo") -> list[SyncEvent]:
    return [event(f"{repository}-{n}").with_sequence(n) for n in sequences]


Output = Message | ServerAction
A = TypeVar("A")


class Adapter:
    """Plays the adapter around one session, on a fake clock.

    With ``auto``, requests are answered at once from :attr:`log` (auth is
    accepted); otherwise they wait in :attr:`requests` to be answered by hand.
    :meth:`pump` returns what came out: sent messages decoded, other
    actions as they are.
    """

    def __init__(
        self,
        config: ServerConfig | None = None,
        *,
        auto: bool = True,
        principal: object = "alice",
    ) -> None:
        self.session = ServerSession(config or ServerConfig(), handshake_headers=HANDSHAKE)
        self.log = MemoryEventLog()
        self.auto = auto
        self.principal = principal
        self.now = 0.0
        self.requests: list[ServerAction] = []
        self.session.connection_made(self.now)

    def receive(self, *messages: Message) -> list[Output]:
        for message in messages:
            self.session.receive_text(encode_message(message), self.now)
        return self.pump()

    def receive_text(self, text: str) -> list[Output]:
        self.session.receive_text(text, self.now)
        return self.pump()

    def login(self) -> None:
        assert self.receive(Auth(token="t")) == [AuthSuccess()]

    def at(self, now: float) -> list[Output]:
        self.now = now
        self.session.handle_timer(now)
        return self.pump()

    def pump(self) -> list[Output]:
        out: list[Output] = []
        while actions := self.session.drain_actions():
            for action in actions:
                match action:
                    case SendMessage(text=text):
                        out.append(decode_message(text))
                    case Authenticate() | StoreEvents() | FetchEvents() | ListRepositories():
                        self.requests.append(action)
                    case _:
                        out.append(action)
            if self.auto:
                self.answer_all()
        return out

    def answer_all(self) -> None:
        requests, self.requests = self.requests, []
        for request in requests:
            self.answer(request)

    def answer(self, request: ServerAction) -> None:
        session, now = self.session, self.now
        match request:
            case Authenticate(request_id=request_id):
                session.auth_accepted(request_id, self.principal, now)
            case StoreEvents(request_id=request_id, repository=repository, events=events):
                stored, duplicates = self.log.store(repository, events)
                session.events_stored(request_id, stored, duplicates, now)
            case FetchEvents(
                request_id=request_id, repository=repository, after_sequence=after, limit=limit
            ):
                session.events_fetched(request_id, self.log.fetch(repository, after, limit), now)
            case ListRepositories(request_id=request_id):
                session.repositories_listed(request_id, self.log.repositories(), now)
            case _:  # pragma: no cover - only requests are collected
                raise AssertionError(request)

    def take(self, kind: type[A]) -> A:
        """Remove and return the one pending request of ``kind``."""
        assert self.pump() == [], "take() after reading what was sent"
        matching = [r for r in self.requests if isinstance(r, kind)]
        assert len(matching) == 1, self.requests
        self.requests.remove(matching[0])  # type: ignore[arg-type]
        return matching[0]

    def seed(self, repository: str, count: int) -> None:
        self.log.store(repository, [event(f"{repository}-{n}") for n in range(1, count + 1)])


def manual(config: ServerConfig | None = None) -> Adapter:
    return Adapter(config, auto=False)


def authed_manual(config: ServerConfig | None = None) -> Adapter:
    adapter = manual(config)
    adapter.receive(Auth(token="t"))
    auth = adapter.take(Authenticate)
    adapter.session.auth_accepted(auth.request_id, "alice", adapter.now)
    assert adapter.pump() == [AuthSuccess()]
    return adapter


def ids(events: Sequence[SyncEvent]) -> list[str]:
    return [e.event_id for e in events]


# --- configuration ---------------------------------------------------------


class TestServerConfig:
    def test_defaults(self) -> None:
        config = ServerConfig()
        assert (config.max_batch_length, config.page_size, config.max_message_size) == (
            1000,
            500,
            1 << 20,
        )
        assert (config.auth_timeout, config.ping_interval, config.ping_timeout) == (
            10.0,
            25.0,
            10.0,
        )
        assert config.max_queued_before_auth == 32

    def test_accepts_edge_values(self) -> None:
        config = ServerConfig(
            max_batch_length=1,
            page_size=1,
            max_message_size=1,
            auth_timeout=1,
            ping_interval=None,
            ping_timeout=0.5,
            max_queued_before_auth=0,
        )
        assert config.ping_interval is None

    @pytest.mark.parametrize("name", ["max_batch_length", "page_size", "max_message_size"])
    @pytest.mark.parametrize("value", [0, -1, True, 1.5, "3"])
    def test_rejects_bad_counts(self, name: str, value: object) -> None:
        with pytest.raises(LocalProtocolError, match=name):
            ServerConfig(**{name: value})

    @pytest.mark.parametrize("value", [-1, True, 2.0, None])
    def test_rejects_bad_queue_bound(self, value: object) -> None:
        with pytest.raises(LocalProtocolError, match="max_queued_before_auth"):
            ServerConfig(max_queued_before_auth=value)

    @pytest.mark.parametrize("name", ["auth_timeout", "ping_interval", "ping_timeout"])
    @pytest.mark.parametrize("value", [0, -1.0, float("nan"), float("inf"), True, "1"])
    def test_rejects_bad_durations(self, name: str, value: object) -> None:
        with pytest.raises(LocalProtocolError, match=name):
            ServerConfig(**{name: value})


# --- the transition table --------------------------------------------------


class TestTransitions:
    @pytest.mark.parametrize(("state", "event"), list(itertools.product(ServerState, ServerInput)))
    def test_next_state_follows_the_table(self, state: ServerState, event: ServerInput) -> None:
        if (state, event) in TRANSITIONS:
            assert next_state(state, event) is TRANSITIONS[state, event]
        else:
            with pytest.raises(LocalProtocolError, match=f"{event.name}.*{state.name}"):
                next_state(state, event)

    def test_closed_is_terminal(self) -> None:
        leaving = {k: v for k, v in TRANSITIONS.items() if k[0] is ServerState.CLOSED}
        assert set(leaving.values()) == {ServerState.CLOSED}

    def test_every_state_is_reachable(self) -> None:
        targets = set(TRANSITIONS.values()) | {ServerState.AWAITING_AUTH}
        assert targets == set(ServerState)

    def test_table_is_read_only(self) -> None:
        with pytest.raises(TypeError):
            TRANSITIONS[ServerState.CLOSED, ServerInput.AUTH_REQUESTED] = ServerState.CLOSED


# --- opening, observation ---------------------------------------------------


class TestConnection:
    def test_new_session(self) -> None:
        session = ServerSession()
        assert session.state is ServerState.AWAITING_AUTH
        assert session.principal is None
        assert not session.authenticated
        assert session.config == ServerConfig()
        assert session.next_deadline() is None
        assert session.drain_actions() == []

    def test_connection_made_arms_auth_timeout_and_ping(self) -> None:
        session = ServerSession(ServerConfig(auth_timeout=5, ping_interval=3))
        session.connection_made(100.0)
        assert session.next_deadline() == 103.0
        assert session.drain_actions() == []

    def test_connection_made_twice_is_misuse(self) -> None:
        session = ServerSession()
        session.connection_made(0.0)
        with pytest.raises(LocalProtocolError):
            session.connection_made(1.0)

    def test_connection_made_after_close_is_misuse(self) -> None:
        session = ServerSession()
        session.close(1001, "bye", 0.0)
        with pytest.raises(LocalProtocolError):
            session.connection_made(1.0)

    @pytest.mark.parametrize("receive", ["text", "message"])
    def test_receiving_before_connection_made_is_misuse(self, receive: str) -> None:
        session = ServerSession()
        with pytest.raises(LocalProtocolError, match="connection_made"):
            if receive == "text":
                session.receive_text('{"type":"ping"}', 0.0)
            else:
                session.receive_message(Ping(), 0.0)

    def test_drain_empties_the_queue(self) -> None:
        adapter = manual()
        adapter.session.receive_message(Ping(), 0.0)
        assert len(adapter.session.drain_actions()) == 1
        assert adapter.session.drain_actions() == []

    def test_receive_message_is_the_message_level_entry(self) -> None:
        adapter = Adapter()
        adapter.session.receive_message(Auth(token="t"), 0.0)
        assert adapter.pump() == [AuthSuccess()]


# --- authentication ---------------------------------------------------------


class TestAuthentication:
    def test_auth_asks_the_adapter(self) -> None:
        adapter = manual()
        assert adapter.receive(Auth(token="secret", headers={"X-User": "u1"})) == []
        request = adapter.take(Authenticate)
        assert request == Authenticate(
            request_id=request.request_id,
            token="secret",
            headers={"X-User": "u1"},
            handshake_headers=HANDSHAKE,
        )
        assert adapter.session.state is ServerState.AUTHENTICATING
        assert not adapter.session.authenticated

    def test_accepted(self) -> None:
        adapter = manual()
        adapter.receive(Auth(token="t"))
        request = adapter.take(Authenticate)
        adapter.session.auth_accepted(request.request_id, {"user": 7}, 1.0)
        assert adapter.pump() == [AuthSuccess()]
        assert adapter.session.state is ServerState.AUTHENTICATED
        assert adapter.session.principal == {"user": 7}
        assert adapter.session.authenticated

    def test_a_none_principal_still_authenticates(self) -> None:
        adapter = Adapter(principal=None)
        adapter.login()
        assert adapter.session.authenticated
        assert adapter.session.principal is None

    def test_rejected_sends_error_then_closes_1008(self) -> None:
        adapter = manual()
        adapter.receive(Auth(token="bad"))
        request = adapter.take(Authenticate)
        adapter.session.auth_rejected(request.request_id, "token expired", 1.0)
        assert adapter.pump() == [
            Error(message="Authentication failed: token expired"),
            CloseConnection(code=1008, reason="token expired"),
        ]
        assert adapter.session.state is ServerState.CLOSING
        assert not adapter.session.authenticated
        assert adapter.session.next_deadline() is None

    def test_reauth_accepted_answers_again(self) -> None:
        adapter = Adapter()
        adapter.login()
        adapter.principal = "bob"
        assert adapter.receive(Auth(token="t2")) == [AuthSuccess()]
        assert adapter.session.principal == "bob"
        assert adapter.session.state is ServerState.AUTHENTICATED

    def test_reauth_rejected_closes(self) -> None:
        adapter = authed_manual()
        adapter.receive(Auth(token="t2"))
        assert adapter.session.state is ServerState.AUTHENTICATING
        assert adapter.session.authenticated  # the earlier verdict holds meanwhile
        request = adapter.take(Authenticate)
        adapter.session.auth_rejected(request.request_id, "revoked", 1.0)
        assert adapter.pump() == [
            Error(message="Authentication failed: revoked"),
            CloseConnection(code=1008, reason="revoked"),
        ]

    def test_messages_wait_for_the_verdict_and_replay_in_order(self) -> None:
        adapter = manual()
        adapter.receive(Auth(token="t"))
        held = adapter.receive(
            PushEvent(repository="todo", event=event("e1")),
            Ping(),
            RequestEvents(repository="todo", after_sequence=0),
        )
        held += adapter.receive_text("not json")
        assert held == []
        auth = adapter.take(Authenticate)
        assert adapter.requests == []
        adapter.auto = True
        adapter.session.auth_accepted(auth.request_id, "alice", 1.0)
        out = adapter.pump()
        error = out[2]
        assert isinstance(error, Error)
        stored = adapter.log.events("todo")
        assert out == [
            AuthSuccess(),
            Pong(),
            error,
            ProtocolErrorReported(reason=error.message),
            # Both requests went out before either was answered; the store
            # answered first, so the fetch saw the new event.
            Ack(event_ids=("e1",), repositories={"todo": ("e1",)}),
            EventsStored(repository="todo", events=tuple(stored)),
            Events(repository="todo", events=tuple(stored)),
            SyncComplete(repository="todo"),
        ]

    def test_replay_happens_after_auth_success_in_arrival_order(self) -> None:
        adapter = manual()
        adapter.receive(Auth(token="t"), Ping(), EventsReceived(repository="todo", count=2))
        auth = adapter.take(Authenticate)
        adapter.session.auth_accepted(auth.request_id, "alice", 1.0)
        assert adapter.pump() == [
            AuthSuccess(),
            Pong(),
            EventsConfirmed(repository="todo", count=2),
        ]

    def test_a_held_auth_is_processed_and_holds_the_rest_again(self) -> None:
        adapter = manual()
        adapter.receive(Auth(token="one"), Auth(token="two"), Ping())
        first = adapter.take(Authenticate)
        adapter.session.auth_accepted(first.request_id, "alice", 1.0)
        assert adapter.pump() == [AuthSuccess()]
        second = adapter.take(Authenticate)
        assert second.token == "two"
        assert second.request_id > first.request_id
        assert adapter.session.state is ServerState.AUTHENTICATING
        adapter.session.auth_accepted(second.request_id, "alice", 2.0)
        assert adapter.pump() == [AuthSuccess(), Pong()]

    def test_held_messages_are_dropped_on_rejection(self) -> None:
        adapter = manual()
        adapter.receive(Auth(token="t"), PushEvent(repository="todo", event=event("e1")))
        auth = adapter.take(Authenticate)
        adapter.session.auth_rejected(auth.request_id, "no", 1.0)
        adapter.pump()
        assert adapter.requests == []
        assert len(adapter.log) == 0

    def test_holding_too_many_closes_1008(self) -> None:
        adapter = manual(ServerConfig(max_queued_before_auth=2))
        adapter.receive(Auth(token="t"), Ping(), Ping())
        assert adapter.receive(Ping()) == [
            Error(message="Too many messages while authenticating"),
            ProtocolErrorReported(reason="Too many messages while authenticating"),
            CloseConnection(code=1008, reason="too many messages while authenticating"),
        ]
        auth = adapter.take(Authenticate)
        adapter.session.auth_accepted(auth.request_id, "alice", 1.0)
        assert adapter.pump() == []
        assert adapter.session.state is ServerState.CLOSING

    def test_auth_timeout_closes_1008(self) -> None:
        adapter = manual(ServerConfig(auth_timeout=5, ping_interval=None))
        assert adapter.session.next_deadline() == 5.0
        assert adapter.at(4.9) == []
        assert adapter.at(5.0) == [
            Error(message="Authentication timeout"),
            CloseConnection(code=1008, reason="authentication timeout"),
        ]
        assert adapter.session.state is ServerState.CLOSING
        assert adapter.session.next_deadline() is None

    def test_auth_timeout_covers_a_pending_verdict(self) -> None:
        adapter = manual(ServerConfig(auth_timeout=5, ping_interval=None))
        adapter.now = 4.0
        adapter.receive(Auth(token="t"))
        assert adapter.session.next_deadline() == 5.0  # the budget counts from the open
        auth = adapter.take(Authenticate)
        assert adapter.at(5.0)[-1] == CloseConnection(code=1008, reason="authentication timeout")
        adapter.session.auth_accepted(auth.request_id, "late", 6.0)
        assert adapter.pump() == []
        assert adapter.session.principal is None

    def test_authenticated_clears_the_auth_timeout(self) -> None:
        adapter = Adapter(ServerConfig(auth_timeout=5, ping_interval=None))
        adapter.login()
        assert adapter.session.next_deadline() is None
        assert adapter.at(100.0) == []

    def test_reauth_gets_its_own_timeout(self) -> None:
        adapter = authed_manual(ServerConfig(auth_timeout=5, ping_interval=None))
        adapter.now = 50.0
        adapter.receive(Auth(token="t2"))
        assert adapter.session.next_deadline() == 55.0
        assert adapter.at(55.0)[-1] == CloseConnection(code=1008, reason="authentication timeout")

    @pytest.mark.parametrize("verdict", ["accepted", "rejected"])
    def test_unknown_or_answered_request_is_misuse(self, verdict: str) -> None:
        adapter = manual()
        adapter.receive(Auth(token="t"))
        request_id = adapter.take(Authenticate).request_id

        def answer(rid: int) -> None:
            if verdict == "accepted":
                adapter.session.auth_accepted(rid, "alice", 1.0)
            else:
                adapter.session.auth_rejected(rid, "no", 1.0)

        with pytest.raises(LocalProtocolError, match="Authenticate"):
            answer(request_id + 1)
        answer(request_id)
        with pytest.raises(LocalProtocolError, match="Authenticate"):
            answer(request_id)

    def test_a_verdict_of_the_wrong_kind_is_misuse(self) -> None:
        adapter = manual()
        adapter.receive(Auth(token="t"))
        request_id = adapter.take(Authenticate).request_id
        with pytest.raises(LocalProtocolError, match="StoreEvents"):
            adapter.session.events_stored(request_id, [], [], 1.0)
        with pytest.raises(LocalProtocolError, match="FetchEvents"):
            adapter.session.events_fetched(request_id, [], 1.0)
        with pytest.raises(LocalProtocolError, match="ListRepositories"):
            adapter.session.repositories_listed(request_id, [], 1.0)
        with pytest.raises(LocalProtocolError, match="FetchEvents or ListRepositories"):
            adapter.session.fetch_failed(request_id, "x", 1.0)
        with pytest.raises(LocalProtocolError, match="StoreEvents"):
            adapter.session.store_failed(request_id, "x", 1.0)
        # The misplaced verdicts did not consume the request.
        adapter.session.auth_accepted(request_id, "alice", 1.0)
        assert adapter.pump() == [AuthSuccess()]


class TestBeforeAuthentication:
    @pytest.mark.parametrize(
        "message",
        [
            PushEvent(repository="todo", event=event("e1")),
            PushEventsBatch(repository="todo", events=(event("e1"), event("e2"))),
            RequestEvents(repository="todo", after_sequence=0),
            RequestAllEvents(),
            RequestAllEvents(repository="todo"),
        ],
    )
    def test_data_messages_get_not_authenticated(self, message: Message) -> None:
        adapter = Adapter()
        adapter.seed("todo", 2)
        assert adapter.receive(message) == [Error(message="Not authenticated")]
        assert adapter.requests == []
        assert len(adapter.log) == 2
        assert adapter.session.state is ServerState.AWAITING_AUTH

    def test_ping_is_answered(self) -> None:
        assert Adapter().receive(Ping()) == [Pong()]

    def test_pong_and_events_received_get_no_reply(self) -> None:
        adapter = Adapter()
        assert adapter.receive(Pong(), EventsReceived(repository="todo", count=1)) == []


# --- pushes -------------------------------------------------------------------


class TestPush:
    def test_push_event_is_stored_acked_and_broadcast(self) -> None:
        adapter = authed_manual()
        adapter.receive(PushEvent(repository="todo", event=event("e1")))
        request = adapter.take(StoreEvents)
        assert request == StoreEvents(
            request_id=request.request_id,
            repository="todo",
            events=(event("e1"),),
            principal="alice",
        )
        stored = [event("e1").with_sequence(1)]
        adapter.session.events_stored(request.request_id, stored, [], 1.0)
        assert adapter.pump() == [
            Ack(event_ids=("e1",), repositories={"todo": ("e1",)}),
            EventsStored(repository="todo", events=tuple(stored)),
        ]

    def test_a_replayed_push_is_acked_again_and_stored_once(self) -> None:
        adapter = Adapter()
        adapter.login()
        push = PushEvent(repository="todo", event=event("e1"))
        first = adapter.receive(push)
        assert first[0] == Ack(event_ids=("e1",), repositories={"todo": ("e1",)})
        assert adapter.receive(push) == [Ack(event_ids=("e1",), repositories={"todo": ("e1",)})]
        assert len(adapter.log) == 1

    def test_batch_acks_every_id_in_input_order_and_stores_first_occurrences(self) -> None:
        adapter = authed_manual()
        batch = (event("e2"), event("e1", "other"), event("e2", "ignored"), event("e3"))
        adapter.receive(PushEventsBatch(repository="todo", events=batch))
        request = adapter.take(StoreEvents)
        assert request.events == (event("e2"), event("e1", "other"), event("e3"))
        stored, duplicates = adapter.log.store("todo", request.events)
        adapter.session.events_stored(request.request_id, stored, duplicates, 1.0)
        ack_ids = ("e2", "e1", "e2", "e3")
        assert adapter.pump() == [
            Ack(event_ids=ack_ids, repositories={"todo": ack_ids}),
            EventsStored(repository="todo", events=tuple(stored)),
        ]

    def test_batch_of_only_known_events_is_acked_without_broadcast(self) -> None:
        adapter = Adapter()
        adapter.login()
        adapter.receive(PushEvent(repository="todo", event=event("e1")))
        out = adapter.receive(PushEventsBatch(repository="todo", events=(event("e1"),)))
        assert out == [Ack(event_ids=("e1",), repositories={"todo": ("e1",)})]

    def test_batch_too_large_stores_nothing(self) -> None:
        adapter = Adapter(ServerConfig(max_batch_length=2))
        adapter.login()
        batch = (event("e1"), event("e2"), event("e3"))
        assert adapter.receive(PushEventsBatch(repository="todo", events=batch)) == [
            Error(message="Batch too large: 3 events (limit 2)")
        ]
        assert len(adapter.log) == 0

    def test_batch_at_the_limit_is_stored(self) -> None:
        adapter = Adapter(ServerConfig(max_batch_length=2))
        adapter.login()
        adapter.receive(PushEventsBatch(repository="todo", events=(event("e1"), event("e2"))))
        assert len(adapter.log) == 2

    def test_empty_batch_is_acked_without_storing(self) -> None:
        adapter = authed_manual()
        assert adapter.receive(PushEventsBatch(repository="todo", events=())) == [
            Ack(event_ids=(), repositories={"todo": ()})
        ]
        assert adapter.requests == []

    @pytest.mark.parametrize(
        ("message", "text"),
        [
            (PushEvent(repository="todo", event=event("e1")), "Failed to push event: disk full"),
            (
                PushEventsBatch(repository="todo", events=(event("e1"),)),
                "Failed to push events batch: disk full",
            ),
        ],
    )
    def test_store_failure_is_an_error_without_ack(self, message: Message, text: str) -> None:
        adapter = authed_manual()
        adapter.receive(message)
        request = adapter.take(StoreEvents)
        adapter.session.store_failed(request.request_id, "disk full", 1.0)
        # Transient: the client keeps the events and sends them again.
        assert adapter.pump() == [Error(message=text, event_ids=("e1",), code="unavailable")]
        with pytest.raises(LocalProtocolError):
            adapter.session.store_failed(request.request_id, "again", 1.0)

    @pytest.mark.parametrize(
        ("kwargs", "code"),
        [
            ({"permanent": True}, "forbidden"),
            ({"permanent": True, "code": "invalid"}, "invalid"),
            ({"code": "overloaded"}, "overloaded"),
        ],
    )
    def test_a_refusal_names_the_events_and_its_code(
        self, kwargs: dict[str, Any], code: str
    ) -> None:
        adapter = authed_manual()
        batch = (event("e2"), event("e1"), event("e2"))
        adapter.receive(PushEventsBatch(repository="todo", events=batch))
        request = adapter.take(StoreEvents)
        adapter.session.store_failed(request.request_id, "no write access to todo", 1.0, **kwargs)
        text = "Failed to push events batch: no write access to todo"
        # Each id once, in push order.
        assert adapter.pump() == [Error(message=text, event_ids=("e2", "e1"), code=code)]

    @pytest.mark.parametrize(
        ("kwargs", "complaint"),
        [
            ({"code": "forbidden"}, "does not name a transient failure"),
            ({"permanent": True, "code": "unavailable"}, "does not name a permanent failure"),
            ({"permanent": True, "code": ""}, "non-empty string"),
            ({"code": 3}, "non-empty string"),
        ],
    )
    def test_a_code_must_agree_with_permanent(self, kwargs: dict[str, Any], complaint: str) -> None:
        adapter = authed_manual()
        adapter.receive(PushEvent(repository="todo", event=event("e1")))
        request = adapter.take(StoreEvents)
        with pytest.raises(LocalProtocolError, match=complaint):
            adapter.session.store_failed(request.request_id, "no", 1.0, **kwargs)
        # Misuse answers nothing: the request still awaits its verdict.
        adapter.session.store_failed(request.request_id, "no", 1.0, permanent=True)
        assert adapter.pump() == [
            Error(message="Failed to push event: no", event_ids=("e1",), code="forbidden")
        ]

    def test_acks_follow_the_verdicts_not_the_requests(self) -> None:
        adapter = authed_manual()
        adapter.receive(
            PushEvent(repository="a", event=event("e1")),
            PushEvent(repository="b", event=event("e2")),
        )
        first, second = adapter.requests
        adapter.requests.clear()
        adapter.session.events_stored(second.request_id, [event("e2").with_sequence(1)], [], 1.0)
        adapter.session.events_stored(first.request_id, [], ["e1"], 1.0)
        assert [m for m in adapter.pump() if isinstance(m, Ack)] == [
            Ack(event_ids=("e2",), repositories={"b": ("e2",)}),
            Ack(event_ids=("e1",), repositories={"a": ("e1",)}),
        ]

    @pytest.mark.parametrize(
        ("stored", "duplicates", "match"),
        [
            ([], [], "exactly the ids"),
            ([event("e1").with_sequence(1)], ["e1"], "exactly the ids"),
            ([event("e1").with_sequence(1)], ["e2"], "exactly the ids"),
            ([event("zz").with_sequence(1)], [], "exactly the ids"),
            ([event("e1")], [], "serverSequence"),
        ],
    )
    def test_inconsistent_store_verdict_is_misuse(
        self, stored: list[SyncEvent], duplicates: list[str], match: str
    ) -> None:
        adapter = authed_manual()
        adapter.receive(PushEvent(repository="todo", event=event("e1")))
        request = adapter.take(StoreEvents)
        with pytest.raises(LocalProtocolError, match=match):
            adapter.session.events_stored(request.request_id, stored, duplicates, 1.0)
        assert adapter.pump() == []

    def test_unknown_store_request_is_misuse(self) -> None:
        adapter = authed_manual()
        with pytest.raises(LocalProtocolError, match="StoreEvents"):
            adapter.session.events_stored(99, [], [], 1.0)


class TestPushesOfOneRead:
    """Consecutive pushes to one repository, before a drain, share one store."""

    def test_consecutive_pushes_are_one_store_and_each_gets_its_own_ack(self) -> None:
        adapter = authed_manual()
        adapter.receive(
            PushEvent(repository="todo", event=event("e1")),
            PushEventsBatch(repository="todo", events=(event("e2"), event("e1", "again"))),
            PushEvent(repository="todo", event=event("e3")),
        )
        request = adapter.take(StoreEvents)
        assert request.events == (event("e1"), event("e2"), event("e3"))
        stored, duplicates = adapter.log.store("todo", request.events)
        assert [e.server_sequence for e in stored] == [1, 2, 3]
        adapter.session.events_stored(request.request_id, stored, duplicates, 1.0)
        # As if each push had been stored alone: its ack, then its new events.
        assert adapter.pump() == [
            Ack(event_ids=("e1",), repositories={"todo": ("e1",)}),
            EventsStored(repository="todo", events=(stored[0],)),
            Ack(event_ids=("e2", "e1"), repositories={"todo": ("e2", "e1")}),
            EventsStored(repository="todo", events=(stored[1],)),
            Ack(event_ids=("e3",), repositories={"todo": ("e3",)}),
            EventsStored(repository="todo", events=(stored[2],)),
        ]

    def test_a_push_of_known_events_only_is_acked_without_broadcast(self) -> None:
        adapter = authed_manual()
        push = PushEvent(repository="todo", event=event("e1"))
        again = PushEvent(repository="todo", event=event("e2"))
        adapter.receive(push, push, again, again)
        request = adapter.take(StoreEvents)
        stored, duplicates = adapter.log.store("todo", request.events)
        adapter.session.events_stored(request.request_id, stored, duplicates, 1.0)
        ack = Ack(event_ids=("e1",), repositories={"todo": ("e1",)})
        assert adapter.pump() == [
            ack,
            EventsStored(repository="todo", events=(stored[0],)),
            ack,
            Ack(event_ids=("e2",), repositories={"todo": ("e2",)}),
            EventsStored(repository="todo", events=(stored[1],)),
            Ack(event_ids=("e2",), repositories={"todo": ("e2",)}),
        ]

    def test_a_failed_store_is_tried_again_push_by_push(self) -> None:
        adapter = authed_manual()
        adapter.receive(
            PushEvent(repository="todo", event=event("e1")),
            PushEventsBatch(repository="todo", events=(event("e2"), event("e2"), event("e1"))),
        )
        together = adapter.take(StoreEvents)
        adapter.session.store_failed(together.request_id, "disk full", 1.0)
        # One push's failure is no other's: each is stored again alone.
        assert adapter.pump() == []
        first, second = adapter.requests
        assert isinstance(first, StoreEvents) and isinstance(second, StoreEvents)
        assert (ids(first.events), ids(second.events)) == (["e1"], ["e2", "e1"])
        assert first.principal == second.principal == "alice"
        adapter.session.store_failed(first.request_id, "disk full", 1.0)
        stored, duplicates = adapter.log.store("todo", second.events)
        adapter.session.events_stored(second.request_id, stored, duplicates, 1.0)
        assert adapter.pump() == [
            Error(message="Failed to push event: disk full", event_ids=("e1",), code="unavailable"),
            Ack(event_ids=("e2", "e2", "e1"), repositories={"todo": ("e2", "e2", "e1")}),
            EventsStored(repository="todo", events=tuple(stored)),
        ]

    def test_anything_in_between_or_another_repository_starts_a_new_store(self) -> None:
        adapter = authed_manual()
        adapter.session.receive_message(PushEvent(repository="todo", event=event("e1")), 0.0)
        adapter.session.receive_message(PushEvent(repository="todo", event=event("e2")), 0.0)
        adapter.session.receive_message(Ping(), 0.0)
        adapter.session.receive_message(PushEvent(repository="todo", event=event("e3")), 0.0)
        adapter.session.receive_message(PushEvent(repository="done", event=event("e4")), 0.0)
        actions = adapter.session.drain_actions()
        stores = [a for a in actions if isinstance(a, StoreEvents)]
        assert [(s.repository, ids(s.events)) for s in stores] == [
            ("todo", ["e1", "e2"]),
            ("todo", ["e3"]),
            ("done", ["e4"]),
        ]
        assert [type(a) for a in actions] == [StoreEvents, SendMessage, StoreEvents, StoreEvents]

    def test_a_store_drained_is_not_joined_again(self) -> None:
        adapter = authed_manual()
        adapter.session.receive_message(PushEvent(repository="todo", event=event("e1")), 0.0)
        (first,) = adapter.session.drain_actions()
        adapter.session.receive_message(PushEvent(repository="todo", event=event("e2")), 0.0)
        (second,) = adapter.session.drain_actions()
        assert isinstance(first, StoreEvents) and isinstance(second, StoreEvents)
        assert first.request_id != second.request_id

    def test_the_principal_is_the_one_of_the_first_push(self) -> None:
        adapter = authed_manual()
        adapter.session.receive_message(PushEvent(repository="todo", event=event("e1")), 0.0)
        adapter.session.receive_message(PushEvent(repository="todo", event=event("e2")), 0.0)
        (store,) = adapter.session.drain_actions()
        assert isinstance(store, StoreEvents) and store.principal == "alice"

    def test_reported_ids_must_match_the_pushes_exactly(self) -> None:
        adapter = authed_manual()
        adapter.receive(
            PushEvent(repository="todo", event=event("e1")),
            PushEvent(repository="todo", event=event("e2")),
        )
        request = adapter.take(StoreEvents)
        with pytest.raises(LocalProtocolError, match="exactly the ids"):
            adapter.session.events_stored(request.request_id, [], ["e1", "e1"], 1.0)


# --- catch-up -------------------------------------------------------------------


class TestRequestEvents:
    def test_pages_until_a_short_page(self) -> None:
        adapter = Adapter(ServerConfig(page_size=2))
        adapter.seed("todo", 3)
        adapter.login()
        log = adapter.log.events("todo")
        assert adapter.receive(RequestEvents(repository="todo", after_sequence=0)) == [
            Events(repository="todo", events=tuple(log[:2])),
            Events(repository="todo", events=tuple(log[2:])),
            SyncComplete(repository="todo"),
        ]

    def test_fetches_page_by_page_after_the_last_sequence(self) -> None:
        adapter = authed_manual(ServerConfig(page_size=2))
        adapter.receive(RequestEvents(repository="todo", after_sequence=5, filter={"k": 1}))
        first = adapter.take(FetchEvents)
        assert first == FetchEvents(
            request_id=first.request_id,
            repository="todo",
            after_sequence=5,
            limit=2,
            filter={"k": 1},
            principal="alice",
        )
        adapter.session.events_fetched(first.request_id, numbered(6, 9), 1.0)
        assert adapter.pump() == [Events(repository="todo", events=tuple(numbered(6, 9)))]
        second = adapter.take(FetchEvents)
        assert (second.after_sequence, second.limit) == (9, 2)
        adapter.session.events_fetched(second.request_id, [], 2.0)
        assert adapter.pump() == [SyncComplete(repository="todo")]
        assert adapter.requests == []

    def test_nothing_new_is_just_sync_complete(self) -> None:
        adapter = Adapter()
        adapter.login()
        assert adapter.receive(RequestEvents(repository="todo")) == [
            SyncComplete(repository="todo")
        ]

    def test_a_full_last_page_costs_one_empty_fetch(self) -> None:
        adapter = Adapter(ServerConfig(page_size=2))
        adapter.seed("todo", 4)
        adapter.login()
        out = adapter.receive(RequestEvents(repository="todo", after_sequence=0))
        assert [type(m) for m in out] == [Events, Events, SyncComplete]

    def test_after_sequence_is_honoured(self) -> None:
        adapter = Adapter()
        adapter.seed("todo", 3)
        adapter.login()
        out = adapter.receive(RequestEvents(repository="todo", after_sequence=2))
        assert out == [
            Events(repository="todo", events=tuple(adapter.log.events("todo")[2:])),
            SyncComplete(repository="todo"),
        ]

    def test_the_client_limit_caps_the_answer(self) -> None:
        adapter = Adapter(ServerConfig(page_size=2))
        adapter.seed("todo", 5)
        adapter.login()
        adapter.auto = False
        adapter.receive(RequestEvents(repository="todo", after_sequence=0, limit=3))
        limits = []
        while adapter.requests:
            request = adapter.requests[0]
            limits.append(request.limit)
            adapter.answer_all()
            adapter.pump()
        assert limits == [2, 1]

    def test_the_client_limit_ends_with_sync_complete(self) -> None:
        adapter = Adapter(ServerConfig(page_size=2))
        adapter.seed("todo", 5)
        adapter.login()
        out = adapter.receive(RequestEvents(repository="todo", after_sequence=0, limit=3))
        log = adapter.log.events("todo")
        assert out == [
            Events(repository="todo", events=tuple(log[:2])),
            Events(repository="todo", events=tuple(log[2:3])),
            SyncComplete(repository="todo"),
        ]

    @pytest.mark.parametrize("limit", [0, -3])
    def test_a_limit_below_one_answers_nothing(self, limit: int) -> None:
        adapter = authed_manual()
        adapter.session.receive_message(RequestEvents(repository="todo", limit=limit), 1.0)
        assert adapter.pump() == [SyncComplete(repository="todo")]
        assert adapter.requests == []

    def test_fetch_failure_is_an_error_without_sync_complete(self) -> None:
        adapter = authed_manual()
        adapter.receive(RequestEvents(repository="todo", after_sequence=0))
        request = adapter.take(FetchEvents)
        adapter.session.fetch_failed(request.request_id, "db down", 1.0)
        assert adapter.pump() == [Error(message="Failed to fetch events: db down")]
        assert adapter.requests == []

    def test_a_failure_mid_way_keeps_the_pages_already_sent(self) -> None:
        adapter = authed_manual(ServerConfig(page_size=1))
        adapter.receive(RequestEvents(repository="todo"))
        request = adapter.take(FetchEvents)
        adapter.session.events_fetched(request.request_id, numbered(1), 1.0)
        assert adapter.pump() == [Events(repository="todo", events=tuple(numbered(1)))]
        request = adapter.take(FetchEvents)
        assert request.after_sequence == 1
        adapter.session.fetch_failed(request.request_id, "db down", 1.0)
        assert adapter.pump() == [Error(message="Failed to fetch events: db down")]

    @pytest.mark.parametrize(
        ("events", "match"),
        [
            (numbered(1, 2, 3), "limit"),
            (numbered(2, 1), "increasing"),
            (numbered(1, 1), "increasing"),
            (numbered(0), "increasing"),
            ([event("x")], "increasing"),
        ],
    )
    def test_a_bad_page_is_misuse(self, events: list[SyncEvent], match: str) -> None:
        adapter = authed_manual(ServerConfig(page_size=2))
        adapter.receive(RequestEvents(repository="todo", after_sequence=0))
        request = adapter.take(FetchEvents)
        with pytest.raises(LocalProtocolError, match=match):
            adapter.session.events_fetched(request.request_id, events, 1.0)
        assert adapter.pump() == []


class TestRequestAllEvents:
    def test_one_repository_from_zero_with_a_bare_sync_complete(self) -> None:
        adapter = Adapter()
        adapter.seed("todo", 2)
        adapter.login()
        assert adapter.receive(RequestAllEvents(repository="todo")) == [
            Events(repository="todo", events=tuple(adapter.log.events("todo"))),
            SyncComplete(),
        ]

    def test_every_repository_then_one_bare_sync_complete(self) -> None:
        adapter = Adapter(ServerConfig(page_size=2))
        adapter.seed("b", 3)
        adapter.seed("a", 1)
        adapter.login()
        a, b = adapter.log.events("a"), adapter.log.events("b")
        assert adapter.receive(RequestAllEvents()) == [
            Events(repository="a", events=tuple(a)),
            Events(repository="b", events=tuple(b[:2])),
            Events(repository="b", events=tuple(b[2:])),
            SyncComplete(),
        ]

    def test_lists_repositories_first(self) -> None:
        adapter = authed_manual()
        adapter.receive(RequestAllEvents())
        listing = adapter.take(ListRepositories)
        assert listing == ListRepositories(
            request_id=listing.request_id,
            principal="alice",
        )
        adapter.session.repositories_listed(listing.request_id, ["x", "y", "x"], 1.0)
        fetch = adapter.take(FetchEvents)
        assert (fetch.repository, fetch.after_sequence) == ("x", 0)
        adapter.session.events_fetched(fetch.request_id, [], 1.0)
        fetch = adapter.take(FetchEvents)
        assert fetch.repository == "y"
        adapter.session.events_fetched(fetch.request_id, [], 1.0)
        assert adapter.pump() == [SyncComplete()]
        assert adapter.requests == []

    def test_each_repository_starts_from_zero(self) -> None:
        adapter = authed_manual(ServerConfig(page_size=1))
        adapter.receive(RequestAllEvents())
        listing = adapter.take(ListRepositories)
        adapter.session.repositories_listed(listing.request_id, ["x", "y"], 1.0)
        fetch = adapter.take(FetchEvents)
        adapter.session.events_fetched(fetch.request_id, numbered(4), 1.0)
        assert adapter.pump() == [Events(repository="x", events=tuple(numbered(4)))]
        fetch = adapter.take(FetchEvents)
        assert (fetch.repository, fetch.after_sequence) == ("x", 4)
        adapter.session.events_fetched(fetch.request_id, [], 1.0)
        fetch = adapter.take(FetchEvents)
        assert (fetch.repository, fetch.after_sequence) == ("y", 0)

    def test_no_repositories_is_just_sync_complete(self) -> None:
        adapter = Adapter()
        adapter.login()
        assert adapter.receive(RequestAllEvents()) == [SyncComplete()]

    def test_listing_failure_ends_the_request(self) -> None:
        adapter = authed_manual()
        adapter.receive(RequestAllEvents())
        listing = adapter.take(ListRepositories)
        adapter.session.fetch_failed(listing.request_id, "db down", 1.0)
        assert adapter.pump() == [Error(message="Failed to fetch all events: db down")]
        assert adapter.requests == []

    def test_unknown_listing_is_misuse(self) -> None:
        adapter = authed_manual()
        with pytest.raises(LocalProtocolError, match="ListRepositories"):
            adapter.session.repositories_listed(1234, [], 1.0)


def size(message: Message) -> int:
    return len(encode_message(message).encode())


def bulky(n: int, kilobytes: int = 1) -> SyncEvent:
    return SyncEvent(
        event_id=f"todo-{n}",
        operation=Operation.INSERT,
        data_id=f"doc{n}",
        created_at=T0,
        data={"text": "\u00e9" * (512 * kilobytes)},  # 2 bytes of UTF-8 each
        server_sequence=n,
    )


class TestLargePages:
    """A page is split so that no ``events`` message exceeds ``max_message_size``."""

    def test_a_page_over_the_limit_goes_out_in_messages_that_fit(self) -> None:
        events = [bulky(n) for n in range(1, 11)]
        one = size(Events(repository="todo", events=(events[0],)))
        limit = 3 * one  # three events fit, a fourth does not
        adapter = authed_manual(ServerConfig(page_size=10, max_message_size=limit))
        adapter.receive(RequestEvents(repository="todo"))
        fetch = adapter.take(FetchEvents)
        adapter.session.events_fetched(fetch.request_id, events, 1.0)
        out = adapter.pump()
        sent = [m for m in out if isinstance(m, Events)]
        assert [e for m in sent for e in m.events] == events
        assert all(size(m) <= limit for m in sent)
        assert len(sent) == 4  # ten events, at most three a message
        # The page was full: the catch-up goes on after its last event.
        assert adapter.take(FetchEvents).after_sequence == 10

    def test_a_page_that_fits_is_one_message(self) -> None:
        events = numbered(1, 2, 3)
        limit = size(Events(repository="todo", events=tuple(events)))
        adapter = authed_manual(ServerConfig(page_size=3, max_message_size=limit))
        adapter.receive(RequestEvents(repository="todo"))
        fetch = adapter.take(FetchEvents)
        adapter.session.events_fetched(fetch.request_id, events, 1.0)
        assert adapter.pump() == [Events(repository="todo", events=tuple(events))]

    def test_an_event_too_big_even_alone_is_sent_alone_anyway_and_reported(self) -> None:
        small, big, after = bulky(1, 1), bulky(2, 4), bulky(3, 1)
        limit = size(Events(repository="todo", events=(small, after)))
        adapter = authed_manual(ServerConfig(page_size=3, max_message_size=limit))
        adapter.receive(RequestEvents(repository="todo"))
        fetch = adapter.take(FetchEvents)
        adapter.session.events_fetched(fetch.request_id, [small, big, after], 1.0)
        big_size = size(Events(repository="todo", events=(big,)))
        assert adapter.pump() == [
            Events(repository="todo", events=(small,)),
            OversizedEventSent(
                repository="todo", event_id=big.event_id, size=big_size, limit=limit
            ),
            Events(repository="todo", events=(big,)),
            Events(repository="todo", events=(after,)),
        ]

    def test_a_broadcast_without_text_is_split_too(self) -> None:
        events = [bulky(n) for n in range(1, 5)]
        limit = 2 * size(Events(repository="todo", events=(events[0],)))
        adapter = Adapter(ServerConfig(max_message_size=limit))
        adapter.login()
        assert adapter.session.deliver("todo", events, 1.0)
        assert adapter.pump() == [
            Events(repository="todo", events=tuple(events[:2])),
            Events(repository="todo", events=tuple(events[2:])),
        ]

    def test_nothing_to_encode(self) -> None:
        assert encode_events("todo", [], 10) == []

    @given(
        events=st.lists(shared.sync_events, min_size=1, max_size=12),
        repository=shared.repositories,
        limit=st.integers(min_value=1, max_value=4000),
    )
    @settings(deadline=None)
    def test_messages_fit_keep_the_order_and_lose_nothing(
        self, events: list[SyncEvent], repository: str, limit: int
    ) -> None:
        messages = encode_events(repository, events, limit)
        assert [e for m in messages for e in m.events] == events
        for message in messages:
            assert message.text == encode_message(
                Events(repository=repository, events=message.events)
            )
            fits = len(message.text.encode("utf-8", "surrogatepass")) <= limit
            assert message.oversized is not fits
            assert fits or len(message.events) == 1
        if size(Events(repository=repository, events=tuple(events))) <= limit:
            assert messages == [
                EncodedEvents(events=tuple(events), text=messages[0].text, oversized=False)
            ]


class TestCatchUpQueue:
    def test_requests_are_served_one_at_a_time_in_order(self) -> None:
        adapter = authed_manual()
        adapter.receive(
            RequestEvents(repository="a"),
            RequestAllEvents(),
            RequestEvents(repository="c"),
        )
        first = adapter.take(FetchEvents)
        assert first.repository == "a"
        assert adapter.requests == []
        adapter.session.events_fetched(first.request_id, [], 1.0)
        assert adapter.pump() == [SyncComplete(repository="a")]
        listing = adapter.take(ListRepositories)
        adapter.session.repositories_listed(listing.request_id, [], 1.0)
        assert adapter.pump() == [SyncComplete()]
        third = adapter.take(FetchEvents)
        adapter.session.events_fetched(third.request_id, [], 1.0)
        assert adapter.pump() == [SyncComplete(repository="c")]

    def test_a_failed_request_lets_the_next_one_run(self) -> None:
        adapter = authed_manual()
        adapter.receive(RequestEvents(repository="a"), RequestEvents(repository="b"))
        first = adapter.take(FetchEvents)
        adapter.session.fetch_failed(first.request_id, "boom", 1.0)
        assert adapter.pump() == [Error(message="Failed to fetch events: boom")]
        assert adapter.take(FetchEvents).repository == "b"

    def test_complete_requests_behind_an_empty_one_finish_at_once(self) -> None:
        adapter = authed_manual()
        adapter.session.receive_message(RequestEvents(repository="a", limit=0), 1.0)
        adapter.session.receive_message(RequestEvents(repository="b", limit=0), 1.0)
        assert adapter.pump() == [SyncComplete(repository="a"), SyncComplete(repository="b")]

    def test_broadcasts_are_not_held_behind_a_catch_up(self) -> None:
        # The client merges idempotently and keeps the highest cursor, so an
        # event that arrives both live and in the catch-up is harmless.
        adapter = authed_manual(ServerConfig(page_size=1))
        adapter.receive(RequestEvents(repository="todo"))
        fetch = adapter.take(FetchEvents)
        assert adapter.session.deliver("todo", numbered(7), 1.0)
        adapter.session.events_fetched(fetch.request_id, numbered(1), 1.0)
        assert adapter.pump() == [
            Events(repository="todo", events=tuple(numbered(7))),
            Events(repository="todo", events=tuple(numbered(1))),
        ]


# --- broadcasts, confirmations, heartbeats -----------------------------------


class TestDeliver:
    def test_sent_to_an_authenticated_connection(self) -> None:
        adapter = Adapter()
        adapter.login()
        assert adapter.session.deliver("todo", numbered(3), 1.0) is True
        assert adapter.pump() == [Events(repository="todo", events=tuple(numbered(3)))]

    def test_pre_encoded_text_is_sent_verbatim(self) -> None:
        adapter = Adapter()
        adapter.login()
        text = encode_message(Events(repository="todo", events=tuple(numbered(3))))
        assert adapter.session.deliver("todo", numbered(3), 1.0, text=text)
        assert adapter.session.drain_actions() == [SendMessage(text=text)]

    def test_not_sent_before_authentication(self) -> None:
        adapter = manual()
        assert adapter.session.deliver("todo", numbered(1), 1.0) is False
        adapter.receive(Auth(token="t"))
        assert adapter.session.deliver("todo", numbered(1), 1.0) is False
        assert adapter.pump() == []

    def test_nothing_to_send(self) -> None:
        adapter = Adapter()
        adapter.login()
        assert adapter.session.deliver("todo", [], 1.0) is False
        assert adapter.pump() == []

    def test_sent_during_a_reauth(self) -> None:
        adapter = authed_manual()
        adapter.receive(Auth(token="t2"))
        assert adapter.session.deliver("todo", numbered(1), 1.0)

    def test_not_sent_once_closing(self) -> None:
        adapter = Adapter()
        adapter.login()
        adapter.session.close(1001, "going away", 1.0)
        adapter.pump()
        assert adapter.session.deliver("todo", numbered(1), 1.0) is False
        assert adapter.pump() == []


class TestEventsReceived:
    def test_is_a_confirmation_fact_without_reply(self) -> None:
        adapter = Adapter()
        adapter.login()
        assert adapter.receive(EventsReceived(repository="todo", count=3)) == [
            EventsConfirmed(repository="todo", count=3)
        ]


class TestHeartbeat:
    def test_ping_every_interval(self) -> None:
        adapter = Adapter(ServerConfig(ping_interval=25, ping_timeout=10))
        adapter.login()
        assert adapter.session.next_deadline() == 25.0
        assert adapter.at(24.0) == []
        assert adapter.at(25.0) == [Ping()]
        assert adapter.session.next_deadline() == 35.0  # the pong deadline
        assert adapter.receive(Pong()) == []
        assert adapter.session.next_deadline() == 50.0
        assert adapter.at(50.0) == [Ping()]

    def test_any_message_proves_liveness(self) -> None:
        adapter = Adapter(ServerConfig(ping_interval=25, ping_timeout=10))
        adapter.login()
        adapter.at(25.0)
        adapter.now = 30.0
        adapter.receive(EventsReceived(repository="todo", count=1))
        assert adapter.at(35.0) == []

    def test_invalid_text_still_proves_liveness(self) -> None:
        adapter = Adapter(ServerConfig(ping_interval=25, ping_timeout=10))
        adapter.login()
        adapter.at(25.0)
        adapter.receive_text("garbage")
        assert adapter.at(35.0) == []

    def test_silence_after_a_ping_closes_1011(self) -> None:
        adapter = Adapter(ServerConfig(ping_interval=25, ping_timeout=10))
        adapter.login()
        adapter.at(25.0)
        assert adapter.at(35.0) == [CloseConnection(code=1011, reason="heartbeat timeout")]
        assert adapter.session.state is ServerState.CLOSING
        assert adapter.session.next_deadline() is None

    def test_later_pings_do_not_extend_the_pong_deadline(self) -> None:
        adapter = Adapter(ServerConfig(ping_interval=4, ping_timeout=10, auth_timeout=1))
        adapter.login()
        assert adapter.at(4.0) == [Ping()]
        assert adapter.at(8.0) == [Ping()]
        assert adapter.session.next_deadline() == 12.0
        assert adapter.at(12.0) == [Ping()]
        assert adapter.session.next_deadline() == 14.0
        assert adapter.at(14.0) == [CloseConnection(code=1011, reason="heartbeat timeout")]

    def test_pings_run_before_authentication_too(self) -> None:
        adapter = manual(ServerConfig(ping_interval=2, auth_timeout=10))
        assert adapter.at(2.0) == [Ping()]

    def test_disabled(self) -> None:
        adapter = Adapter(ServerConfig(ping_interval=None))
        adapter.login()
        assert adapter.session.next_deadline() is None
        assert adapter.at(1000.0) == []


# --- bad input ----------------------------------------------------------------


class TestBadInput:
    @pytest.mark.parametrize("authenticated", [False, True])
    @pytest.mark.parametrize(
        "text",
        ["not json", "[]", '{"type":"bogus"}', '{"type":"push_event"}', "", "\ud800"],
    )
    def test_invalid_text_is_reported_and_not_fatal(self, text: str, authenticated: bool) -> None:
        adapter = Adapter()
        if authenticated:
            adapter.login()
        state = adapter.session.state
        out = adapter.receive_text(text)
        assert len(out) == 2
        error, report = out
        assert isinstance(error, Error)
        assert report == ProtocolErrorReported(reason=error.message)
        assert error.message
        assert adapter.session.state is state
        assert adapter.receive(Ping()) == [Pong()]

    def test_unknown_type_is_named(self) -> None:
        out = Adapter().receive_text('{"type":"bogus"}')
        assert "bogus" in out[0].message

    @pytest.mark.parametrize(
        ("message", "name"),
        [
            (AuthSuccess(), "auth_success"),
            (Events(repository="todo", events=()), "events"),
            (Ack(event_ids=()), "ack"),
            (SyncComplete(), "sync_complete"),
            (Error(message="x"), "error"),
        ],
    )
    def test_server_only_messages_are_unknown_types(self, message: Message, name: str) -> None:
        adapter = Adapter()
        adapter.login()
        adapter.session.receive_message(message, 1.0)
        reason = f"Unknown message type: {name}"
        assert adapter.pump() == [Error(message=reason), ProtocolErrorReported(reason=reason)]
        assert adapter.session.state is ServerState.AUTHENTICATED

    @pytest.mark.parametrize("text", ["x" * 11, "\u00e9" * 6])
    def test_too_big_closes_1009(self, text: str) -> None:
        adapter = Adapter(ServerConfig(max_message_size=10))
        out = adapter.receive_text(text)
        assert isinstance(out[0], ProtocolErrorReported)
        assert "too big" in out[0].reason.lower()
        assert out[1:] == [CloseConnection(code=1009, reason="message too big")]
        assert adapter.session.state is ServerState.CLOSING

    def test_exactly_the_limit_is_accepted(self) -> None:
        ping = encode_message(Ping())
        adapter = Adapter(ServerConfig(max_message_size=len(ping.encode())))
        assert adapter.receive_text(ping) == [Pong()]


# --- closing ------------------------------------------------------------------


class TestClose:
    def test_close_once_then_closing(self) -> None:
        adapter = Adapter()
        adapter.login()
        adapter.session.close(1001, "server shutting down", 1.0)
        assert adapter.pump() == [CloseConnection(code=1001, reason="server shutting down")]
        assert adapter.session.state is ServerState.CLOSING
        assert not adapter.session.authenticated
        adapter.session.close(1013, "again", 2.0)
        assert adapter.pump() == []
        assert adapter.session.state is ServerState.CLOSING

    def test_messages_after_closing_are_ignored(self) -> None:
        adapter = Adapter()
        adapter.login()
        adapter.session.close(1013, "too slow", 1.0)
        adapter.pump()
        assert adapter.receive(Ping(), PushEvent(repository="todo", event=event("e1"))) == []
        assert adapter.receive_text("garbage") == []
        assert adapter.requests == []

    def test_connection_lost_ends_everything(self) -> None:
        adapter = Adapter()
        adapter.login()
        adapter.session.close(1001, "bye", 1.0)
        adapter.session.connection_lost(2.0)
        assert adapter.pump() == [CloseConnection(code=1001, reason="bye")]
        assert adapter.session.state is ServerState.CLOSED
        assert adapter.session.next_deadline() is None
        adapter.session.connection_lost(3.0)  # both ends may report it
        adapter.session.close(1000, "late", 3.0)
        assert adapter.receive(Ping()) == []
        assert adapter.at(1000.0) == []
        assert adapter.session.state is ServerState.CLOSED

    @pytest.mark.parametrize(
        "state", [ServerState.AWAITING_AUTH, ServerState.AUTHENTICATING, ServerState.AUTHENTICATED]
    )
    def test_connection_lost_from_any_open_state(self, state: ServerState) -> None:
        adapter = manual()
        if state is not ServerState.AWAITING_AUTH:
            adapter.receive(Auth(token="t"))
        if state is ServerState.AUTHENTICATED:
            adapter.answer(adapter.take(Authenticate))
            adapter.pump()
        assert adapter.session.state is state
        adapter.session.connection_lost(1.0)
        assert adapter.session.state is ServerState.CLOSED
        assert adapter.pump() == []
        assert adapter.session.next_deadline() is None

    @pytest.mark.parametrize("code", [999, 1004, 1005, 1006, 1015, 5000])
    def test_invalid_close_codes_are_misuse(self, code: int) -> None:
        with pytest.raises(LocalProtocolError, match=str(code)):
            Adapter().session.close(code, "x", 0.0)

    @pytest.mark.parametrize("code", [1000, 1001, 1008, 1011, 1013, 3000, 4999])
    def test_valid_close_codes(self, code: int) -> None:
        adapter = Adapter()
        adapter.session.close(code, "x", 0.0)
        assert adapter.pump() == [CloseConnection(code=code, reason="x")]

    def test_long_reasons_are_cut_on_a_character_boundary(self) -> None:
        adapter = manual()
        reason = "x" + "\u00e9" * 100  # 201 bytes in UTF-8
        adapter.session.close(1000, reason, 0.0)
        (close,) = adapter.pump()
        assert isinstance(close, CloseConnection)
        assert close.reason == "x" + "\u00e9" * 61
        assert len(close.reason.encode()) == 123

    def test_unencodable_reasons_are_replaced(self) -> None:
        adapter = manual()
        adapter.session.close(1000, "bad \ud800", 0.0)
        assert adapter.pump() == [CloseConnection(code=1000, reason="bad ?")]


class TestVerdictsAfterTheEnd:
    def test_a_commit_while_closing_is_broadcast_but_not_acked(self) -> None:
        adapter = authed_manual()
        adapter.receive(PushEvent(repository="todo", event=event("e1")))
        request = adapter.take(StoreEvents)
        adapter.session.close(1001, "bye", 1.0)
        adapter.pump()
        stored = [event("e1").with_sequence(1)]
        adapter.session.events_stored(request.request_id, stored, [], 2.0)
        assert adapter.pump() == [EventsStored(repository="todo", events=tuple(stored))]

    def test_a_commit_after_the_connection_is_gone_is_still_broadcast(self) -> None:
        adapter = authed_manual()
        adapter.receive(PushEvent(repository="todo", event=event("e1")))
        request = adapter.take(StoreEvents)
        adapter.session.connection_lost(1.0)
        stored = [event("e1").with_sequence(1)]
        adapter.session.events_stored(request.request_id, stored, [], 2.0)
        assert adapter.pump() == [EventsStored(repository="todo", events=tuple(stored))]
        adapter.session.events_stored(request.request_id, stored, [], 2.0)
        assert adapter.pump() == []

    def test_other_verdicts_after_closed_are_ignored(self) -> None:
        adapter = authed_manual()
        adapter.receive(
            PushEvent(repository="todo", event=event("e1")),
            RequestAllEvents(),
            Auth(token="t2"),
        )
        requests = {type(r): r for r in adapter.requests}
        adapter.session.connection_lost(1.0)
        session = adapter.session
        session.auth_accepted(requests[Authenticate].request_id, "x", 2.0)
        session.auth_rejected(requests[Authenticate].request_id, "x", 2.0)
        session.store_failed(requests[StoreEvents].request_id, "x", 2.0)
        session.repositories_listed(requests[ListRepositories].request_id, ["a"], 2.0)
        session.store_failed(12345, "x", 2.0)
        session.fetch_failed(12345, "x", 2.0)
        session.events_fetched(12345, numbered(1), 2.0)
        session.events_stored(12345, [], [], 2.0)
        assert adapter.pump() == []
        assert session.principal == "alice"

    def test_catch_up_stops_when_closing(self) -> None:
        adapter = authed_manual(ServerConfig(page_size=1))
        adapter.receive(RequestEvents(repository="todo"), RequestEvents(repository="other"))
        fetch = adapter.take(FetchEvents)
        adapter.session.close(1001, "bye", 1.0)
        adapter.pump()
        adapter.session.events_fetched(fetch.request_id, numbered(1), 2.0)
        assert adapter.pump() == []
        assert adapter.requests == []

    def test_a_failure_while_closing_sends_nothing(self) -> None:
        adapter = authed_manual()
        adapter.receive(
            RequestEvents(repository="todo"), PushEvent(repository="a", event=event("e"))
        )
        fetch, store = adapter.take(FetchEvents), adapter.take(StoreEvents)
        adapter.session.close(1001, "bye", 1.0)
        adapter.pump()
        adapter.session.fetch_failed(fetch.request_id, "x", 2.0)
        adapter.session.store_failed(store.request_id, "x", 2.0)
        assert adapter.pump() == []

    def test_an_auth_verdict_while_closing_is_ignored(self) -> None:
        adapter = manual()
        adapter.receive(Auth(token="t"), Auth(token="t"))
        first = adapter.take(Authenticate)
        adapter.session.close(1001, "bye", 1.0)
        adapter.pump()
        adapter.session.auth_rejected(first.request_id, "no", 2.0)
        assert adapter.pump() == []
        assert adapter.session.state is ServerState.CLOSING


# --- arbitrary interleavings ---------------------------------------------------

# A small pool of ids and repositories makes duplicates, replays and catch-ups
# of stored events common; the shared strategies add every other shape.
POOL = tuple(event(f"e{n}", f"d{n % 3}") for n in range(6))
pool_events = st.sampled_from(POOL)
pool_repositories = st.sampled_from(("a", "b"))
small_ints = st.integers(min_value=0, max_value=4)
pool_messages = st.one_of(
    st.builds(Auth, token=st.just("t")),
    st.builds(PushEvent, repository=pool_repositories, event=pool_events),
    st.builds(
        PushEventsBatch,
        repository=pool_repositories,
        events=st.lists(pool_events, max_size=5).map(tuple),
    ),
    st.builds(
        RequestEvents,
        repository=pool_repositories,
        after_sequence=st.none() | small_ints,
        limit=st.none() | st.integers(min_value=1, max_value=4),
    ),
    st.builds(RequestAllEvents, repository=st.none() | pool_repositories),
    st.builds(EventsReceived, repository=pool_repositories, count=small_ints),
    st.just(Ping()),
    st.just(Pong()),
)
MACHINE_CONFIG = ServerConfig(
    page_size=2,
    max_batch_length=4,
    max_message_size=1 << 16,
    auth_timeout=20,
    ping_interval=3,
    ping_timeout=4,
    max_queued_before_auth=3,
)
bad_input = st.one_of(
    shared.server_messages,
    st.text(max_size=40),
    st.sampled_from(["{}", '{"type":"auth_success"}', "x" * (MACHINE_CONFIG.max_message_size + 1)]),
)


class ServerSessionMachine(RuleBasedStateMachine):
    """Arbitrary input in arbitrary order; the adapter answers in any order.

    Only :class:`LocalProtocolError` may escape, and only for misuse (the
    ``verdict_for_an_unknown_request`` rule); anything else fails the run.
    """

    def __init__(self) -> None:
        super().__init__()
        self.session = ServerSession(MACHINE_CONFIG)
        self.log = MemoryEventLog()
        self.now = 0.0
        self.pending: list[ServerAction] = []
        self.ever_accepted = False
        self.close_sent = False
        self.session.connection_made(self.now)

    # --- feeding ------------------------------------------------------------

    @rule(messages=st.lists(pool_messages, min_size=1, max_size=3))
    def receive(self, messages: list[Message]) -> None:
        for message in messages:
            self.session.receive_text(encode_message(message), self.now)

    @rule(message=shared.client_messages)
    def receive_anything_valid(self, message: Message) -> None:
        self.session.receive_text(encode_message(message), self.now)

    @rule(received=bad_input)
    def receive_bad_input(self, received: Message | str) -> None:
        if isinstance(received, str):
            self.session.receive_text(received, self.now)
        else:
            self.session.receive_message(received, self.now)

    @precondition(lambda self: self.pending)
    @rule(data=st.data(), ok=st.sampled_from([True, True, True, False]))
    def answer_one(self, data: st.DataObject, ok: bool) -> None:
        index = data.draw(st.integers(0, len(self.pending) - 1))
        self.answer(self.pending.pop(index), ok)

    @precondition(lambda self: self.pending)
    @rule()
    def answer_all(self) -> None:
        while self.pending:
            self.answer(self.pending.pop(0), ok=True)
            self.drain_and_check()

    def answer(self, request: ServerAction, ok: bool) -> None:
        session, now = self.session, self.now
        match request:
            case Authenticate(request_id=rid) if ok:
                session.auth_accepted(rid, "alice", now)
                self.ever_accepted |= session.authenticated
            case Authenticate(request_id=rid):
                session.auth_rejected(rid, "no", now)
            case StoreEvents(request_id=rid, repository=repository, events=events) if ok:
                stored, duplicates = self.log.store(repository, events)
                session.events_stored(rid, stored, duplicates, now)
            case StoreEvents(request_id=rid):
                session.store_failed(rid, "no", now)
            case FetchEvents(request_id=rid, repository=repo, after_sequence=after, limit=n) if ok:
                session.events_fetched(rid, self.log.fetch(repo, after, n), now)
            case ListRepositories(request_id=rid) if ok:
                session.repositories_listed(rid, self.log.repositories(), now)
            case FetchEvents(request_id=rid) | ListRepositories(request_id=rid):
                session.fetch_failed(rid, "no", now)

    @rule(dt=st.floats(min_value=0, max_value=2))
    def advance(self, dt: float) -> None:
        self.now += dt
        self.session.handle_timer(self.now)

    @precondition(lambda self: self.session.next_deadline() is not None)
    @rule()
    def fire_next_timer(self) -> None:
        deadline = self.session.next_deadline()
        assert deadline is not None
        self.now = max(self.now, deadline)
        self.session.handle_timer(self.now)

    @rule(repository=pool_repositories, count=st.integers(0, 2))
    def deliver(self, repository: str, count: int) -> None:
        events = numbered(*range(1, count + 1), repository=repository)
        expected = self.session.authenticated and bool(events)
        assert self.session.deliver(repository, events, self.now) is expected

    @rule(code=st.sampled_from([1000, 1001, 1011, 1013, None]))
    def end(self, code: int | None) -> None:
        if code is None:
            self.session.connection_lost(self.now)
        else:
            self.session.close(code, "bye", self.now)

    @rule(request_id=st.integers(10_000, 20_000))
    def verdict_for_an_unknown_request(self, request_id: int) -> None:
        closed = self.session.state is ServerState.CLOSED
        try:
            self.session.auth_accepted(request_id, "mallory", self.now)
        except LocalProtocolError:
            assert not closed
        else:
            assert closed

    # --- checking every action ---------------------------------------------

    def check(self, action: ServerAction) -> None:
        match action:
            case SendMessage(text=text):
                assert not self.close_sent, "nothing is sent after the close"
                message = decode_message(text)
                if isinstance(message, Ack):
                    for repository, acked in message.repositories.items():
                        stored = set(ids(self.log.events(repository)))
                        assert set(acked) <= stored, "an ack lists only stored ids"
            case CloseConnection():
                assert not self.close_sent, "one close only"
                self.close_sent = True
            case StoreEvents(principal=principal):
                assert self.ever_accepted, "nothing is stored before authentication"
                assert principal == "alice"
                self.pending.append(action)
            case Authenticate() | FetchEvents() | ListRepositories():
                self.pending.append(action)
            case EventsStored(repository=repository, events=events):
                assert set(ids(events)) <= set(ids(self.log.events(repository)))

    @invariant()
    def drain_and_check(self) -> None:
        for action in self.session.drain_actions():
            self.check(action)

    @invariant()
    def deadline_is_consistent(self) -> None:
        deadline = self.session.next_deadline()
        if self.session.state in (ServerState.CLOSING, ServerState.CLOSED):
            assert deadline is None
        else:
            # The heartbeat is always armed while open, and every due timer fired.
            assert deadline is not None
            assert deadline > self.now

    @invariant()
    def authenticated_means_open_and_accepted(self) -> None:
        if self.session.authenticated:
            assert self.ever_accepted
            assert self.session.state in (ServerState.AUTHENTICATING, ServerState.AUTHENTICATED)
        # And the converse: every accepted credential gives "alice".
        open_states = (ServerState.AWAITING_AUTH, *OPEN_AFTER_AUTH)
        accepted = self.session.principal == "alice" and self.session.state in open_states
        assert self.session.authenticated is accepted


ServerSessionMachine.TestCase.settings = settings(
    max_examples=200, stateful_step_count=50, deadline=None
)
TestServerSessionMachine = ServerSessionMachine.TestCase

OPEN_AFTER_AUTH = (ServerState.AUTHENTICATING, ServerState.AUTHENTICATED)


# --- the short path of receive_text -----------------------------------------------

twin_steps = st.lists(
    st.one_of(
        pool_messages.map(encode_message),
        shared.client_messages.map(encode_message),
        st.sampled_from(["{}", "[]", '{"type":"ack","eventIds":[]}']),
        st.sampled_from(["answer", "fail"]),  # the adapter answers what is pending
    ),
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(steps=twin_steps)
def test_receive_text_does_what_receive_message_does(steps: list[str]) -> None:
    """receive_text takes a push_event straight to its store; the result is _dispatch's."""
    short, long = authed_manual(MACHINE_CONFIG), authed_manual(MACHINE_CONFIG)
    for step in steps:
        if step == "answer":
            short.answer_all()
            long.answer_all()
        elif step == "fail":  # every store fails, the rest is answered
            for adapter in (short, long):
                requests, adapter.requests = adapter.requests, []
                for request in requests:
                    if isinstance(request, StoreEvents):
                        adapter.session.store_failed(request.request_id, "no", 0.0)
                    else:
                        adapter.answer(request)
        else:
            short.session.receive_text(step, 0.0)
            try:
                message = decode_message(step)
            except InvalidMessage:
                long.session.receive_text(step, 0.0)  # the same path for what is invalid
            else:
                long.session.receive_message(message, 0.0)
        assert short.pump() == long.pump()
        assert short.requests == long.requests
        assert short.session.state is long.session.state


@settings(max_examples=300, deadline=None)
@given(deadlines=st.lists(st.none() | st.integers(0, 3) | st.floats(0, 3), min_size=3, max_size=3))
def test_next_deadline_is_the_earliest_timer(deadlines: list[float | None]) -> None:
    session = ServerSession()
    session._auth_deadline, session._pong_deadline, session._next_ping = deadlines
    expected = min((d for d in deadlines if d is not None), default=None)
    deadline = session.next_deadline()
    # The same value and the same object: min() keeps the first of equals.
    assert deadline is expected or (deadline == expected and type(deadline) is type(expected))
