"""Scenario 1: the CPU cost of one push + ack round trip, without sockets.

Three pairs carry the same JSON messages from client to server and back,
every call on one thread, no I/O:

* ``lfws-session``: :class:`~lfws_core.client.ClientSession` and
  :class:`~lfws_core.server.ServerSession` (message level: decode, validate,
  state machines, the store's answer, the ack);
* ``lfws-connection``: :class:`~lfws_core.connection.ClientConnection` and
  :class:`~lfws_core.connection.ServerConnection` (the same plus WebSocket
  framing and masking: what an adapter runs per message);
* ``websockets-sansio``: the `websockets` sans-IO protocols
  (``ClientProtocol``/``ServerProtocol``) framing the same JSON, which the
  two ends encode and decode, the server storing events as the peer does.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from websockets.client import ClientProtocol
from websockets.frames import Frame
from websockets.server import ServerProtocol
from websockets.uri import parse_uri

from bench.codec import dumps, loads
from bench.fixtures import REPOSITORY, TOKEN, ack_message, event_dicts, push_message, sync_events
from bench.measure import Contender, RatioSpec, Scenario
from bench.peer import MemoryStore
from bench.settings import Settings
from lfws_core.actions import (
    ApplyEvents,
    Authenticate,
    FetchEvents,
    ListRepositories,
    MarkSynced,
    OpenConnection,
    SendBytes,
    SendMessage,
    StoreEvents,
)
from lfws_core.client import ClientConfig, ClientSession
from lfws_core.connection import ClientConnection, ServerConnection
from lfws_core.events import SyncEvent
from lfws_core.server import ServerConfig, ServerSession
from lfws_core.testing import MemoryEventLog
from lfws_core.ws import ServerConfig as WsServerConfig

URL = "ws://127.0.0.1:8080/sync"
NOW = 1.0  # the clock stands still: no timer falls due during a measurement
WARM_UP = 200
CONFIG = ClientConfig(url=URL, token=TOKEN, repositories=(REPOSITORY,), max_pending=1 << 30)
SERVER_CONFIG = ServerConfig(ping_interval=None)


def _answer(session: ServerSession, action: object, log: MemoryEventLog) -> None:
    """Play the server adapter: answer the session's requests from an in-memory log."""
    if isinstance(action, StoreEvents):
        stored, duplicates = log.store(action.repository, action.events)
        session.events_stored(action.request_id, stored, duplicates, NOW)
    elif isinstance(action, Authenticate):
        session.auth_accepted(action.request_id, action.token, NOW)
    elif isinstance(action, FetchEvents):
        events = log.fetch(action.repository, action.after_sequence, action.limit)
        session.events_fetched(action.request_id, events, NOW)
    elif isinstance(action, ListRepositories):
        session.repositories_listed(action.request_id, log.repositories(), NOW)


class SessionPair:
    """lfws at the message level: two sessions passing texts."""

    def __init__(self) -> None:
        self.client = ClientSession(CONFIG, random=lambda: 0.5)
        self.server = ServerSession(SERVER_CONFIG)
        self.log = MemoryEventLog()
        self.acked = 0
        self.client.start(NOW)
        self.client.drain_actions()  # OpenConnection: "connected" at once
        self.client.connection_made(NOW)
        self.server.connection_made(NOW)
        self.settle()

    def push(self, event: SyncEvent) -> None:
        self.client.push(REPOSITORY, event, NOW)
        self.settle()

    def settle(self) -> None:
        client, server = self.client, self.server
        moved = True
        while moved:
            moved = False
            for action in client.drain_actions():
                moved = True
                if type(action) is SendMessage:
                    server.receive_text(action.text, NOW)
                elif type(action) is MarkSynced:
                    self.acked += sum(len(ids) for ids in action.repositories.values())
                elif type(action) is ApplyEvents:
                    client.events_applied(action.batch_id, NOW)
            for request in server.drain_actions():
                moved = True
                if type(request) is SendMessage:
                    client.receive_text(request.text, NOW)
                else:
                    _answer(server, request, self.log)


