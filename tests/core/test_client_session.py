"""The client session: every message and transition, on a fake clock.

The test plays both the adapter and a scripted server: :class:`Client` feeds
the session encoded server messages and decodes what it sends, so assertions
read as protocol messages, in order, mixed with the other actions.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, get_args

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from tests.strategies import client_messages, names, server_messages, sync_events

from lfws_core.actions import (
    ApplyEvents,
    ClientAction,
    CloseConnection,
    ConnectionState,
    ConnectionStateChanged,
    CredentialsNeeded,
    MarkSynced,
    OpenConnection,
    ProtocolErrorReported,
    PushFailed,
    PushRejected,
    ReconnectScheduled,
    SendMessage,
    ServerErrorReported,
    SyncCompleted,
    SyncFiltersNeeded,
)
from lfws_core.client import (
    TRANSITIONS,
    ClientConfig,
    ClientHealth,
    ClientInput,
    ClientSession,
    OverflowPolicy,
    PushResult,
)
from lfws_core.codec import decode_message, encode_message
from lfws_core.errors import LocalProtocolError
from lfws_core.events import Operation, SyncEvent
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
    SyncComplete,
)

S = ConnectionState
I = ClientInput  # noqa: E741
URL = "ws://sync.test:8080/sync?v=1"
HEADERS = {"Authorization": "Bearer t1"}
T0 = datetime(2026, 1, 1, tzinfo=UTC)
MESSAGE_TYPES = get_args(Message)

Output = Message | ClientAction


def config(**changes: Any) -> ClientConfig:
    fields: dict[str, Any] = {
        "url": URL,
        "token": "t1",
        "headers": HEADERS,
        "repositories": ("todos",),
    }
    fields.update(changes)
    return ClientConfig(**fields)


def ev(name: str | int, seq: int | None = None, data_id: str = "doc") -> SyncEvent:
    event = SyncEvent(
        event_id=f"e{name}",
        operation=Operation.UPDATE,
        data_id=data_id,
        created_at=T0 + timedelta(seconds=len(str(name))),
        data={"id": data_id, "name": str(name)},
    )
    return event if seq is None else event.with_sequence(seq)


def changed(state: ConnectionState, reason: str) -> ConnectionStateChanged:
    return ConnectionStateChanged(state=state, reason=reason)


def opened(headers: Mapping[str, str] = HEADERS) -> OpenConnection:
    return OpenConnection(
        url=URL,
        host="sync.test",
        port=8080,
        secure=False,
        resource="/sync?v=1",
        headers=tuple(headers.items()),
    )


class Client:
    """A session on a fake clock, with the test as its adapter and its server."""

    def __init__(
        self,
        cfg: ClientConfig | None = None,
        *,
        draws: Iterable[float] = (0.5,),
        cursors: Mapping[str, int] | None = None,
    ) -> None:
        self.now = 0.0
        values = itertools.cycle(draws)
        self.session = ClientSession(
            cfg or config(), random=lambda: next(values), cursors=cursors or {}
        )

    def out(self) -> list[Output]:
        return [
            decode_message(a.text) if isinstance(a, SendMessage) else a
            for a in self.session.drain_actions()
        ]

    def sent(self) -> list[Message]:
        return [o for o in self.out() if isinstance(o, MESSAGE_TYPES)]

    def receive(self, *messages: Message) -> list[Output]:
        for message in messages:
            self.session.receive_text(encode_message(message), self.now)
        return self.out()

    def at(self, when: float) -> list[Output]:
        self.now = when
        self.session.handle_timer(when)
        return self.out()

    def start(self) -> list[Output]:
        self.session.start(self.now)
        return self.out()

    def open(self) -> list[Output]:
        self.session.connection_made(self.now)
        return self.out()

    def lose(self, reason: str = "reset", code: int | None = None) -> list[Output]:
        self.session.connection_lost(self.now, reason, code)
        return self.out()

    def push(self, repository: str, event: SyncEvent) -> PushResult:
        return self.session.push(repository, event, self.now)

    def applied(self, batch_id: int) -> list[Output]:
        self.session.events_applied(batch_id, self.now)
        return self.out()

    def failed(self, batch_id: int, reason: str = "disk full") -> list[Output]:
        self.session.events_apply_failed(batch_id, reason, self.now)
        return self.out()

    def credentials(self, token: str | None, headers: Mapping[str, str] = HEADERS) -> list[Output]:
        self.session.update_credentials(token=token, headers=headers, now=self.now)
        return self.out()

    def authenticated(self) -> list[Output]:
        """Start, open and authenticate; the catch-up requests are left unanswered."""
        return self.start() + self.open() + self.receive(AuthSuccess())

    def live(self) -> list[Output]:
        """Start, open, authenticate and answer every catch-up request."""
        out = self.authenticated()
        requests = [o for o in out if isinstance(o, RequestEvents | RequestAllEvents)]
        return out + self.receive(*[SyncComplete() for _ in requests])

    def reconnect(self) -> list[Output]:
        """After a drop: wait for the scheduled reconnect and open."""
        deadline = self.session.next_deadline()
        assert deadline is not None
        return self.at(deadline) + self.open()


def reach(state: ConnectionState) -> Client:
    """Return a session in ``state`` (all outputs drained)."""
    client = Client()
    steps: dict[ConnectionState, Callable[[], object]] = {
        S.IDLE: lambda: None,
        S.CONNECTING: client.start,
        S.AUTHENTICATING: lambda: client.start() + client.open(),
        S.SYNCING: client.authenticated,
        S.LIVE: client.live,
        S.WAITING_TO_RECONNECT: lambda: client.start() + client.lose(),
        S.NEEDS_CREDENTIALS: lambda: (
            client.start() + client.open() + client.receive(Error(message="no"))
        ),
        S.CLOSED: lambda: client.session.close(0.0),
    }
    steps[state]()
    client.out()
    assert client.session.state is state
    return client


# --- configuration ------------------------------------------------------------


def test_config_defaults() -> None:
    cfg = ClientConfig(url=URL)
    assert (cfg.token, dict(cfg.headers), cfg.repositories) == (None, {}, ())
    assert (cfg.reconnect_delay, cfg.max_reconnect_delay, cfg.stable_after) == (3.0, 60.0, 10.0)
    assert (cfg.heartbeat_interval, cfg.pong_timeout) == (30.0, 10.0)
    assert (cfg.connect_timeout, cfg.auth_timeout) == (10.0, 10.0)
    assert cfg.enable_pending_queue and not cfg.custom_sync_filter
    assert (cfg.max_pending, cfg.max_batch_size, cfg.max_auth_failures) == (10_000, 100, 3)
    assert cfg.max_message_size == 1 << 20
    assert cfg.overflow_policy is OverflowPolicy.REJECT_NEW


def test_config_copies_headers_and_dedupes_repositories() -> None:
    headers = {"X-App": "1"}
    cfg = config(headers=headers, repositories=["a", "b", "a"])
    headers["X-App"] = "2"
    assert dict(cfg.headers) == {"X-App": "1"}
    assert cfg.repositories == ("a", "b")


@pytest.mark.parametrize(
    ("changes", "complaint"),
    [
        ({"url": "http://x/"}, "ws://"),
        ({"token": ""}, "token"),
        ({"token": 5}, "token"),
        ({"headers": [("a", "b")]}, "mapping"),
        ({"headers": {"bad name": "x"}}, "header name"),
        ({"headers": {"": "x"}}, "header name"),
        ({"headers": {1: "x"}}, "header name"),
        ({"headers": {"type": "x"}}, "auth uses that field"),
        ({"headers": {"token": "x"}}, "auth uses that field"),
        ({"headers": {"X-A": "a\r\nInjected: 1"}}, "value for header"),
        ({"headers": {"X-A": 1}}, "value for header"),
        ({"repositories": "todos"}, "not a string"),
        ({"repositories": ("",)}, "repository name"),
        ({"repositories": (3,)}, "repository name"),
        ({"repositories": ("a\x00",)}, "repository name must not contain NUL"),
        ({"reconnect_delay": 0}, "positive"),
        ({"max_reconnect_delay": -1.0}, "positive"),
        ({"stable_after": float("inf")}, "positive"),
        ({"heartbeat_interval": float("nan")}, "positive"),
        ({"pong_timeout": True}, "number of seconds"),
        ({"connect_timeout": "10"}, "number of seconds"),
        ({"auth_timeout": 0.0}, "positive"),
        ({"reconnect_delay": 10.0, "max_reconnect_delay": 5.0}, "below"),
        ({"max_pending": 0}, "max_pending"),
        ({"max_batch_size": 1.5}, "max_batch_size"),
        ({"max_message_size": 0}, "max_message_size"),
        ({"max_message_size": True}, "max_message_size"),
        ({"max_auth_failures": True}, "max_auth_failures"),
        ({"overflow_policy": "drop_oldest"}, "OverflowPolicy"),
    ],
)
def test_config_rejects_nonsense(changes: dict[str, Any], complaint: str) -> None:
    with pytest.raises(LocalProtocolError, match=complaint):
        config(**changes)


@pytest.mark.parametrize(
    ("kwargs", "complaint"),
    [
        ({"cfg": "ws://x/"}, "ClientConfig"),
        ({"random": 0.5}, "callable"),
        ({"cursors": {"todos": -1}}, "cursor"),
        ({"cursors": {"todos": True}}, "cursor"),
        ({"cursors": {"": 1}}, "repository name"),
    ],
)
def test_session_rejects_nonsense(kwargs: dict[str, Any], complaint: str) -> None:
    args: dict[str, Any] = {"cfg": config(), "random": lambda: 0.5, "cursors": {}}
    args.update(kwargs)
    with pytest.raises(LocalProtocolError, match=complaint):
        ClientSession(args["cfg"], random=args["random"], cursors=args["cursors"])


# --- the transition table -----------------------------------------------------

MOVES = {
    (S.IDLE, I.START): S.CONNECTING,
    (S.CONNECTING, I.CONNECTION_MADE): S.AUTHENTICATING,
    (S.CONNECTING, I.CONNECTION_FAILED): S.WAITING_TO_RECONNECT,
    (S.CONNECTING, I.CONNECTION_LOST): S.WAITING_TO_RECONNECT,
    (S.CONNECTING, I.TIMED_OUT): S.WAITING_TO_RECONNECT,
    (S.AUTHENTICATING, I.AUTH_ACCEPTED): S.SYNCING,
    (S.SYNCING, I.CAUGHT_UP): S.LIVE,
    (S.SYNCING, I.CATCH_UP_FAILED): S.WAITING_TO_RECONNECT,
    (S.WAITING_TO_RECONNECT, I.RECONNECT_DUE): S.CONNECTING,
    (S.NEEDS_CREDENTIALS, I.CREDENTIALS_UPDATED): S.CONNECTING,
    **{
        (s, I.CONNECTION_LOST): S.WAITING_TO_RECONNECT
        for s in (S.AUTHENTICATING, S.SYNCING, S.LIVE)
    },
    **{(s, I.TIMED_OUT): S.WAITING_TO_RECONNECT for s in (S.AUTHENTICATING, S.SYNCING, S.LIVE)},
    **{(s, I.AUTH_REFUSED): S.NEEDS_CREDENTIALS for s in (S.AUTHENTICATING, S.SYNCING, S.LIVE)},
    **{(s, I.CLOSE): S.CLOSED for s in S if s is not S.CLOSED},
}


def test_the_moves_of_the_table() -> None:
    assert {pair: new for pair, new in TRANSITIONS.items() if pair[0] is not new} == MOVES


def test_the_table_is_read_only() -> None:
    with pytest.raises(TypeError):
        TRANSITIONS[S.IDLE, I.CONNECTION_MADE] = S.LIVE  # type: ignore[index]


CALLS: dict[ClientInput, Callable[[ClientSession], object]] = {
    I.START: lambda s: s.start(0.0),
    I.CONNECTION_MADE: lambda s: s.connection_made(0.0),
    I.CONNECTION_FAILED: lambda s: s.connection_failed(0.0, "refused"),
    I.CONNECTION_LOST: lambda s: s.connection_lost(0.0, "reset"),
    I.MESSAGE_RECEIVED: lambda s: s.receive_text(encode_message(Pong()), 0.0),
    I.PUSH: lambda s: s.push("todos", ev("p"), 0.0),
    I.SYNC_FILTERS_BUILT: lambda s: s.sync_filters_built({}, 0.0),
    I.CREDENTIALS_UPDATED: lambda s: s.update_credentials(token=None, headers={}, now=0.0),
    I.CLOSE: lambda s: s.close(0.0),
}


@pytest.mark.parametrize("state", list(S))
@pytest.mark.parametrize("event", list(CALLS))
def test_every_call_in_every_state_follows_the_table(
    state: ConnectionState, event: ClientInput
) -> None:
    session = reach(state).session
    if (state, event) not in TRANSITIONS:
        with pytest.raises(LocalProtocolError, match=f"{event.value} is not allowed"):
            CALLS[event](session)
        assert session.state is state
    else:
        CALLS[event](session)
        assert session.state is TRANSITIONS[state, event]


REPORTS: dict[ClientInput, Callable[[ClientSession], object]] = {
    I.EVENTS_APPLIED: lambda s: s.events_applied(1, 0.0),
    I.EVENTS_APPLY_FAILED: lambda s: s.events_apply_failed(1, "disk full", 0.0),
}


@pytest.mark.parametrize("state", list(S))
@pytest.mark.parametrize("event", list(REPORTS))
def test_store_reports_without_a_batch(state: ConnectionState, event: ClientInput) -> None:
    session = reach(state).session
    if state is S.CLOSED:
        REPORTS[event](session)  # ignored after close
    elif state is S.IDLE:
        with pytest.raises(LocalProtocolError, match=f"{event.value} is not allowed"):
            REPORTS[event](session)
    else:
        with pytest.raises(LocalProtocolError, match=r"batch 1 reported \w+, none is outstanding"):
            REPORTS[event](session)
    assert session.state is state


# --- connecting ----------------------------------------------------------------


def test_start_opens_a_connection() -> None:
    client = Client()
    assert client.start() == [changed(S.CONNECTING, "started"), opened()]
    assert client.session.next_deadline() == 10.0
    assert client.session.reason == "started"
    assert not client.session.connected


def test_secure_url_and_default_port() -> None:
    client = Client(config(url="wss://sync.test/"))
    assert client.start()[1] == OpenConnection(
        url="wss://sync.test/",
        host="sync.test",
        port=443,
        secure=True,
        resource="/",
        headers=tuple(HEADERS.items()),
    )


def test_connection_made_sends_auth() -> None:
    client = Client()
    client.start()
    client.now = 1.0
    assert client.open() == [
        changed(S.AUTHENTICATING, "connected"),
        Auth(token="t1", headers=HEADERS),
    ]
    assert client.session.next_deadline() == 11.0  # the auth timeout


def test_connect_timeout_reconnects_with_backoff() -> None:
    client = Client()
    client.start()
    reason = "no connection after 10.0s"
    assert client.at(10.0) == [
        CloseConnection(code=1011, reason=reason),
        changed(S.WAITING_TO_RECONNECT, reason),
        ReconnectScheduled(at=11.5, delay=1.5, attempt=1),
    ]
    assert client.at(11.4) == []
    assert client.at(11.5) == [changed(S.CONNECTING, "reconnecting"), opened()]
    assert client.session.next_deadline() == 21.5


@pytest.mark.parametrize("fail", ["failed", "lost"])
def test_connection_failure_reconnects_without_closing(fail: str) -> None:
    client = Client()
    client.start()
    client.now = 2.0
    if fail == "failed":
        client.session.connection_failed(2.0, "refused")
        reason = "connection failed: refused"
    else:
        client.session.connection_lost(2.0, "refused", 1006)
        reason = "connection lost: refused (1006)"
    assert client.out() == [
        changed(S.WAITING_TO_RECONNECT, reason),
        ReconnectScheduled(at=3.5, delay=1.5, attempt=1),
    ]


def test_backoff_doubles_up_to_the_cap() -> None:
    client = Client(draws=[1.0])
    client.start()
    delays = []
    for _ in range(7):
        client.session.connection_failed(client.now, "refused")
        scheduled = client.out()[-1]
        assert isinstance(scheduled, ReconnectScheduled)
        delays.append((scheduled.delay, scheduled.attempt))
        client.at(scheduled.at)
    assert delays == [(3.0, 1), (6.0, 2), (12.0, 3), (24.0, 4), (48.0, 5), (60.0, 6), (60.0, 7)]


def test_zero_jitter_reconnects_in_the_same_timer_call() -> None:
    client = Client(draws=[0.0])
    client.start()
    reason = "no connection after 10.0s"
    assert client.at(10.0) == [
        CloseConnection(code=1011, reason=reason),
        changed(S.WAITING_TO_RECONNECT, reason),
        ReconnectScheduled(at=10.0, delay=0.0, attempt=1),
        changed(S.CONNECTING, "reconnecting"),
        opened(),
    ]
    assert client.session.next_deadline() == 20.0


def test_a_stable_connection_resets_the_backoff() -> None:
    client = Client(draws=[1.0])
    client.start()
    client.session.connection_failed(0.0, "refused")
    client.reconnect()
    client.lose()
    client.reconnect()
    client.receive(AuthSuccess(), SyncComplete())
    start = client.now
    client.at(start + 9.9)
    assert client.session.health(client.now).reconnect_attempt == 2
    client.at(start + 10.0)
    assert client.session.health(client.now).reconnect_attempt == 0
    assert client.lose()[-1] == ReconnectScheduled(at=start + 13.0, delay=3.0, attempt=1)


def test_a_short_connection_keeps_the_backoff() -> None:
    client = Client(draws=[1.0])
    client.start()
    client.session.connection_failed(0.0, "refused")
    client.reconnect()
    client.receive(AuthSuccess(), SyncComplete())
    client.at(client.now + 5.0)
    assert client.lose()[-1] == ReconnectScheduled(at=client.now + 6.0, delay=6.0, attempt=2)


def test_a_bad_random_source_is_misuse() -> None:
    client = Client(draws=[1.5])
    client.start()
    with pytest.raises(LocalProtocolError, match="random_value"):
        client.session.connection_failed(0.0, "refused")
    assert client.session.state is S.CONNECTING


# --- authentication --------------------------------------------------------------


def test_auth_success_requests_every_known_repository() -> None:
    client = Client(config(repositories=("todos", "notes")), cursors={"todos": 7, "tags": 2})
    client.start()
    client.open()
    assert client.receive(AuthSuccess()) == [
        changed(S.SYNCING, "authenticated"),
        RequestEvents(repository="todos", after_sequence=7),
        RequestAllEvents(repository="notes"),
        RequestEvents(repository="tags", after_sequence=2),
    ]
    assert client.session.connected
    # sync_complete closes the oldest request, whatever repository it names.
    assert client.receive(SyncComplete(repository="tags")) == []
    assert client.receive(SyncComplete()) == []
    assert client.receive(SyncComplete(repository="todos")) == [changed(S.LIVE, "caught up")]
    assert client.session.state is S.LIVE


def test_no_known_repository_requests_all_events() -> None:
    client = Client(config(repositories=()))
    out = client.authenticated()
    assert out[-1] == RequestAllEvents()
    assert client.receive(SyncComplete()) == [changed(S.LIVE, "caught up")]


def test_auth_timeout_reconnects_and_is_not_a_refusal() -> None:
    client = Client()
    client.start()
    client.open()
    reason = "no answer to auth after 10.0s"
    assert client.at(10.0) == [
        CloseConnection(code=1011, reason=reason),
        changed(S.WAITING_TO_RECONNECT, reason),
        ReconnectScheduled(at=11.5, delay=1.5, attempt=1),
    ]


def test_error_while_authenticating_is_a_refusal() -> None:
    client = Client()
    client.start()
    client.open()
    reason = "authentication refused: bad token"
    assert client.receive(Error(message="bad token")) == [
        CloseConnection(code=1000, reason="authentication refused"),
        changed(S.NEEDS_CREDENTIALS, reason),
        CredentialsNeeded(reason=reason, attempt=1),
    ]
    assert client.session.next_deadline() is None  # no reconnect with the same token
    new = {"Authorization": "Bearer t2"}
    assert client.credentials("t2", new) == [
        changed(S.CONNECTING, "credentials updated"),
        opened(new),
    ]
    assert client.open()[-1] == Auth(token="t2", headers=new)


def test_close_with_1008_while_authenticating_is_a_refusal() -> None:
    client = Client()
    client.start()
    client.open()
    reason = "connection lost: policy (1008)"
    assert client.lose("policy", 1008) == [
        changed(S.NEEDS_CREDENTIALS, reason),
        CredentialsNeeded(reason=reason, attempt=1),
    ]


def test_close_with_1008_when_authenticated_reconnects() -> None:
    client = Client()
    client.live()
    assert client.lose("policy", 1008)[0] == changed(
        S.WAITING_TO_RECONNECT, "connection lost: policy (1008)"
    )


def test_refusals_stop_asking_after_max_auth_failures() -> None:
    client = Client()
    client.start()
    client.open()
    for attempt in (1, 2):
        out = client.receive(Error(message="no"))
        assert out[-1] == CredentialsNeeded(reason="authentication refused: no", attempt=attempt)
        client.credentials(f"t{attempt}")
        client.open()
    reason = "authentication refused: no; refused 3 times, waiting for update_credentials()"
    assert client.receive(Error(message="no")) == [
        CloseConnection(code=1000, reason="authentication refused"),
        changed(S.NEEDS_CREDENTIALS, reason),
    ]
    assert client.session.health(client.now).reason == reason
    assert client.session.next_deadline() is None
    # Explicit new credentials still reconnect; a success resets the count.
    assert client.credentials("t9")[0] == changed(S.CONNECTING, "credentials updated")
    client.open()
    client.receive(AuthSuccess(), SyncComplete())
    client.lose()
    client.reconnect()
    assert client.receive(Error(message="no"))[-1] == CredentialsNeeded(
        reason="authentication refused: no", attempt=1
    )


def test_credentials_are_stored_while_not_connected() -> None:
    client = Client()
    new = {"X-Key": "k2"}
    assert client.credentials(None, new) == []  # idle
    assert client.start() == [changed(S.CONNECTING, "started"), opened(new)]
    assert client.credentials("t3", new) == []  # connecting
    assert client.open()[-1] == Auth(token="t3", headers=new)
    client.lose()
    assert client.credentials("t4", {}) == []  # waiting to reconnect
    out = client.reconnect()
    assert out[1] == opened({})
    assert out[-1] == Auth(token="t4", headers={})


def test_credentials_are_checked() -> None:
    client = Client()
    with pytest.raises(LocalProtocolError, match="token"):
        client.credentials("")
    with pytest.raises(LocalProtocolError, match="header"):
        client.credentials("t", {"token": "x"})


def test_in_band_reauthentication() -> None:
    client = Client(config(heartbeat_interval=100.0))
    client.live()
    client.at(25.0)
    assert client.credentials("t2", {}) == [Auth(token="t2", headers={})]
    assert client.session.next_deadline() == 35.0
    assert client.receive(AuthSuccess()) == []
    assert client.session.state is S.LIVE
    assert client.session.next_deadline() == 100.0  # the heartbeat; the auth timer is gone


def test_in_band_refusal() -> None:
    client = Client()
    client.live()
    client.credentials("t2", {})
    reason = "authentication refused: expired"
    assert client.receive(Error(message="expired")) == [
        CloseConnection(code=1000, reason="authentication refused"),
        changed(S.NEEDS_CREDENTIALS, reason),
        CredentialsNeeded(reason=reason, attempt=1),
    ]


def test_in_band_timeout() -> None:
    client = Client()
    client.live()
    client.now = 12.0
    client.credentials("t2", {})
    reason = "no answer to auth after 10.0s"
    assert client.at(22.0)[:2] == [
        CloseConnection(code=1011, reason=reason),
        changed(S.WAITING_TO_RECONNECT, reason),
    ]


def test_new_credentials_while_authenticating_supersede_the_first_auth() -> None:
    client = Client()
    client.start()
    client.open()
    assert client.credentials("t2", {}) == [Auth(token="t2", headers={})]
    # The error answers the replaced auth: reported, not a refusal.
    assert client.receive(Error(message="old token")) == [ServerErrorReported(message="old token")]
    assert client.session.state is S.AUTHENTICATING
    assert client.receive(AuthSuccess()) == [
        changed(S.SYNCING, "authenticated"),
        RequestAllEvents(repository="todos"),
    ]


def test_first_auth_accepted_then_the_second_refused() -> None:
    client = Client()
    client.start()
    client.open()
    client.credentials("t2", {})
    assert client.receive(AuthSuccess())[0] == changed(S.SYNCING, "authenticated")
    assert client.receive(Error(message="t2 is bad"))[1] == changed(
        S.NEEDS_CREDENTIALS, "authentication refused: t2 is bad"
    )


def test_auth_success_without_auth_is_reported() -> None:
    client = Client()
    client.live()
    assert client.receive(AuthSuccess()) == [
        ProtocolErrorReported(reason="auth_success without an auth, ignored")
    ]


# --- server errors and bad input -------------------------------------------------------


def test_error_when_authenticated_is_reported_not_fatal() -> None:
    client = Client()
    client.live()
    assert client.receive(Error(message="Failed to push event: disk full")) == [
        ServerErrorReported(message="Failed to push event: disk full")
    ]
    # A catch-up failure text with no catch-up outstanding is just an error.
    assert client.receive(Error(message="Failed to fetch events: x")) == [
        ServerErrorReported(message="Failed to fetch events: x")
    ]
    assert client.session.state is S.LIVE


REFUSED = "Failed to push events batch: no write access to todos"


@pytest.mark.parametrize("code", ["forbidden", "invalid"])
def test_events_refused_for_good_are_rejected_and_never_sent_again(code: str) -> None:
    client = Client()
    for repository, name in [("todos", 1), ("notes", 2), ("todos", 3), ("todos", 4)]:
        client.push(repository, ev(name))
    client.authenticated()
    refusal = Error(message=REFUSED, event_ids=("e3", "e2", "e1", "unknown"), code=code)
    assert client.receive(refusal) == [
        PushRejected(repository="todos", event_ids=("e3", "e1"), reason=REFUSED, code=code),
        PushRejected(repository="notes", event_ids=("e2",), reason=REFUSED, code=code),
    ]
    assert client.session.pending_count == 1
    assert client.receive(refusal) == []  # settled already
    client.lose()
    client.reconnect()
    assert client.receive(AuthSuccess())[-1] == PushEventsBatch(repository="todos", events=(ev(4),))


def test_a_queued_event_can_be_rejected() -> None:
    client = Client(config(custom_sync_filter=True))
    client.push("todos", ev(1))
    client.authenticated()  # waiting for filters: e1 is still queued
    refusal = Error(message=REFUSED, event_ids=("e1",), code="forbidden")
    assert client.receive(refusal) == [
        PushRejected(repository="todos", event_ids=("e1",), reason=REFUSED, code="forbidden")
    ]
    assert client.session.pending_count == 0


@pytest.mark.parametrize("code", ["unavailable", "overloaded", None])
def test_events_refused_for_now_stay_pending_and_go_out_again(code: str | None) -> None:
    client = Client()
    client.live()
    client.push("todos", ev(1))
    client.out()
    text = "Failed to push event: storage unavailable"
    refusal = Error(message=text, event_ids=("e1",), code=code)
    assert client.receive(refusal) == [ServerErrorReported(message=text)]
    assert client.session.pending_count == 1
    client.lose()
    client.reconnect()
    assert client.receive(AuthSuccess())[-1] == PushEventsBatch(repository="todos", events=(ev(1),))


def test_a_push_refusal_during_reauthentication_is_not_an_auth_refusal() -> None:
    client = Client()
    client.live()
    client.push("todos", ev(1))
    client.credentials("t2", {})
    client.out()
    refusal = Error(message=REFUSED, event_ids=("e1",), code="forbidden")
    assert client.receive(refusal) == [
        PushRejected(repository="todos", event_ids=("e1",), reason=REFUSED, code="forbidden")
    ]
    assert client.receive(AuthSuccess()) == []
    assert client.session.state is S.LIVE


@pytest.mark.parametrize(
    "text", ["Failed to fetch events: db down", "Failed to fetch all events: db down"]
)
def test_catch_up_failure_reconnects(text: str) -> None:
    client = Client()
    client.authenticated()
    reason = f"catch-up failed: {text}"
    assert client.receive(Error(message=text)) == [
        ServerErrorReported(message=text),
        CloseConnection(code=1000, reason=reason),
        changed(S.WAITING_TO_RECONNECT, reason),
        ReconnectScheduled(at=1.5, delay=1.5, attempt=1),
    ]


def test_invalid_text_is_reported_and_ignored() -> None:
    client = Client()
    client.live()
    for text in ["{", "[]", '{"type": "nope"}', '{"type": "events"}']:
        client.session.receive_text(text, client.now)
        (out,) = client.out()
        assert isinstance(out, ProtocolErrorReported)
        assert out.reason
    assert client.session.state is S.LIVE


@pytest.mark.parametrize(
    ("message", "name"),
    [
        (Auth(token="x"), "auth"),
        (PushEvent(repository="todos", event=ev(1)), "push_event"),
        (PushEventsBatch(repository="todos", events=(ev(1),)), "push_events_batch"),
        (RequestEvents(repository="todos", after_sequence=1), "request_events"),
        (RequestAllEvents(), "request_all_events"),
        (EventsReceived(repository="todos", count=1), "events_received"),
    ],
)
def test_client_messages_from_the_server_are_reported(message: Message, name: str) -> None:
    client = Client()
    client.live()
    reason = f"the server sent {name}, a client message"
    assert client.receive(message) == [ProtocolErrorReported(reason=reason)]


@pytest.mark.parametrize(
    "message",
    [Events(repository="todos", events=(ev(1, 1),)), Ack(event_ids=("e1",)), SyncComplete()],
)
def test_messages_before_auth_success_are_reported(message: Message) -> None:
    client = Client()
    client.start()
    client.open()
    reason = "a message before auth_success, ignored"
    assert client.receive(message) == [ProtocolErrorReported(reason=reason)]
    assert client.session.state is S.AUTHENTICATING


def test_unsolicited_sync_complete_is_reported() -> None:
    client = Client()
    client.live()
    reason = "sync_complete without a request, ignored"
    assert client.receive(SyncComplete()) == [ProtocolErrorReported(reason=reason)]


def test_receive_message_takes_decoded_messages() -> None:
    client = Client()
    client.live()
    client.session.receive_message(Ping(), client.now)
    assert client.out() == [Pong()]
    with pytest.raises(LocalProtocolError, match="not a protocol message"):
        client.session.receive_message("ping", client.now)  # type: ignore[arg-type]


# --- heartbeats --------------------------------------------------------------------


def test_server_ping_is_answered() -> None:
    client = Client()
    client.live()
    assert client.receive(Ping()) == [Pong()]
    assert client.receive(Pong()) == []


def test_heartbeat_detects_a_silent_link() -> None:
    client = Client()
    client.live()
    assert client.at(30.0) == [Ping()]
    assert client.session.next_deadline() == 40.0
    assert client.at(39.0) == []
    assert client.receive(Pong()) == []
    assert client.session.next_deadline() == 60.0
    assert client.at(60.0) == [Ping()]
    reason = "no message for 10.0s after a ping"
    assert client.at(70.0) == [
        CloseConnection(code=1011, reason=reason),
        changed(S.WAITING_TO_RECONNECT, reason),
        ReconnectScheduled(at=71.5, delay=1.5, attempt=1),
    ]


def test_any_message_proves_the_link_alive() -> None:
    client = Client()
    client.live()
    client.at(30.0)
    client.session.receive_text("not json", 31.0)
    client.out()
    assert client.session.next_deadline() == 60.0


def test_heartbeats_run_while_authenticating() -> None:
    client = Client(config(auth_timeout=100.0))
    client.start()
    client.open()
    assert client.at(30.0) == [Ping()]


def test_a_long_pong_timeout_is_not_pushed_back_by_later_pings() -> None:
    client = Client(config(heartbeat_interval=5.0, pong_timeout=12.0))
    client.live()
    assert client.at(5.0) == [Ping()]
    assert client.at(10.0) == [Ping()]
    assert client.at(15.0) == [Ping()]
    assert client.at(17.0)[0] == CloseConnection(
        code=1011, reason="no message for 12.0s after a ping"
    )


def test_handle_timer_fires_everything_due() -> None:
    client = Client()
    client.live()
    assert client.at(100.0) == [Ping()]  # the stable timer fired too, silently
    assert client.session.next_deadline() == 110.0


# --- pushing and the pending queue ------------------------------------------------------


def test_push_when_live_is_sent_at_once() -> None:
    client = Client()
    client.live()
    assert client.push("todos", ev(1)) is PushResult.SENT
    assert client.out() == [PushEvent(repository="todos", event=ev(1))]
    assert client.session.pending_count == 1


def test_push_while_syncing_is_sent_at_once() -> None:
    client = Client()
    client.authenticated()
    assert client.push("todos", ev(1)) is PushResult.SENT
    assert client.out() == [PushEvent(repository="todos", event=ev(1))]


def test_queued_events_are_flushed_in_batches_after_the_catch_up_requests() -> None:
    client = Client(config(max_batch_size=2))
    assert client.push("todos", ev(1)) is PushResult.QUEUED
    client.start()
    assert client.push("notes", ev(2)) is PushResult.QUEUED
    client.open()
    assert client.push("todos", ev(3)) is PushResult.QUEUED
    assert client.push("todos", ev(4)) is PushResult.QUEUED
    assert client.out() == []
    assert client.receive(AuthSuccess()) == [
        changed(S.SYNCING, "authenticated"),
        RequestAllEvents(repository="todos"),
        PushEventsBatch(repository="todos", events=(ev(1), ev(3))),
        PushEventsBatch(repository="todos", events=(ev(4),)),
        PushEventsBatch(repository="notes", events=(ev(2),)),
    ]
    assert client.session.pending_count == 4


def test_unacknowledged_events_are_sent_again_after_a_reconnect() -> None:
    client = Client()
    client.live()
    client.push("todos", ev(1))
    client.lose()
    assert client.push("todos", ev(2)) is PushResult.QUEUED
    assert client.push("todos", ev(1)) is PushResult.QUEUED  # still pending: idempotent
    client.reconnect()
    assert client.receive(AuthSuccess())[-1] == PushEventsBatch(
        repository="todos", events=(ev(1), ev(2))
    )


def test_pushing_a_pending_event_again_is_idempotent() -> None:
    client = Client()
    client.live()
    assert client.push("todos", ev(1)) is PushResult.SENT
    assert client.push("todos", ev(1)) is PushResult.SENT
    assert client.out() == [PushEvent(repository="todos", event=ev(1))]
    assert client.session.pending_count == 1


def test_ack_marks_events_synced_per_repository() -> None:
    client = Client()
    client.live()
    for repository, name in [("todos", 1), ("notes", 2), ("todos", 3)]:
        client.push(repository, ev(name))
    client.out()
    ack = Ack(event_ids=("e1", "unknown"), repositories={"notes": ("e2",), "todos": ("e1",)})
    assert client.receive(ack) == [MarkSynced(repositories={"todos": ("e1",), "notes": ("e2",)})]
    assert client.session.pending_count == 1
    assert client.receive(Ack(event_ids=("e1",))) == []  # acknowledged already


def test_acks_in_a_row_are_one_mark_synced() -> None:
    client = Client()
    client.live()
    for repository, name in [("todos", 1), ("notes", 2), ("todos", 3), ("todos", 4)]:
        client.push(repository, ev(name))
    client.out()
    out = client.receive(
        Ack(event_ids=("e1",)),
        Ack(event_ids=("unknown",)),  # nothing to mark: joins nothing
        Ack(event_ids=("e2",)),
        Ack(event_ids=("e3",)),
        Ping(),  # an action in between ends the run
        Ack(event_ids=("e4",)),
    )
    assert out == [
        MarkSynced(repositories={"todos": ("e1", "e3"), "notes": ("e2",)}),
        Pong(),
        MarkSynced(repositories={"todos": ("e4",)}),
    ]


def test_an_ack_after_a_drain_is_a_mark_synced_of_its_own() -> None:
    client = Client()
    client.live()
    client.push("todos", ev(1))
    client.push("todos", ev(2))
    client.out()
    assert client.receive(Ack(event_ids=("e1",))) == [MarkSynced(repositories={"todos": ("e1",)})]
    assert client.receive(Ack(event_ids=("e2",))) == [MarkSynced(repositories={"todos": ("e2",)})]


def test_ack_of_a_queued_event() -> None:
    client = Client(config(custom_sync_filter=True))
    client.push("todos", ev(1))
    client.authenticated()  # waiting for filters: e1 is still queued
    assert client.receive(Ack(event_ids=("e1",))) == [MarkSynced(repositories={"todos": ("e1",)})]
    assert client.session.pending_count == 0


def test_push_fails_when_the_queue_is_disabled() -> None:
    client = Client(config(enable_pending_queue=False))
    assert client.push("todos", ev(1)) is PushResult.FAILED
    reason = "not connected and the pending queue is disabled"
    assert client.out() == [PushFailed(repository="todos", event_ids=("e1",), reason=reason)]
    assert client.session.pending_count == 0


def test_without_queue_unacknowledged_events_fail_on_disconnect() -> None:
    client = Client(config(enable_pending_queue=False))
    client.live()
    client.push("todos", ev(1))
    client.push("notes", ev(2))
    client.out()
    reason = "connection lost before the ack"
    assert client.lose()[:2] == [
        PushFailed(repository="todos", event_ids=("e1",), reason=reason),
        PushFailed(repository="notes", event_ids=("e2",), reason=reason),
    ]
    assert client.session.pending_count == 0


def test_full_queue_rejects_new_events() -> None:
    client = Client(config(max_pending=2))
    client.push("todos", ev(1))
    client.push("todos", ev(2))
    assert client.push("todos", ev(3)) is PushResult.FAILED
    reason = "the pending queue is full"
    assert client.out() == [PushFailed(repository="todos", event_ids=("e3",), reason=reason)]
    assert client.session.pending_count == 2


def test_full_queue_drops_the_oldest() -> None:
    client = Client(config(max_pending=2, overflow_policy=OverflowPolicy.DROP_OLDEST))
    client.push("notes", ev(1))
    client.push("todos", ev(2))
    assert client.push("todos", ev(3)) is PushResult.QUEUED
    reason = "dropped from the full pending queue"
    assert client.out() == [PushFailed(repository="notes", event_ids=("e1",), reason=reason)]
    assert client.authenticated()[-1] == PushEventsBatch(repository="todos", events=(ev(2), ev(3)))


@pytest.mark.parametrize("policy", list(OverflowPolicy))
def test_too_many_unacknowledged_events_when_connected(policy: OverflowPolicy) -> None:
    client = Client(config(max_pending=1, overflow_policy=policy))
    client.live()
    assert client.push("todos", ev(1)) is PushResult.SENT
    assert client.push("todos", ev(2)) is PushResult.FAILED
    reason = "too many events are waiting for an ack"
    assert client.out() == [
        PushEvent(repository="todos", event=ev(1)),
        PushFailed(repository="todos", event_ids=("e2",), reason=reason),
    ]


def test_push_arguments_are_checked() -> None:
    client = Client()
    with pytest.raises(LocalProtocolError, match="repository name"):
        client.push("", ev(1))
    with pytest.raises(LocalProtocolError, match="SyncEvent"):
        client.push("todos", {"_event_id": "e1"})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("repository", "event", "complaint"),
    [
        ("to\x00dos", ev(1), "a repository name must not contain NUL characters"),
        ("todos\udc80", ev(1), "a repository name must not contain lone surrogates"),
        ("todos", ev("1\x00"), "an event id must not contain NUL characters"),
        ("todos", ev("\ud800"), "an event id must not contain lone surrogates"),
        ("todos", ev(1, data_id="\x00"), "a document id must not contain NUL characters"),
        ("todos", ev(1, data_id="d\udfff"), "a document id must not contain lone surrogates"),
        ("todos", ev(1, data_id=""), "a document id must be a non-empty string"),
        ("todos", dataclasses.replace(ev(1), event_id=""), "an event id must be a non-empty"),
        ("todos", dataclasses.replace(ev(1), event_id=7), "an event id must be a non-empty"),
    ],
)
def test_names_no_store_could_keep_are_refused_at_push(
    repository: str, event: SyncEvent, complaint: str
) -> None:
    """They would fail on every resend: PostgreSQL refuses NUL, SQLite lone surrogates."""
    client = Client()
    client.live()
    with pytest.raises(LocalProtocolError, match=complaint):
        client.push(repository, event)
    assert client.out() == []
    assert client.session.pending_count == 0


def test_a_non_ascii_name_is_fine() -> None:
    client = Client()
    client.live()
    assert client.push("tâches", ev("é", data_id="café")) is PushResult.SENT
    assert client.out() == [PushEvent(repository="tâches", event=ev("é", data_id="café"))]


# --- message size ------------------------------------------------------------------------


def big(name: str | int, size: int) -> SyncEvent:
    """An event of about ``size`` bytes of data."""
    return dataclasses.replace(ev(name), data={"id": "doc", "blob": "x" * size})


def text_size(message: Message) -> int:
    return len(encode_message(message).encode())


TOO_BIG = "event larger than the server's message limit"


def test_a_live_push_too_big_for_the_server_fails_at_once() -> None:
    client = Client(config(max_message_size=1000))
    client.live()
    assert client.push("todos", big(1, 800)) is PushResult.SENT
    assert client.push("todos", big(2, 1000)) is PushResult.FAILED
    assert client.out() == [
        PushEvent(repository="todos", event=big(1, 800)),
        PushFailed(repository="todos", event_ids=("e2",), reason=TOO_BIG),
    ]
    assert client.session.pending_count == 1


def test_the_queue_is_flushed_in_batches_that_fit_the_server_limit() -> None:
    limit = 1000
    client = Client(config(max_message_size=limit, max_batch_size=4))
    events = [big(n, 300) for n in range(7)]
    for event in events:
        client.push("todos", event)
    sent = [m for m in client.authenticated() if isinstance(m, PushEventsBatch)]
    assert all(text_size(batch) <= limit for batch in sent)
    # In order, none lost; a batch of 4 is cut by size, the rest of 3 too.
    assert [e for batch in sent for e in batch.events] == events
    assert [len(batch.events) for batch in sent] == [2, 2, 1, 2]
    assert client.session.pending_count == 7


def test_an_event_too_big_for_any_message_is_given_up_when_flushed() -> None:
    limit = 1000
    client = Client(config(max_message_size=limit))
    for event in (big(1, 100), big(2, 2000), big(3, 100)):
        client.push("todos", event)
    client.push("notes", big(4, 5000))
    assert client.authenticated()[-4:] == [
        PushEventsBatch(repository="todos", events=(big(1, 100),)),
        PushEventsBatch(repository="todos", events=(big(3, 100),)),
        PushFailed(repository="todos", event_ids=("e2",), reason=TOO_BIG),
        PushFailed(repository="notes", event_ids=("e4",), reason=TOO_BIG),
    ]
    assert client.session.pending_count == 2  # the others are forgotten: never sent again
    client.lose()
    client.reconnect()
    assert client.receive(AuthSuccess())[-1] == PushEventsBatch(
        repository="todos", events=(big(1, 100), big(3, 100))
    )


def test_an_event_that_fits_only_as_push_event_goes_out_as_one() -> None:
    event = big(1, 500)
    limit = text_size(PushEvent(repository="todos", event=event))
    assert text_size(PushEventsBatch(repository="todos", events=(event,))) > limit
    client = Client(config(max_message_size=limit))
    client.push("todos", event)
    assert client.authenticated()[-1] == PushEvent(repository="todos", event=event)
    assert client.session.pending_count == 1


# --- remote events and cursors ---------------------------------------------------------


def test_catch_up_applied_after_sync_complete() -> None:
    client = Client(cursors={"todos": 4})
    assert client.authenticated()[-1] == RequestEvents(repository="todos", after_sequence=4)
    events = (ev(5, 5), ev(6, 6))
    assert client.receive(Events(repository="todos", events=events)) == [
        ApplyEvents(batch_id=1, repository="todos", events=events)
    ]
    assert client.receive(SyncComplete(repository="todos")) == [changed(S.LIVE, "caught up")]
    assert client.session.cursors == {"todos": 4}  # not applied yet
    assert client.applied(1) == [
        EventsReceived(repository="todos", count=2),
        SyncCompleted(repository="todos", events=events, cursor=6),
    ]
    assert client.session.cursors == {"todos": 6}


def test_catch_up_applied_before_sync_complete() -> None:
    client = Client(cursors={"todos": 4})
    client.authenticated()
    events = (ev(5, 5), ev(6, 6))
    client.receive(Events(repository="todos", events=events))
    # Until sync_complete, nothing proves the batch has no gap below it.
    assert client.applied(1) == [
        EventsReceived(repository="todos", count=2),
        SyncCompleted(repository="todos", events=events, cursor=4),
    ]
    assert client.receive(SyncComplete(repository="todos")) == [
        SyncCompleted(repository="todos", events=(), cursor=6),
        changed(S.LIVE, "caught up"),
    ]


def test_a_live_event_before_the_catch_up_answer_does_not_skip_the_gap() -> None:
    client = Client(cursors={"todos": 4})
    client.authenticated()
    live = (ev(10, 10),)
    client.receive(Events(repository="todos", events=live))  # a broadcast, early
    assert client.applied(1)[-1] == SyncCompleted(repository="todos", events=live, cursor=4)
    client.lose()  # before the answer with 5..9
    assert client.session.cursors == {"todos": 4}
    client.reconnect()
    assert client.receive(AuthSuccess())[-1] == RequestEvents(repository="todos", after_sequence=4)


def test_catch_up_spread_over_several_batches() -> None:
    client = Client(cursors={"todos": 4})
    client.authenticated()
    client.receive(
        Events(repository="todos", events=(ev(5, 5),)),
        Events(repository="todos", events=(ev(7, 7),)),
        Events(repository="todos", events=(ev(6, 6), ev("x"))),  # interleaved, no sequence
        SyncComplete(),
    )
    assert client.applied(1)[-1] == SyncCompleted(repository="todos", events=(ev(5, 5),), cursor=4)
    assert client.applied(2)[-1] == SyncCompleted(repository="todos", events=(ev(7, 7),), cursor=4)
    assert client.applied(3)[-1] == SyncCompleted(
        repository="todos", events=(ev(6, 6), ev("x")), cursor=7
    )


def test_live_events_move_the_cursor_forward_only() -> None:
    client = Client(cursors={"todos": 4})
    client.live()
    client.receive(Events(repository="todos", events=(ev(9, 9),)))
    assert client.applied(1)[-1] == SyncCompleted(repository="todos", events=(ev(9, 9),), cursor=9)
    client.receive(Events(repository="todos", events=(ev(3, 3),)))
    assert client.applied(2)[-1] == SyncCompleted(repository="todos", events=(ev(3, 3),), cursor=9)
    client.receive(Events(repository="todos", events=(ev("x"),)))
    assert client.applied(3)[-1] == SyncCompleted(repository="todos", events=(ev("x"),), cursor=9)
    assert client.session.cursors == {"todos": 9}


def test_events_of_a_repository_not_caught_up_do_not_move_its_cursor() -> None:
    client = Client()
    client.live()
    events = (ev(50, 50),)
    client.receive(Events(repository="notes", events=events))
    assert client.applied(1) == [
        EventsReceived(repository="notes", count=1),
        SyncCompleted(repository="notes", events=events, cursor=None),
    ]
    client.lose()
    client.reconnect()
    # notes is known now, from its first event on.
    assert client.receive(AuthSuccess())[1:] == [
        RequestAllEvents(repository="todos"),
        RequestAllEvents(repository="notes"),
    ]


def test_request_all_events_catches_up_every_repository() -> None:
    client = Client(config(repositories=()))
    client.authenticated()
    a, b = (ev(1, 1), ev(2, 2)), (ev(3, 1),)
    client.receive(Events(repository="a", events=a), Events(repository="b", events=b))
    client.applied(1)
    assert client.receive(SyncComplete()) == [
        SyncCompleted(repository="a", events=(), cursor=2),
        changed(S.LIVE, "caught up"),
    ]
    assert client.applied(2)[-1] == SyncCompleted(repository="b", events=b, cursor=1)
    # Every repository is caught up now, even one never seen.
    client.receive(Events(repository="c", events=(ev(4, 1),)))
    assert client.applied(3)[-1] == SyncCompleted(repository="c", events=(ev(4, 1),), cursor=1)
    assert client.session.cursors == {"a": 2, "b": 1, "c": 1}


def test_empty_events_are_ignored() -> None:
    client = Client()
    client.live()
    assert client.receive(Events(repository="todos", events=())) == []


def test_applies_after_the_connection_dropped_send_nothing() -> None:
    client = Client()
    client.live()
    events = (ev(8, 8),)
    client.receive(Events(repository="todos", events=events))
    client.lose()
    assert client.applied(1) == [SyncCompleted(repository="todos", events=events, cursor=8)]
    client.reconnect()
    client.receive(AuthSuccess())
    client.receive(Events(repository="todos", events=(ev(9, 9),)))
    client.lose()
    client.reconnect()
    assert client.applied(2) == [SyncCompleted(repository="todos", events=(ev(9, 9),), cursor=8)]


def test_batches_are_reported_applied_in_order() -> None:
    client = Client()
    client.live()
    client.receive(
        Events(repository="todos", events=(ev(1, 1),)),
        Events(repository="todos", events=(ev(2, 2),)),
    )
    with pytest.raises(LocalProtocolError, match="batch 1 comes first"):
        client.applied(2)
    client.applied(1)
    client.applied(2)
    with pytest.raises(LocalProtocolError, match="none is outstanding"):
        client.applied(3)


# --- batches the store failed to apply --------------------------------------------------


def test_failures_are_reported_in_order_too() -> None:
    client = Client()
    client.live()
    client.receive(
        Events(repository="todos", events=(ev(1, 1),)),
        Events(repository="todos", events=(ev(2, 2),)),
    )
    with pytest.raises(LocalProtocolError, match="batch 2 reported failed, batch 1 comes first"):
        client.failed(2)
    assert client.session.state is S.LIVE
    client.failed(1)
    client.applied(2)
    with pytest.raises(LocalProtocolError, match="batch 2 reported failed, none is outstanding"):
        client.failed(2)


def test_a_failed_batch_gives_the_connection_up_and_is_fetched_again() -> None:
    client = Client(cursors={"todos": 4})
    client.live()
    events = (ev(5, 5), ev(6, 6))
    client.receive(Events(repository="todos", events=events))
    client.now = 2.0
    reason = "local store failed: disk full"
    # Neither events_received nor SyncCompleted: the events are not applied.
    assert client.failed(1) == [
        CloseConnection(code=1011, reason="local store failed"),
        changed(S.WAITING_TO_RECONNECT, reason),
        ReconnectScheduled(at=3.5, delay=1.5, attempt=1),
    ]
    assert client.session.cursors == {"todos": 4}
    assert client.session.health(2.0).reason == reason
    client.reconnect()
    assert client.receive(AuthSuccess())[-1] == RequestEvents(repository="todos", after_sequence=4)
    client.receive(Events(repository="todos", events=events), SyncComplete())
    assert client.applied(2) == [
        EventsReceived(repository="todos", count=2),
        SyncCompleted(repository="todos", events=events, cursor=6),
    ]


def test_batches_outstanding_at_a_failure_do_not_move_the_cursor() -> None:
    client = Client(config(repositories=("todos", "notes")), cursors={"todos": 4})
    client.authenticated()
    client.receive(
        Events(repository="todos", events=(ev(5, 5),)),
        Events(repository="todos", events=(ev(8, 8),)),
        Events(repository="todos", events=(ev(9, 9),)),  # will carry the catch-up's commit
        Events(repository="notes", events=(ev("n", 1),)),
        SyncComplete(repository="todos"),
        SyncComplete(repository="notes"),
        Events(repository="todos", events=(ev(10, 10),)),  # live
        Events(repository="notes", events=(ev("m", 2),)),
    )
    client.applied(1)
    client.failed(2)
    # Still applied (merging is idempotent), but the cursor stays where it
    # was at the failure, not just below the failed event.
    assert client.applied(3) == [SyncCompleted(repository="todos", events=(ev(9, 9),), cursor=4)]
    assert client.applied(4) == [SyncCompleted(repository="notes", events=(ev("n", 1),), cursor=1)]
    assert client.applied(5) == [SyncCompleted(repository="todos", events=(ev(10, 10),), cursor=4)]
    assert client.applied(6) == [SyncCompleted(repository="notes", events=(ev("m", 2),), cursor=2)]
    client.reconnect()
    assert client.receive(AuthSuccess())[-2] == RequestEvents(repository="todos", after_sequence=4)


AGAIN = (ev(5, 5), ev(6, 6))


def fail_a_batch_of_an_old_connection() -> Client:
    """Batch 1 came on a lost connection; batch 2 brings it again, then batch 1 fails."""
    client = Client(cursors={"todos": 4})
    client.live()
    client.receive(Events(repository="todos", events=(ev(5, 5),)))
    client.lose()
    client.reconnect()
    assert client.receive(AuthSuccess())[-1] == RequestEvents(repository="todos", after_sequence=4)
    client.receive(Events(repository="todos", events=AGAIN))  # the catch-up's first batch
    assert client.failed(1) == []
    assert client.session.state is S.SYNCING
    return client


def test_a_failed_batch_of_an_old_connection_keeps_the_current_one() -> None:
    client = fail_a_batch_of_an_old_connection()
    client.receive(Events(repository="todos", events=(ev(7, 7),)), SyncComplete())
    # Outstanding at the failure: confirmed to the server, the cursor unchanged.
    assert client.applied(2) == [
        EventsReceived(repository="todos", count=2),
        SyncCompleted(repository="todos", events=AGAIN, cursor=4),
    ]
    # Received after it: the catch-up's commit holds (batch 2 brought 5 again).
    assert client.applied(3)[-1] == SyncCompleted(repository="todos", events=(ev(7, 7),), cursor=7)


@pytest.mark.parametrize("applied_first", [True, False])
def test_a_catch_up_outstanding_at_a_failure_commits_nothing(applied_first: bool) -> None:
    client = fail_a_batch_of_an_old_connection()
    if applied_first:
        client.applied(2)
    assert client.receive(SyncComplete()) == [changed(S.LIVE, "caught up")]
    if not applied_first:
        client.applied(2)
    assert client.session.cursors == {"todos": 4}


def test_the_cursor_stays_below_failed_events_until_they_are_applied() -> None:
    client = Client(cursors={"todos": 4})
    client.live()
    client.receive(Events(repository="todos", events=(ev(5, 5), ev(6, 6), ev(3, 3))))
    client.lose()
    client.reconnect()
    client.receive(AuthSuccess(), SyncComplete())  # a server that sends nothing again
    client.failed(1)
    assert client.session.state is S.LIVE
    steps = [
        (ev(8, 8), 4),  # 5 and 6 are missing
        (ev(5, 5), 5),
        (ev(6, 6), 6),
        (ev(9, 9), 9),  # 3 was below the cursor at the failure: never missing
    ]
    for batch_id, (event, cursor) in enumerate(steps, start=2):
        client.receive(Events(repository="todos", events=(event,)))
        assert client.applied(batch_id)[-1] == SyncCompleted(
            repository="todos", events=(event,), cursor=cursor
        )


def test_a_repository_is_asked_for_once_a_batch_of_it_failed() -> None:
    client = Client()
    client.live()
    client.receive(Events(repository="notes", events=(ev("x"),)))
    client.failed(1)
    client.reconnect()
    assert client.receive(AuthSuccess())[1:] == [
        RequestAllEvents(repository="todos"),
        RequestAllEvents(repository="notes"),
    ]


# --- custom sync filters ------------------------------------------------------------


def test_custom_sync_filters() -> None:
    client = Client(
        config(repositories=("todos", "notes", "tags"), custom_sync_filter=True),
        cursors={"todos": 3, "notes": 8},
    )
    client.push("todos", ev(1))
    assert client.authenticated()[-1] == SyncFiltersNeeded(repositories=("todos", "notes", "tags"))
    assert client.push("todos", ev(2)) is PushResult.QUEUED  # behind e1, in order
    assert client.receive(SyncComplete()) == [
        ProtocolErrorReported(reason="sync_complete without a request, ignored")
    ]
    client.session.sync_filters_built(
        {"todos": {"since": "2026-01-01"}, "notes": {}, "tags": None, "other": {"x": 1}},
        client.now,
    )
    assert client.out() == [
        RequestEvents(repository="todos", after_sequence=3, filter={"since": "2026-01-01"}),
        RequestEvents(repository="notes", after_sequence=8),
        RequestAllEvents(repository="tags"),
        PushEventsBatch(repository="todos", events=(ev(1), ev(2))),
    ]
    client.session.sync_filters_built({"todos": {"x": 2}}, client.now)  # answered already
    assert client.out() == []
    assert client.receive(SyncComplete(), SyncComplete(), SyncComplete()) == [
        changed(S.LIVE, "caught up")
    ]


def test_custom_filter_may_set_after_sequence() -> None:
    client = Client(config(custom_sync_filter=True), cursors={"todos": 3})
    client.authenticated()
    client.session.sync_filters_built({"todos": {"afterSequence": 0, "room": "a"}}, client.now)
    assert client.out() == [
        RequestEvents(repository="todos", after_sequence=0, filter={"room": "a"})
    ]


def test_custom_filter_without_cursor() -> None:
    client = Client(config(custom_sync_filter=True))
    client.authenticated()
    client.session.sync_filters_built({"todos": {"room": "a"}}, client.now)
    assert client.out() == [RequestEvents(repository="todos", filter={"room": "a"})]


def test_custom_filter_with_no_known_repository_requests_all() -> None:
    client = Client(config(repositories=(), custom_sync_filter=True))
    assert client.authenticated()[-1] == RequestAllEvents()


def test_push_while_waiting_for_filters_with_nothing_queued_is_sent() -> None:
    client = Client(config(custom_sync_filter=True))
    client.authenticated()
    assert client.push("todos", ev(1)) is PushResult.SENT
    assert client.out() == [PushEvent(repository="todos", event=ev(1))]


def test_filters_for_a_lost_connection_are_ignored() -> None:
    client = Client(config(custom_sync_filter=True))
    client.authenticated()
    client.lose()
    client.session.sync_filters_built({"todos": None}, client.now)
    assert client.out() == []


@pytest.mark.parametrize(
    ("filters", "complaint"),
    [
        ([("todos", None)], "mapping of repository"),
        ({"todos": "since=1"}, "mapping or None"),
        ({"todos": {"type": "x"}}, "cannot be a sync filter field"),
        ({"todos": {"repository": "x"}}, "cannot be a sync filter field"),
        ({"todos": {1: "x"}}, "cannot be a sync filter field"),
        ({"todos": {"limit": 10}}, "limit"),
        ({"todos": {"afterSequence": -1}}, "afterSequence"),
        ({"todos": {"afterSequence": "1"}}, "afterSequence"),
        ({"todos": {"afterSequence": True}}, "afterSequence"),
    ],
)
def test_filters_are_checked(filters: Any, complaint: str) -> None:
    client = Client(config(custom_sync_filter=True))
    client.authenticated()
    with pytest.raises(LocalProtocolError, match=complaint):
        client.session.sync_filters_built(filters, client.now)


# --- late news and close ----------------------------------------------------------------


@pytest.mark.parametrize("state", [S.WAITING_TO_RECONNECT, S.NEEDS_CREDENTIALS, S.CLOSED])
def test_late_news_of_a_connection_given_up_is_ignored(state: ConnectionState) -> None:
    client = reach(state)
    deadline = client.session.next_deadline()
    client.session.connection_made(1.0)
    client.session.connection_failed(1.0, "x")
    client.session.connection_lost(1.0, "x", 1000)
    client.session.receive_text(encode_message(Events(repository="todos", events=(ev(1, 1),))), 1.0)
    client.session.receive_message(AuthSuccess(), 1.0)
    client.session.sync_filters_built({}, 1.0)
    assert client.out() == []
    assert client.session.state is state
    assert client.session.next_deadline() == deadline


def test_close_when_live() -> None:
    client = Client()
    client.live()
    client.session.close(1.0)
    assert client.out() == [
        CloseConnection(code=1000, reason="client closed"),
        changed(S.CLOSED, "client closed"),
    ]
    assert client.session.next_deadline() is None
    client.session.close(2.0)
    assert client.out() == []
    client.at(1000.0)
    assert client.out() == []


@pytest.mark.parametrize("state", [S.IDLE, S.WAITING_TO_RECONNECT, S.NEEDS_CREDENTIALS])
def test_close_without_a_connection(state: ConnectionState) -> None:
    client = reach(state)
    client.session.close(1.0)
    assert client.out() == [changed(S.CLOSED, "client closed")]
    assert client.session.next_deadline() is None


def test_close_keeps_pending_events_or_reports_them() -> None:
    client = Client()
    client.live()
    client.push("todos", ev(1))
    client.session.close(1.0)
    assert client.session.pending_count == 1
    client = Client(config(enable_pending_queue=False))
    client.live()
    client.push("todos", ev(1))
    client.out()
    client.session.close(1.0)
    assert client.out()[1] == PushFailed(
        repository="todos", event_ids=("e1",), reason="connection lost before the ack"
    )


def test_misuse_after_close() -> None:
    client = reach(S.CLOSED)
    for call in (
        lambda: client.start(),
        lambda: client.push("todos", ev(1)),
        lambda: client.credentials("t2"),
    ):
        with pytest.raises(LocalProtocolError, match="not allowed in state closed"):
            call()


def test_applies_after_close_are_ignored() -> None:
    client = Client()
    client.live()
    client.receive(Events(repository="todos", events=(ev(1, 1),)))
    client.session.close(1.0)
    client.out()
    client.session.events_applied(1, 2.0)
    client.session.events_applied(99, 2.0)
    client.session.events_apply_failed(1, "disk full", 2.0)
    assert client.out() == []


# --- health ----------------------------------------------------------------------


def test_health_snapshot() -> None:
    client = Client(cursors={"todos": 3})
    client.now = 2.0
    client.push("todos", ev(1))
    assert client.session.health(5.0) == ClientHealth(
        state=S.IDLE,
        reason="",
        connected=False,
        next_retry_at=None,
        reconnect_attempt=0,
        pending=1,
        oldest_pending_age=3.0,
        cursors={"todos": 3},
        outstanding_applies=0,
    )
    client.start()
    client.lose("refused")
    health = client.session.health(2.0)
    assert (health.state, health.reason) == (S.WAITING_TO_RECONNECT, "connection lost: refused")
    assert (health.next_retry_at, health.reconnect_attempt) == (3.5, 1)
    client.reconnect()
    client.receive(AuthSuccess(), SyncComplete())
    client.now = 4.0
    client.push("todos", ev(2))
    client.receive(Events(repository="todos", events=(ev(4, 4),)))
    health = client.session.health(10.0)
    assert health.connected and health.state is S.LIVE
    assert (health.pending, health.oldest_pending_age, health.outstanding_applies) == (2, 8.0, 1)
    assert health.next_retry_at is None
    client.receive(Ack(event_ids=("e1", "e2")))
    assert client.session.health(10.0).oldest_pending_age is None


def test_cursors_are_a_read_only_copy() -> None:
    client = Client(cursors={"todos": 3})
    cursors = client.session.cursors
    with pytest.raises(TypeError):
        cursors["todos"] = 5  # type: ignore[index]
    assert client.session.health(0.0).cursors == {"todos": 3}


# --- a cursor proved by a catch-up that brought nothing new ------------------------------


def test_a_catch_up_below_the_cursor_changes_nothing() -> None:
    client = Client(cursors={"todos": 4})
    client.authenticated()
    client.receive(Events(repository="todos", events=(ev(2, 2),)))
    client.applied(1)
    assert client.receive(SyncComplete()) == [changed(S.LIVE, "caught up")]
    assert client.session.cursors == {"todos": 4}


# --- arbitrary interleavings ----------------------------------------------------------

REPOSITORIES = ("todos", "notes")
POOL = tuple(ev(n, data_id=f"d{n % 3}") for n in range(6))

server_noise = st.one_of(
    server_messages,
    client_messages,
    st.builds(
        Events,
        repository=st.sampled_from(REPOSITORIES),
        events=st.lists(
            st.builds(lambda e, n: e.with_sequence(n), st.sampled_from(POOL), st.integers(1, 30)),
            max_size=3,
        ).map(tuple),
    ),
    st.builds(
        Ack,
        event_ids=st.lists(st.sampled_from([e.event_id for e in POOL]), max_size=3).map(tuple),
        repositories=st.dictionaries(
            st.sampled_from(REPOSITORIES),
            st.lists(st.sampled_from([e.event_id for e in POOL]), max_size=2).map(tuple),
            max_size=2,
        ),
    ),
    st.builds(SyncComplete, repository=st.none() | st.sampled_from(REPOSITORIES)),
    st.just(AuthSuccess()),
    st.sampled_from(
        [Error(message="Failed to fetch events: down"), Error(message="Failed to push event: x")]
    ),
    st.builds(
        Error,
        message=st.just("Failed to push events batch: refused"),
        event_ids=st.lists(st.sampled_from([e.event_id for e in POOL]), max_size=3).map(tuple),
        code=st.sampled_from(["forbidden", "invalid", "unavailable", "new"]),
    ),
)
filters = st.dictionaries(
    st.sampled_from(REPOSITORIES),
    st.none()
    | st.fixed_dictionaries({}, optional={"afterSequence": st.integers(0, 30), "room": st.text()}),
)
configs = st.builds(
    config,
    repositories=st.sampled_from([(), ("todos",), REPOSITORIES]),
    enable_pending_queue=st.booleans(),
    max_pending=st.integers(1, 4),
    overflow_policy=st.sampled_from(OverflowPolicy),
    max_batch_size=st.integers(1, 3),
    # About one POOL event per push_events_batch, some drawn events fit none.
    max_message_size=st.sampled_from([1 << 20, 600, 300]),
    max_auth_failures=st.integers(1, 3),
    custom_sync_filter=st.booleans(),
    reconnect_delay=st.just(0.5),
    max_reconnect_delay=st.just(4.0),
    stable_after=st.just(4.0),
    heartbeat_interval=st.just(5.0),
    pong_timeout=st.sampled_from([2.0, 7.0]),
    connect_timeout=st.just(3.0),
    auth_timeout=st.just(3.0),
)


LIVE_STEPS = ("push", "events", "ack", "apply", "fail", "sync_complete")


class ClientMachine(RuleBasedStateMachine):
    """Any interleaving of inputs: only misuse raises, and the books balance."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.pending: set[str] = set()
        self.batches: list[ApplyEvents] = []
        # Per repository: sequences above the cursor whose batch failed, until
        # a batch carrying them is applied.
        self.missing: dict[str, set[int]] = {}
        # Batches outstanding when a batch of their repository failed.
        self.frozen: set[int] = set()
        self.cursors: dict[str, int] = {}
        self.awaiting_filters = False
        self.sequence = 0

    @initialize(cfg=configs, rng=st.randoms(use_true_random=False))
    def setup(self, cfg: ClientConfig, rng: Any) -> None:
        self.config = cfg
        self.session = ClientSession(cfg, random=rng.random, cursors={"notes": 3})
        self.cursors = dict(self.session.cursors)

    def follow(self, event: ClientInput, call: Callable[[], object]) -> object:
        """Call; it must raise LocalProtocolError exactly when the table forbids it."""
        allowed = (self.session.state, event) in TRANSITIONS
        try:
            result = call()
        except LocalProtocolError:
            assert not allowed, f"{event} refused in {self.session.state}"
            return None
        assert allowed, f"{event} accepted in {self.session.state}"
        return result

    def drain(self) -> None:
        last_state = None
        for action in self.session.drain_actions():
            match action:
                case SendMessage(text=text):
                    assert isinstance(decode_message(text), get_args(ClientMessage))
                case ApplyEvents():
                    self.batches.append(action)
                case MarkSynced(repositories=synced):
                    for ids in synced.values():
                        assert self.pending.issuperset(ids)
                        self.pending.difference_update(ids)
                case PushFailed(event_ids=ids):
                    self.pending.difference_update(ids)
                case PushRejected(event_ids=ids):
                    assert self.pending.issuperset(ids)
                    self.pending.difference_update(ids)
                case ReconnectScheduled(at=at, delay=delay):
                    assert 0.0 <= delay <= self.config.max_reconnect_delay
                    assert at == self.now + delay
                case ConnectionStateChanged(state=state):
                    last_state = state
                    self.awaiting_filters = False
                case SyncFiltersNeeded():
                    self.awaiting_filters = True
                case _:
                    pass
        if last_state is not None:
            assert last_state is self.session.state

    @rule()
    def start(self) -> None:
        self.follow(I.START, lambda: self.session.start(self.now))
        self.drain()

    @rule()
    def connection_made(self) -> None:
        self.follow(I.CONNECTION_MADE, lambda: self.session.connection_made(self.now))
        self.drain()

    @rule()
    def connection_failed(self) -> None:
        self.follow(I.CONNECTION_FAILED, lambda: self.session.connection_failed(self.now, "x"))
        self.drain()

    @rule(code=st.sampled_from([None, 1000, 1006, 1008]))
    def connection_lost(self, code: int | None) -> None:
        self.follow(I.CONNECTION_LOST, lambda: self.session.connection_lost(self.now, "x", code))
        self.drain()

    @rule(message=server_noise)
    def receive(self, message: Message) -> None:
        text = encode_message(message)
        self.follow(I.MESSAGE_RECEIVED, lambda: self.session.receive_text(text, self.now))
        self.drain()

    @rule(text=st.sampled_from(["", "{", "null", '{"type":"ack"}', '{"type":"x"}']))
    def receive_garbage(self, text: str) -> None:
        self.follow(I.MESSAGE_RECEIVED, lambda: self.session.receive_text(text, self.now))
        self.drain()

    @rule(repository=st.sampled_from(REPOSITORIES), event=st.sampled_from(POOL) | sync_events)
    def push(self, repository: str, event: SyncEvent) -> None:
        self.follow(I.PUSH, lambda: self.record(repository, event, self.session.push))
        self.drain()

    def live_step(self, step: str, data: st.DataObject) -> None:
        session, now = self.session, self.now
        repository = data.draw(st.sampled_from(REPOSITORIES))
        match step:
            case "push":
                self.record(repository, ev(data.draw(names)), session.push)
            case "events":
                self.sequence += data.draw(st.integers(-2, 3))
                event = ev(data.draw(names), max(1, self.sequence))
                session.receive_message(Events(repository=repository, events=(event,)), now)
            case "ack":
                ids = data.draw(st.lists(st.sampled_from(sorted(self.pending) or ["x"])))
                session.receive_message(Ack(event_ids=tuple(ids)), now)
            case "apply" | "fail" if self.batches:
                self.report(failed=step == "fail")
            case _:
                session.receive_message(SyncComplete(), now)

    def record(
        self, repository: str, event: SyncEvent, push: Callable[[str, SyncEvent, float], PushResult]
    ) -> None:
        if push(repository, event, self.now) is not PushResult.FAILED:
            self.pending.add(event.event_id)

    def report(self, *, failed: bool) -> None:
        """Report the oldest batch applied, or failed."""
        batch = self.batches.pop(0)
        repository = batch.repository
        sequences = {e.server_sequence for e in batch.events if e.server_sequence is not None}
        missing = self.missing.setdefault(repository, set())
        cursor = self.session.cursors.get(repository)
        if failed:
            missing.update(s for s in sequences if cursor is None or s > cursor)
            self.frozen.update(b.batch_id for b in self.batches if b.repository == repository)
        else:
            missing.difference_update(sequences)
        self.call_report(batch.batch_id, failed=failed)
        if batch.batch_id in self.frozen:
            assert self.session.cursors.get(repository) == cursor

    def call_report(self, batch_id: int, *, failed: bool) -> None:
        if failed:
            self.session.events_apply_failed(batch_id, "disk full", self.now)
        else:
            self.session.events_applied(batch_id, self.now)

    @rule(in_order=st.booleans(), dice=st.integers(0, 3))
    def events_applied(self, in_order: bool, dice: int) -> None:
        failed = dice == 0  # sometimes the store fails
        if self.session.state is S.CLOSED:
            self.call_report(10_000, failed=failed)  # ignored
        elif in_order and self.batches:
            self.report(failed=failed)
        else:
            with pytest.raises(LocalProtocolError):
                self.call_report(10_000, failed=failed)
        self.drain()

    @rule(answer=filters)
    def sync_filters_built(self, answer: dict[str, Any]) -> None:
        self.follow(I.SYNC_FILTERS_BUILT, lambda: self.session.sync_filters_built(answer, self.now))
        self.drain()

    @rule(token=st.none() | st.sampled_from(["t2", "t3"]))
    def update_credentials(self, token: str | None) -> None:
        self.follow(
            I.CREDENTIALS_UPDATED,
            lambda: self.session.update_credentials(token=token, headers={}, now=self.now),
        )
        self.drain()

    @rule(dice=st.integers(0, 19))
    def close(self, dice: int) -> None:
        if dice == 0:  # rarely: a closed session only refuses and ignores
            self.follow(I.CLOSE, lambda: self.session.close(self.now))
            self.drain()

    @rule(data=st.data())
    def progress(self, data: st.DataObject) -> None:
        """The next step of a good day: the likely input for the state."""
        session, now = self.session, self.now
        match session.state:
            case S.IDLE:
                session.start(now)
            case S.CONNECTING:
                session.connection_made(now)
            case S.AUTHENTICATING:
                session.receive_message(AuthSuccess(), now)
            case S.SYNCING if self.awaiting_filters:
                session.sync_filters_built(data.draw(filters), now)
            case S.SYNCING | S.LIVE:
                self.live_step(data.draw(st.sampled_from(LIVE_STEPS)), data)
            case S.NEEDS_CREDENTIALS:
                session.update_credentials(token="t4", headers={}, now=now)
            case _:
                self.now = max(now, session.next_deadline() or now)
                session.handle_timer(self.now)
        self.drain()

    @rule(data=st.data(), steps=st.integers(2, 12))
    def a_good_stretch(self, data: st.DataObject, steps: int) -> None:
        """Several good steps in a row: long enough to go live and apply (or fail)."""
        for _ in range(steps):
            self.progress(data)

    @rule(seconds=st.floats(0.0, 10.0))
    def wait(self, seconds: float) -> None:
        self.now += seconds
        self.session.handle_timer(self.now)
        self.drain()
        self.nothing_left_due()

    @rule()
    def wait_for_the_deadline(self) -> None:
        deadline = self.session.next_deadline()
        if deadline is not None:
            self.now = max(self.now, deadline)
        self.session.handle_timer(self.now)
        self.drain()
        self.nothing_left_due()

    def nothing_left_due(self) -> None:
        deadline = self.session.next_deadline()
        assert deadline is None or deadline > self.now

    @invariant()
    def books_balance(self) -> None:
        session = self.session
        assert isinstance(session.state, ConnectionState)
        assert session.pending_count <= self.config.max_pending
        assert session.pending_count == len(self.pending)
        health = session.health(self.now)
        assert health.pending == session.pending_count
        assert health.outstanding_applies == len(self.batches)
        assert health.connected is session.state.connected
        deadline = session.next_deadline()
        assert deadline is None or deadline >= self.now  # never in the past
        if session.state is S.CLOSED:
            assert deadline is None

    @invariant()
    def no_cursor_passes_a_failed_event(self) -> None:
        cursors = self.session.cursors
        for repository, missing in self.missing.items():
            if missing and repository in cursors:
                assert cursors[repository] < min(missing)

    @invariant()
    def cursors_never_go_back(self) -> None:
        cursors = dict(self.session.cursors)
        for repository, cursor in self.cursors.items():
            assert cursors[repository] >= cursor
        self.cursors = cursors


ClientMachine.TestCase.settings = settings(max_examples=300, stateful_step_count=80, deadline=None)
test_client_machine = ClientMachine.TestCase


def test_a_token_with_a_lone_surrogate_is_refused_at_once() -> None:
    # Refused when configured, not on every connection when auth is encoded.
    with pytest.raises(LocalProtocolError, match="lone surrogates"):
        config(token="bad\ud800")
