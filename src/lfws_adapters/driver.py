"""The sync client's shared logic: one ClientConnection, a transport, a host.

A :class:`ClientDriver` runs a :class:`~lfws_core.connection.ClientConnection`
for any runtime. The runtime supplies a :class:`~lfws_adapters.runtime.Loop`
and a :class:`Connector` that opens TCP/TLS transports; the app supplies a
:class:`ClientHost` (the local store and the app's callbacks). The driver
carries out every action of the core:

* store work (apply events, mark synced, sync completed, push failed or
  rejected) runs in one ordered queue, so batches are applied and reported
  in order;
* credentials and sync filters are asked of the host in their own tasks;
* an exception in a host method is logged and never stops sync: a failed
  apply is reported to the core, which re-fetches the events later.
"""

from __future__ import annotations

import logging
import os
import random
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import Protocol

import anyio

from lfws_core.actions import (
    Action,
    ApplyEvents,
    CloseTransport,
    ConnectionState,
    ConnectionStateChanged,
    CredentialsNeeded,
    MarkSynced,
    OpenConnection,
    ProtocolErrorReported,
    PushFailed,
    PushRejected,
    ReconnectScheduled,
    SendBytes,
    ServerErrorReported,
    SyncCompleted,
    SyncFiltersNeeded,
)
from lfws_core.client import ClientConfig, ClientHealth, PushResult
from lfws_core.connection import ClientConnection
from lfws_core.errors import LocalProtocolError
from lfws_core.events import JsonValue, SyncEvent

from .auth import AuthCredentials
from .runtime import Event, Link, Loop, TimerHandle

__all__ = ["ClientBase", "ClientDriver", "ClientHost", "Connector", "Receiver"]

logger = logging.getLogger("lfws.client")


class ClientHost:
    """What the driver hands the core's results to; override what you need.

    Every method may be slow (it runs in a task) and may raise (it is
    logged). The defaults keep nothing: a real host is the local store.
    """

    async def apply_events(self, repository: str, events: tuple[SyncEvent, ...]) -> None:
        """Merge remote ``events`` of ``repository`` into the local store."""

    async def sync_completed(
        self, repository: str, events: tuple[SyncEvent, ...], cursor: int | None
    ) -> None:
        """Observe a batch applied; ``cursor`` is the repository's new cursor."""

    async def mark_synced(self, repositories: Mapping[str, tuple[str, ...]]) -> None:
        """Record that the server acknowledged these local events."""

    async def push_failed(self, repository: str, event_ids: tuple[str, ...], reason: str) -> None:
        """Record that these local events could not be queued or sent."""

    async def push_rejected(self, repository: str, event_ids: tuple[str, ...], reason: str) -> None:
        """Record that the server refused these local events for good.

        They are never sent again (no write access, say); set them aside.
        The default treats them as :meth:`push_failed`.
        """
        await self.push_failed(repository, event_ids, reason)

    async def credentials_needed(self, reason: str) -> AuthCredentials | None:
        """Return new credentials after a refusal, or ``None`` to wait."""
        return None

    async def build_sync_filters(
        self, repositories: tuple[str, ...]
    ) -> Mapping[str, Mapping[str, JsonValue] | None]:
        """Return catch-up fields per repository (``None``: use the cursor)."""
        return {}

    def state_changed(self, state: ConnectionState, reason: str) -> None:
        """Observe connection state changes (runs on the loop; keep it quick)."""


class Receiver(Protocol):
    """Where a transport delivers what it reads."""

    def data_received(self, data: bytes) -> None:
        """Take bytes the transport read; ``b""`` is the end of input (see ``TransportPeer``)."""

    def connection_lost(self, reason: str) -> None:
        """Report the transport ended (closed, reset, TLS failure)."""


class Connector(Protocol):
    """Opens transports for the driver (one per ``OpenConnection``)."""

    async def connect(self, target: OpenConnection, receiver: Receiver) -> Link:
        """Open TCP (TLS when ``target.secure``) and return it; raise ``OSError`` on failure."""
        ...


class _Attempt:
    """Binds a transport's callbacks to one connection attempt."""

    __slots__ = ("driver", "live")

    def __init__(self, driver: ClientDriver) -> None:
        self.driver = driver
        self.live = True

    def data_received(self, data: bytes) -> None:
        if self.live:
            self.driver._data_received(data)

    def connection_lost(self, reason: str) -> None:
        if self.live:
            self.live = False
            self.driver._transport_lost(reason)


