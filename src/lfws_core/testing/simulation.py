"""The deterministic simulation: clients and a server on a faulty network.

Several :class:`~lfws_core.client.ClientSession` objects and one server (a
:class:`~lfws_core.server.ServerSession` per connection over a
:class:`MemoryEventLog`) exchange messages over a simulated network driven by
a virtual clock. A seed fixes everything: latencies, local edits, clock skew,
and the faults — dropped connections, half-open (silent) links, offline
periods, server restarts and client crashes. When the faults stop, every
replica must converge to the server's log, and along the way:

* every event a client created is stored exactly once;
* an event is acknowledged only once it is stored;
* no cursor skips an event: everything up to a replica's cursor is known to it;
* no client reports a protocol error, a server error or a lost push.

``run_simulation(seed)`` returns a :class:`SimulationReport`; its
``failures`` list is empty when every invariant held.
"""

from __future__ import annotations

import functools
import heapq
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from .. import actions as act
from ..actions import ConnectionState
from ..client import ClientConfig, ClientSession, PushResult
from ..codec import encode_message
from ..events import Operation, SyncEvent
from ..merge import wins
from ..messages import Events
from ..server import ServerConfig, ServerSession
from .memory_log import MemoryEventLog
from .prng import SplitMix64
from .replica import MemoryReplica

__all__ = ["SimulationConfig", "SimulationReport", "run_simulation"]

_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, kw_only=True, slots=True)
class SimulationConfig:
    """The shape of one simulated run (rates are per virtual second)."""

    clients: int = 3
    repositories: tuple[str, ...] = ("todos", "notes")
    documents: int = 4
    duration: float = 60.0
    settle_time: float = 120.0
    edit_rate: float = 0.5
    delete_share: float = 0.2
    latency: tuple[float, float] = (0.001, 0.05)
    max_clock_skew: float = 0.5
    drop_rate: float = 0.02
    drop_after_push: float = 0.05
    stall_rate: float = 0.005
    offline_rate: float = 0.01
    offline_time: tuple[float, float] = (1.0, 15.0)
    server_restart_rate: float = 0.005
    server_down_time: tuple[float, float] = (0.5, 5.0)
    client_restart_rate: float = 0.005
    client: ClientConfig = field(
        default_factory=lambda: ClientConfig(
            url="ws://sim.invalid/sync",
            reconnect_delay=0.5,
            max_reconnect_delay=5.0,
            stable_after=5.0,
            heartbeat_interval=5.0,
            pong_timeout=2.0,
            connect_timeout=2.0,
            auth_timeout=2.0,
            max_batch_size=20,
        )
    )
    server: ServerConfig = field(
        default_factory=lambda: ServerConfig(
            page_size=25, ping_interval=7.0, ping_timeout=3.0, auth_timeout=3.0
        )
    )