class ConnectionPair:
    """lfws at the byte level: two connections passing WebSocket bytes."""

    def __init__(self) -> None:
        self.client = ClientConnection(CONFIG, random=lambda: 0.5, random_bytes=os.urandom)
        self.server = ServerConnection(SERVER_CONFIG, WsServerConfig(path="/sync"))
        self.log = MemoryEventLog()
        self.acked = 0
        self.client.session.start(NOW)
        self.server.transport_made(NOW)
        self.settle()

    def push(self, event: SyncEvent) -> None:
        self.client.session.push(REPOSITORY, event, NOW)
        self.settle()

    def settle(self) -> None:
        client, server = self.client, self.server
        moved = True
        while moved:
            moved = False
            for action in client.drain_actions(NOW):
                moved = True
                if type(action) is SendBytes:
                    server.receive_data(action.data, NOW)
                elif type(action) is MarkSynced:
                    self.acked += sum(len(ids) for ids in action.repositories.values())
                elif type(action) is ApplyEvents:
                    client.session.events_applied(action.batch_id, NOW)
                elif type(action) is OpenConnection:
                    client.transport_made(NOW)
            for request in server.drain_actions(NOW):
                moved = True
                if type(request) is SendBytes:
                    client.receive_data(request.data, NOW)
                elif server.session is not None:
                    _answer(server.session, request, self.log)


class WebsocketsPair:
    """The `websockets` sans-IO protocols carrying the same JSON (the peer's logic)."""

    def __init__(self) -> None:
        self.client = ClientProtocol(parse_uri(URL))
        self.server = ServerProtocol()
        self.store = MemoryStore()
        self.acked = 0
        self.client.send_request(self.client.connect())
        self._to_server()
        request = self.server.events_received()[0]
        self.server.send_response(self.server.accept(request))  # type: ignore[arg-type]
        self._to_client()
        self.client.events_received()  # the handshake response

    def _to_server(self) -> None:
        for data in self.client.data_to_send():
            self.server.receive_data(data)

    def _to_client(self) -> None:
        for data in self.server.data_to_send():
            self.client.receive_data(data)

    def push(self, event: dict[str, Any]) -> None:
        self.client.send_text(dumps(push_message(event)))
        self._to_server()
        server = self.server
        for frame in server.events_received():
            assert isinstance(frame, Frame)
            message = loads(bytes(frame.data))
            repository, pushed = message["repository"], message["event"]
            self.store.store(repository, pushed)
            server.send_text(dumps(ack_message(repository, pushed["_event_id"])))
        self._to_client()
        for frame in self.client.events_received():
            assert isinstance(frame, Frame)
            if loads(bytes(frame.data))["type"] == "ack":
                self.acked += 1


def _timed(push: Callable[[Any], None], events: Sequence[Any], acked: Callable[[], int]) -> float:
    """Push ``events`` one by one (after a warm-up); return microseconds per round trip."""
    for event in events[:WARM_UP]:
        push(event)
    measured = events[WARM_UP:]
    before = acked()
    start = time.perf_counter()
    for event in measured:
        push(event)
    elapsed = time.perf_counter() - start
    assert acked() - before == len(measured), "a push was not acknowledged"
    return elapsed / len(measured) * 1e6


def scenario(settings: Settings) -> Scenario:
    count = settings.core_round_trips + WARM_UP

    def sessions() -> float:
        pair = SessionPair()
        return _timed(pair.push, sync_events(count), lambda: pair.acked)

    def connections() -> float:
        pair = ConnectionPair()
        return _timed(pair.push, sync_events(count), lambda: pair.acked)

    def websockets_sansio() -> float:
        pair = WebsocketsPair()
        return _timed(pair.push, event_dicts(count), lambda: pair.acked)

    return Scenario(
        name="core",
        title="Core CPU per push + ack round trip, no sockets",
        unit="us/round trip",
        better="lower",
        params={"round_trips": settings.core_round_trips, "warm_up": WARM_UP},
        contenders=[
            Contender("lfws-session", "lfws ClientSession + ServerSession", sessions),
            Contender("lfws-connection", "lfws ClientConnection + ServerConnection", connections),
            Contender(
                "websockets-sansio", "websockets ClientProtocol + ServerProtocol", websockets_sansio
            ),
        ],
        ratios=[
            RatioSpec("websockets-sansio", "lfws-session", "lfws sessions speedup"),
            RatioSpec("websockets-sansio", "lfws-connection", "lfws connections speedup"),
        ],
        note="Time per round trip; a ratio above 1 means lfws costs less CPU.",
    )