class ClientDriver:
    """Runs one client session on a runtime's loop and connector."""

    def __init__(
        self,
        config: ClientConfig,
        host: ClientHost,
        loop: Loop,
        connector: Connector,
        *,
        cursors: Mapping[str, int] | None = None,
        max_message_size: int = 1 << 20,
    ) -> None:
        self.host = host
        self.loop = loop
        self.connector = connector
        rng = random.SystemRandom()
        self.connection = ClientConnection(
            config,
            random=rng.random,
            random_bytes=os.urandom,
            cursors=cursors,
            max_message_size=max_message_size,
        )
        self.token: str | None = config.token
        """The credentials in use: the ``auth`` token ..."""
        self.headers: Mapping[str, str] = dict(config.headers)
        """... and the header fields spread into ``auth``."""
        self._link: Link | None = None
        self._attempt: _Attempt | None = None
        self._timer: TimerHandle | None = None
        self._timer_at: float | None = None
        self._store_work: deque[Callable[[], Awaitable[None]]] = deque()
        self._store_busy = False
        self._store_worker = False  # started by the first store work, then waits for more
        self._store_wake: Event | None = None  # what the idle worker waits on
        self.state_observers: list[Callable[[ConnectionState], None]] = []
        """Called on the loop after each state change, after the host (``wait_for_state``)."""

    @property
    def session_state(self) -> ConnectionState:
        """The core session's connection state."""
        return self.connection.session.state

    # --- commands -----------------------------------------------------------

    def start(self) -> None:
        """Start connecting."""
        self.connection.session.start(self.loop.time())
        self._run()

    def push(self, repository: str, event: SyncEvent) -> PushResult:
        """Push a local event (sent, queued or failed; see the core)."""
        now = self.loop.time()
        result = self.connection.session.push(repository, event, now)
        self._run(now)
        return result

    def update_credentials(self, token: str | None, headers: Mapping[str, str]) -> None:
        """Use new credentials (re-authenticating in band when connected)."""
        self.token, self.headers = token, dict(headers)
        self.connection.session.update_credentials(
            token=token, headers=headers, now=self.loop.time()
        )
        self._run()

    def close(self) -> None:
        """Close for good (close handshake, then the transport)."""
        self.connection.session.close(self.loop.time())
        self._run()

    def health(self) -> ClientHealth:
        """Return the core's typed health snapshot."""
        return self.connection.session.health(self.loop.time())

    def idle(self) -> bool:
        """Return whether no store work is queued or running."""
        return not self._store_busy and not self._store_work

    # --- the transport's side ------------------------------------------------

    def _data_received(self, data: bytes) -> None:
        now = self.loop.time()
        self.connection.receive_data(data, now)
        self._run(now)

    def _transport_lost(self, reason: str) -> None:
        # A transport can end before the connector returns it (reset at once,
        # say, by a server that is closing its listener): the attempt failed.
        made = self._link is not None
        self._link = None
        self._attempt = None
        if made:
            self.connection.transport_lost(self.loop.time(), reason)
        else:
            self.connection.transport_failed(self.loop.time(), reason)
        self._run()

    # --- carrying out actions ---------------------------------------------------

    def _run(self, now: float | None = None) -> None:
        # ``now``: the time the caller just read, if it did (one clock read
        # per callback on the hot paths, not two).
        if now is None:
            now = self.loop.time()
        for action in self.connection.drain_actions(now):
            self._execute(action)
        deadline = self.connection.next_deadline()
        if deadline != self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = None if deadline is None else self.loop.call_at(deadline, self._on_timer)
            self._timer_at = deadline

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        now = self.loop.time()
        self.connection.handle_timer(now)
        self._run(now)

    def _execute(self, action: Action) -> None:
        if type(action) is SendBytes:
            if self._link is not None:
                self._link.write(action.data)
        elif isinstance(action, ApplyEvents):
            self._queue_store_work(lambda: self._apply(action))
        elif isinstance(action, SyncCompleted):
            self._queue_store_work(
                lambda: self.host.sync_completed(action.repository, action.events, action.cursor)
            )
        elif isinstance(action, MarkSynced):
            self._queue_store_work(lambda: self.host.mark_synced(action.repositories))
        elif isinstance(action, PushFailed):
            self._queue_store_work(
                lambda: self.host.push_failed(action.repository, action.event_ids, action.reason)
            )
        elif isinstance(action, PushRejected):
            logger.warning(
                "the server refused %d events of %s for good (%s): %s",
                len(action.event_ids),
                action.repository,
                action.code,
                action.reason,
            )
            self._queue_store_work(
                lambda: self.host.push_rejected(action.repository, action.event_ids, action.reason)
            )
        elif isinstance(action, OpenConnection):
            self._open(action)
        elif isinstance(action, CloseTransport):
            self._drop_link()
        elif isinstance(action, ConnectionStateChanged):
            logger.info(
                "connection %s%s", action.state.value, f": {action.reason}" * bool(action.reason)
            )
            self._guard(lambda: self.host.state_changed(action.state, action.reason))
            for observer in self.state_observers:
                self._guard(partial(observer, action.state))
        elif isinstance(action, CredentialsNeeded):
            self.loop.spawn(lambda: self._ask_credentials(action))
        elif isinstance(action, SyncFiltersNeeded):
            self.loop.spawn(lambda: self._ask_filters(action))
        elif isinstance(action, ReconnectScheduled):
            logger.info("reconnecting in %.2f s (attempt %d)", action.delay, action.attempt)
        elif isinstance(action, ServerErrorReported):
            logger.warning("server error: %s", action.message)
        elif isinstance(action, ProtocolErrorReported):
            logger.warning("invalid message from the server: %s", action.reason)

    def _guard(self, callback: Callable[[], object]) -> None:
        try:
            callback()
        except Exception:
            logger.exception("a client callback failed")

    def _drop_link(self) -> None:
        if self._attempt is not None:
            self._attempt.live = False
            self._attempt = None
        if self._link is not None:
            self._link.close()
            self._link = None

    def _open(self, target: OpenConnection) -> None:
        self._drop_link()
        attempt = self._attempt = _Attempt(self)

        async def connect() -> None:
            try:
                link = await self.connector.connect(target, attempt)
            except OSError as error:
                if attempt.live:
                    attempt.live = False
                    self._attempt = None
                    self.connection.transport_failed(self.loop.time(), str(error) or repr(error))
                    self._run()
                return
            if not attempt.live:  # given up meanwhile (timeout, close)
                link.close()
                return
            self._link = link
            self.connection.transport_made(self.loop.time())
            self._run()

        self.loop.spawn(connect)

    # --- the host's work, in order -------------------------------------------

    def _queue_store_work(self, work: Callable[[], Awaitable[None]]) -> None:
        self._store_work.append(work)
        if self._store_wake is not None:
            self._store_wake.set()
            self._store_wake = None
        elif not self._store_worker:
            self._store_worker = True
            self.loop.spawn(self._work_store)

    async def _work_store(self) -> None:
        # One long-lived task: waking it costs less than starting a task per ack.
        try:
            while True:
                while self._store_work:
                    work = self._store_work.popleft()
                    self._store_busy = True
                    try:
                        await work()
                    except Exception:
                        logger.exception("the local store failed")
                    finally:
                        self._store_busy = False
                wake = self.loop.new_event()
                self._store_wake = wake
                await wake.wait()
        finally:
            # Cancelled, or a store raised a BaseException: the next work
            # starts a new worker instead of waiting for this one forever.
            self._store_worker, self._store_wake = False, None

    async def _apply(self, action: ApplyEvents) -> None:
        try:
            await self.host.apply_events(action.repository, action.events)
        except Exception as error:
            logger.exception(
                "applying %d events of %s failed", len(action.events), action.repository
            )
            self.connection.session.events_apply_failed(
                action.batch_id, str(error) or type(error).__name__, self.loop.time()
            )
        else:
            self.connection.session.events_applied(action.batch_id, self.loop.time())
        self._run()

    async def _ask_credentials(self, action: CredentialsNeeded) -> None:
        try:
            credentials = await self.host.credentials_needed(action.reason)
        except Exception:
            logger.exception("the credentials callback failed")
            return
        if credentials is None:
            logger.warning(
                "authentication refused (%s); waiting for new credentials", action.reason
            )
            return
        # As in Dart: what the callback leaves out (None) stays as it was.
        token = credentials.auth_token if credentials.auth_token is not None else self.token
        headers = credentials.headers if credentials.headers is not None else self.headers
        self.update_credentials(token, headers)

    async def _ask_filters(self, action: SyncFiltersNeeded) -> None:
        try:
            filters = await self.host.build_sync_filters(action.repositories)
        except Exception:
            logger.exception("the sync filter callback failed; using cursors")
            filters = {}
        try:
            self.connection.session.sync_filters_built(filters, self.loop.time())
        except LocalProtocolError as error:
            # Else the catch-up would wait for filters for ever.
            logger.error("invalid sync filters (%s); using cursors", error)
            self.connection.session.sync_filters_built({}, self.loop.time())
        self._run()