@dataclass(kw_only=True, slots=True)
class SimulationReport:
    """What one seed did and which invariants failed (none, ideally)."""

    seed: int
    events_created: int = 0
    events_stored: int = 0
    messages: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    redundant_deliveries: int = 0
    converged_after: float | None = None
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every invariant held."""
        return not self.failures


class _Link:
    """One WebSocket connection between a client and the server."""

    __slots__ = ("alive", "client", "last_to_client", "last_to_server", "server", "silent")

    def __init__(self, client: _Client, server: ServerSession) -> None:
        self.client = client
        self.server = server
        self.alive = True
        self.silent = False  # half-open: nothing gets through, nobody is told
        self.last_to_client = 0.0
        self.last_to_server = 0.0


class _Client:
    __slots__ = (
        "applied_at",
        "attempt",
        "index",
        "link",
        "offline_until",
        "replica",
        "session",
        "skew",
    )

    def __init__(self, index: int, session: ClientSession, skew: float) -> None:
        self.index = index
        self.session = session
        self.replica = MemoryReplica()
        self.link: _Link | None = None
        self.offline_until = 0.0
        self.attempt = 0
        self.skew = skew
        self.applied_at = 0.0


class _Simulation:
    def __init__(self, seed: int, config: SimulationConfig) -> None:
        self.config = config
        self.rng = SplitMix64(seed)
        self.report = SimulationReport(seed=seed)
        self.now = 0.0
        self.faulty = True
        self.queue: list[tuple[float, int, Callable[[], None]]] = []
        self.counter = 0
        self.log = MemoryEventLog()
        self.server_up_at = 0.0
        self.links: list[_Link] = []
        self.created: set[str] = set()
        self.clients = [
            _Client(i, self._new_session({}), self.rng.uniform(0, config.max_clock_skew))
            for i in range(config.clients)
        ]

    # --- scheduling -----------------------------------------------------

    def at(self, when: float, callback: Callable[[], None]) -> None:
        self.counter += 1
        heapq.heappush(self.queue, (when, self.counter, callback))

    def latency(self) -> float:
        low, high = self.config.latency
        return self.rng.uniform(low, high)

    def _new_session(self, cursors: dict[str, int]) -> ClientSession:
        return ClientSession(self.config.client, random=self.rng.random, cursors=cursors)

    def fail(self, message: str) -> None:
        self.report.failures.append(f"t={self.now:.3f}: {message}")

    # --- the network ----------------------------------------------------

    def send_to_server(self, link: _Link, text: str) -> None:
        if not link.alive or link.silent:
            return
        self.report.messages += 1
        link.last_to_server = max(self.now + self.latency(), link.last_to_server)
        self.at(link.last_to_server, lambda: self._deliver_to_server(link, text))

    def _deliver_to_server(self, link: _Link, text: str) -> None:
        if link.alive and not link.silent:
            link.server.receive_text(text, self.now)

    def send_to_client(self, link: _Link, text: str) -> None:
        if not link.alive or link.silent:
            return
        self.report.messages += 1
        link.last_to_client = max(self.now + self.latency(), link.last_to_client)
        self.at(link.last_to_client, lambda: self._deliver_to_client(link, text))

    def _deliver_to_client(self, link: _Link, text: str) -> None:
        if link.alive and not link.silent and link.client.link is link:
            link.client.session.receive_text(text, self.now)

    def cut(self, link: _Link, reason: str, *, tell_client: bool, tell_server: bool) -> None:
        """End a link; each side told (or not) after a latency, like TCP would."""
        if not link.alive:
            return
        link.alive = False
        self.links.remove(link)
        client = link.client
        if tell_server:
            self.at(self.now + self.latency(), lambda: link.server.connection_lost(self.now))
        if tell_client:

            def lost() -> None:
                if client.link is link:
                    client.link = None
                    client.session.connection_lost(self.now, reason)

            self.at(self.now + self.latency(), lost)
        elif client.link is link:
            client.link = None

    def open_connection(self, client: _Client) -> None:
        client.attempt += 1
        attempt = client.attempt
        session = client.session

        def arrive() -> None:
            if client.session is not session or client.attempt != attempt:
                return
            if session.state is not ConnectionState.CONNECTING:
                return
            if self.now < client.offline_until or self.now < self.server_up_at:
                session.connection_failed(self.now, "connection refused")
                return
            link = _Link(client, ServerSession(self.config.server))
            self.links.append(link)
            client.link = link
            link.server.connection_made(self.now)
            session.connection_made(self.now)

        self.at(self.now + 2 * self.latency(), arrive)

    # --- draining actions -----------------------------------------------

    def pump(self) -> None:
        """Carry out every pending action until every session is quiet."""
        busy = True
        while busy:
            busy = False
            for client in self.clients:
                for action in client.session.drain_actions():
                    busy = True
                    self.client_action(client, action)
            for link in list(self.links):
                for server_action in link.server.drain_actions():
                    busy = True
                    self.server_action(link, server_action)

    def client_action(self, client: _Client, action: act.ClientAction) -> None:
        session = client.session
        match action:
            case act.SendMessage(text=text):
                if client.link is not None:
                    self.send_to_server(client.link, text)
            case act.OpenConnection():
                self.open_connection(client)
            case act.CloseConnection(code=code, reason=reason):
                if client.link is not None:
                    self.cut(client.link, f"{code} {reason}", tell_client=False, tell_server=True)
            case act.ApplyEvents(batch_id=batch_id, repository=repository, events=events):
                client.replica.apply_remote(repository, events)

                def applied() -> None:
                    if client.session is session:
                        session.events_applied(batch_id, self.now)

                # A store applies batches in order, each taking a little while.
                client.applied_at = max(client.applied_at, self.now) + self.rng.uniform(0, 0.01)
                self.at(client.applied_at, applied)
            case act.SyncCompleted(repository=repository, cursor=cursor):
                client.replica.advance_cursor(repository, cursor)
            case act.MarkSynced(repositories=repositories):
                for ids in repositories.values():
                    for event_id in ids:
                        if event_id not in self.log:
                            self.fail(f"client {client.index}: {event_id} acked, not stored")
                    client.replica.mark_synced(ids)
            case act.PushFailed(event_ids=ids, reason=reason):
                self.fail(f"client {client.index}: push failed {ids}: {reason}")
            case act.CredentialsNeeded(reason=reason):
                self.fail(f"client {client.index}: credentials needed: {reason}")
            case act.ServerErrorReported(message=message):
                self.fail(f"client {client.index}: server error {message!r}")
            case act.ProtocolErrorReported(reason=reason):
                self.fail(f"client {client.index}: protocol error {reason!r}")
            case _:
                pass  # state changes, scheduled reconnects, filters: nothing to do

    def server_action(self, link: _Link, action: act.ServerAction) -> None:
        session = link.server
        match action:
            case act.SendMessage(text=text):
                self.send_to_client(link, text)
            case act.CloseConnection(code=code, reason=reason):
                self.cut(link, f"{code} {reason}", tell_client=True, tell_server=False)
                session.connection_lost(self.now)
            case act.Authenticate(request_id=request_id):
                session.auth_accepted(request_id, "sim-user", self.now)
            case act.StoreEvents(request_id=request_id, repository=repository, events=events):
                stored, duplicates = self.log.store(repository, events)
                session.events_stored(request_id, stored, duplicates, self.now)
            case act.FetchEvents(
                request_id=request_id, repository=repository, after_sequence=after, limit=limit
            ):
                session.events_fetched(
                    request_id, self.log.fetch(repository, after, limit), self.now
                )
            case act.ListRepositories(request_id=request_id):
                session.repositories_listed(request_id, self.log.repositories(), self.now)
            case act.EventsStored(repository=repository, events=events):
                text = encode_message(Events(repository=repository, events=events))
                for other in self.links:
                    if other is not link:
                        other.server.deliver(repository, events, self.now, text=text)
            case act.ProtocolErrorReported(reason=reason):
                self.fail(f"server: protocol error {reason!r}")
            case _:
                pass  # confirmations are facts for metrics

    # --- the workload and the faults -------------------------------------

    def edit(self, client: _Client) -> None:
        config = self.config
        repository = self.rng.choice(config.repositories)
        data_id = f"doc{self.rng.randrange(config.documents)}"
        number = len(self.created)
        deleting = self.rng.chance(config.delete_share)
        event = SyncEvent(
            event_id=f"c{client.index}-{number:06d}",
            operation=Operation.DELETE if deleting else Operation.UPDATE,
            data_id=data_id,
            # Millisecond clocks with skew: equal timestamps happen, as in life.
            created_at=_EPOCH + timedelta(milliseconds=int((self.now + client.skew) * 1000)),
            data=None if deleting else {"id": data_id, "value": number, "by": client.index},
        )
        self.created.add(event.event_id)
        client.replica.record_local(repository, event)
        if client.session.push(repository, event, self.now) is PushResult.FAILED:
            self.fail(f"client {client.index}: push of {event.event_id} failed")
        if self.rng.chance(config.drop_after_push):
            # Cut while the push or its ack is in flight: the replay path.
            self.at(
                self.now + self.rng.uniform(0, 3 * config.latency[1]), lambda: self.drop(client)
            )

    def restart_client(self, client: _Client) -> None:
        """Crash a client: the session is gone, the durable replica and outbox stay."""
        self.report.faults["client restart"] += 1
        if client.link is not None:
            self.cut(client.link, "client crashed", tell_client=False, tell_server=True)
        client.session = self._new_session(dict(client.replica.cursors))
        client.session.start(self.now)
        for repository, event in client.replica.outbox():
            client.session.push(repository, event, self.now)

    def restart_server(self) -> None:
        self.report.faults["server restart"] += 1
        config = self.config
        self.server_up_at = self.now + self.rng.uniform(*config.server_down_time)
        for link in list(self.links):
            self.cut(link, "server restarted", tell_client=True, tell_server=False)

    def drop(self, client: _Client) -> None:
        if client.link is not None:
            self.report.faults["drop"] += 1
            self.cut(client.link, "connection reset", tell_client=True, tell_server=True)

    def stall(self, client: _Client) -> None:
        if client.link is not None:
            self.report.faults["half-open"] += 1
            client.link.silent = True

    def go_offline(self, client: _Client) -> None:
        self.report.faults["offline"] += 1
        client.offline_until = self.now + self.rng.uniform(*self.config.offline_time)
        if client.link is not None:
            self.cut(client.link, "went offline", tell_client=True, tell_server=False)

    def chaos(self) -> None:
        """Once a virtual second: draw edits and faults, each at a random instant.

        Random instants matter: a fault must be able to strike while a push
        or its ack is in flight, which is where replays come from.
        """
        if not self.faulty:
            return
        config = self.config
        for client in self.clients:
            draws: list[tuple[float, Callable[[_Client], None]]] = [
                (config.edit_rate, self.edit),
                (config.edit_rate / 2, self.edit),
                (config.drop_rate, self.drop),
                (config.stall_rate, self.stall),
                (config.offline_rate, self.go_offline),
                (config.client_restart_rate, self.restart_client),
            ]
            for probability, fault in draws:
                if self.rng.chance(probability):
                    self.at(self.now + self.rng.random(), functools.partial(fault, client))
        if self.rng.chance(config.server_restart_rate):
            self.at(self.now + self.rng.random(), self.restart_server)
        self.at(self.now + 1.0, self.chaos)

    # --- the run ----------------------------------------------------------

    def next_deadline(self) -> float | None:
        deadlines = [c.session.next_deadline() for c in self.clients]
        deadlines += [link.server.next_deadline() for link in self.links]
        return min((d for d in deadlines if d is not None), default=None)

    def step(self) -> None:
        deadline = self.next_deadline()
        if deadline is not None and (not self.queue or deadline <= self.queue[0][0]):
            self.now = max(self.now, deadline)
            for client in self.clients:
                client_deadline = client.session.next_deadline()
                if client_deadline is not None and client_deadline <= self.now:
                    client.session.handle_timer(self.now)
            for link in list(self.links):
                server_deadline = link.server.next_deadline()
                if server_deadline is not None and server_deadline <= self.now:
                    link.server.handle_timer(self.now)
        else:
            when, _, callback = heapq.heappop(self.queue)
            self.now = max(self.now, when)
            callback()
        self.pump()

    def converged(self) -> bool:
        expected = {repo: self.server_documents(repo) for repo in self.config.repositories}
        return all(
            client.session.state is ConnectionState.LIVE
            and not client.replica.outbox()
            and client.session.pending_count == 0
            and all(client.replica.documents(r) == docs for r, docs in expected.items())
            for client in self.clients
        )

    def server_documents(self, repository: str) -> dict[str, object]:
        winners: dict[str, SyncEvent] = {}
        for event in self.log.events(repository):
            if wins(event, winners.get(event.data_id)):
                winners[event.data_id] = event
        return {
            data_id: event.data or {}
            for data_id, event in sorted(winners.items())
            if event.operation is not Operation.DELETE
        }

    def run(self) -> SimulationReport:
        config = self.config
        for client in self.clients:
            client.session.start(self.now)
        self.at(1.0, self.chaos)
        self.pump()
        while self.now < config.duration:
            self.step()
        self.faulty = False
        self.server_up_at = min(self.server_up_at, self.now)
        # Half-open links are not healed by magic: heartbeats must find them.
        for client in self.clients:
            client.offline_until = self.now
        calm_since = self.now
        deadline = self.now + config.settle_time
        while self.now < deadline:
            if self.converged():
                self.report.converged_after = self.now - calm_since
                break
            self.step()
        else:
            self.fail("replicas did not converge after the faults stopped")
        self.check_invariants()
        return self.report

    def check_invariants(self) -> None:
        report = self.report
        report.events_created = len(self.created)
        report.events_stored = len(self.log)
        missing = [event_id for event_id in self.created if event_id not in self.log]
        if missing:
            self.fail(f"{len(missing)} created events never stored, e.g. {sorted(missing)[:3]}")
        for repository in self.config.repositories:
            events = self.log.events(repository)
            ids = [e.event_id for e in events]
            if len(ids) != len(set(ids)):
                self.fail(f"{repository}: an event is stored twice")
            for client in self.clients:
                cursor = client.replica.cursors.get(repository, 0)
                skipped = [
                    e.event_id for e in events[:cursor] if not client.replica.knows(e.event_id)
                ]
                if skipped:
                    self.fail(f"client {client.index}: cursor {cursor} skipped {skipped[:3]}")
        report.redundant_deliveries = sum(c.replica.duplicate_applies for c in self.clients)


def run_simulation(seed: int, config: SimulationConfig | None = None) -> SimulationReport:
    """Run one seeded simulation and return its report."""
    return _Simulation(seed, config or SimulationConfig()).run()