class ClientBase:
    """Every adapter's ``Client``: a driver's commands, and waiting for a state.

    It waits with anyio, which runs on both asyncio and trio.
    """

    def __init__(self, driver: ClientDriver) -> None:
        self.driver = driver
        self._changed = anyio.Event()
        driver.state_observers.append(self._state_changed)

    def _state_changed(self, state: ConnectionState) -> None:
        """Observe a new state (on the loop); wake the waiters."""
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_for_state(self, state: ConnectionState, timeout: float = 10.0) -> None:
        """Wait until the connection is in ``state``; raise ``TimeoutError`` after ``timeout`` s."""
        with anyio.move_on_after(timeout):
            while self.state is not state:
                await self._changed.wait()
            return
        raise TimeoutError(f"still {self.state.value} after {timeout} s, not {state.value}")

    @property
    def state(self) -> ConnectionState:
        """The connection state."""
        return self.driver.session_state

    def push(self, repository: str, event: SyncEvent) -> PushResult:
        """Push a local event: sent, queued until connected, or failed."""
        return self.driver.push(repository, event)

    def update_credentials(
        self, token: str | None, headers: Mapping[str, str] | None = None
    ) -> None:
        """Use new credentials (``headers=None`` keeps the current ones), re-authenticating."""
        self.driver.update_credentials(token, self.driver.headers if headers is None else headers)

    def health(self) -> ClientHealth:
        """Return a snapshot of the connection, queue and cursors."""
        return self.driver.health()
