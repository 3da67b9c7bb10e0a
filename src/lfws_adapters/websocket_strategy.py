"""``WebSocketSyncStrategy``: the Dart strategy's API over the core's client session.

The names and meanings are the Dart package's (``start``, ``stop``,
``dispose``, ``update_auth_token``, ``connection_changes``, the three
callbacks); the protocol work is the core's
(:class:`~lfws_core.client.ClientSession`), run by the adapter of the event
loop the app uses. The strategy is that session's
:class:`~lfws_adapters.driver.ClientHost`: it applies remote events to the
client's local store, records acks and failures there, keeps the cursors,
and calls the app's callbacks, whose exceptions are logged and never stop
sync.

The local store's outbox is the durable queue: every ``start()`` offers it
to the new session (queued, then flushed in batches once authenticated), and
so does every later connection, so events pushed before a crash, a
``stop()`` or a failed attempt are sent, and stored by the server once.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from datetime import timedelta
from functools import partial
from ssl import SSLContext
from types import MappingProxyType
from typing import TYPE_CHECKING, TypeAlias

import anyio
from anyio.abc import TaskStatus

from lfws_core.actions import ConnectionState
from lfws_core.client import ClientConfig, ClientHealth, OverflowPolicy, PushResult
from lfws_core.errors import LocalProtocolError
from lfws_core.events import JsonValue, SyncEvent, event_to_json

from ._background import RUNTIME_NAMES, Connect, RuntimeName, adapter_connect, start_in_background
from ._broadcast import Broadcast, Subscription
from ._callbacks import call_logged
from .auth import AuthCredentials
from .driver import ClientBase, ClientHost
from .local_storage import LocalFirstStorage

if TYPE_CHECKING:
    from .local_first_client import LocalFirstClient

__all__ = [
    "AuthenticationFailedCallback",
    "SyncCompletedCallback",
    "SyncFilterBuilder",
    "WebSocketSyncStrategy",
]

logger = logging.getLogger("lfws.client")

SyncFilterBuilder: TypeAlias = Callable[
    [str], "Mapping[str, JsonValue] | Awaitable[Mapping[str, JsonValue] | None] | None"
]
"""``on_build_sync_filter(repository)``: the extra ``request_events`` fields, or ``None``."""

SyncCompletedCallback: TypeAlias = Callable[[str, list[dict[str, JsonValue]]], object]
"""``on_sync_completed(repository, events)``: events as Dart JSON objects, already applied."""

AuthenticationFailedCallback: TypeAlias = Callable[
    [], "AuthCredentials | Awaitable[AuthCredentials | None] | None"
]
"""``on_authentication_failed()``: new credentials to try, or ``None`` to wait."""

_CONNECTION_BUFFER = 64  # connection changes a slow subscriber may lag behind

# The ClientConfig fields the named parameters and the client own.
_OWN_FIELDS = frozenset(
    {
        "url",
        "token",
        "headers",
        "repositories",
        "reconnect_delay",
        "heartbeat_interval",
        "enable_pending_queue",
        "custom_sync_filter",
    }
)


_DEFAULT_MAX_RECONNECT_DELAY = ClientConfig(url="ws://localhost/").max_reconnect_delay


def _seconds(value: float | timedelta) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else value


class _Session:
    """One run of the strategy, from ``start()`` to ``stop()``: one core session."""

    def __init__(self) -> None:
        self.stop = anyio.Event()
        self.done = anyio.Event()
        self.client: ClientBase | None = None


class WebSocketSyncStrategy(ClientHost):
    """Real-time, bidirectional sync of a ``LocalFirstClient`` over a WebSocket.

    ``reconnect_delay`` and ``heartbeat_interval`` are seconds (or
    ``timedelta``); reconnects back off from ``reconnect_delay`` up to
    ``max_reconnect_delay`` (60 s by default) with full jitter. ``ssl`` is
    used for ``wss://`` URLs. ``runtime`` picks the adapter (``"asyncio"``,
    ``"trio"`` or ``"anyio"``; by default the running library's own). Further
    keyword arguments set the other fields of
    :class:`~lfws_core.client.ClientConfig` (``pong_timeout``, ``max_pending``,
    ``overflow_policy``, ...). Invalid settings raise
    :class:`~lfws_core.errors.LocalProtocolError` here.
    """

    def __init__(
        self,
        websocket_url: str,
        auth_token: str | None = None,
        headers: Mapping[str, str] | None = None,
        reconnect_delay: float | timedelta = 3.0,
        heartbeat_interval: float | timedelta = 30.0,
        enable_pending_queue: bool = True,
        on_build_sync_filter: SyncFilterBuilder | None = None,
        on_sync_completed: SyncCompletedCallback | None = None,
        on_authentication_failed: AuthenticationFailedCallback | None = None,
        *,
        ssl: SSLContext | None = None,
        runtime: RuntimeName | None = None,
        **options: float | OverflowPolicy,
    ) -> None:
        reserved = _OWN_FIELDS & options.keys()
        if reserved:
            raise LocalProtocolError(f"{sorted(reserved)[0]} cannot be set as an option")
        if runtime is not None and runtime not in RUNTIME_NAMES:
            raise LocalProtocolError(f"runtime must be one of {RUNTIME_NAMES}, not {runtime!r}")
        delay = _seconds(reconnect_delay)
        if "max_reconnect_delay" not in options and isinstance(delay, int | float):
            options["max_reconnect_delay"] = max(_DEFAULT_MAX_RECONNECT_DELAY, delay)
        try:
            self._config = ClientConfig(
                url=websocket_url,
                token=auth_token,
                headers=headers or {},
                reconnect_delay=delay,
                heartbeat_interval=_seconds(heartbeat_interval),
                enable_pending_queue=enable_pending_queue,
                custom_sync_filter=on_build_sync_filter is not None,
                **options,  # type: ignore[arg-type]
            )
        except TypeError as error:  # an unknown option
            raise LocalProtocolError(str(error)) from None
        self._on_build_sync_filter = on_build_sync_filter
        self._on_sync_completed = on_sync_completed
        self._on_authentication_failed = on_authentication_failed
        self._ssl = ssl
        self._runtime = runtime
        self._auth_token = auth_token
        self._headers: Mapping[str, str] = self._config.headers
        self._client: LocalFirstClient | None = None
        self._session: _Session | None = None
        self._last: ClientBase | None = None  # the latest session's client, for health()
        self._disposed = False
        self._connected = False
        self._connection_changes = Broadcast[bool]("connection_changes")
        # More unsynced events than a session takes at once: offer more after acks.
        self._backlog = False

    # --- the Dart API -------------------------------------------------------------

    @property
    def websocket_url(self) -> str:
        """The server's URL."""
        return self._config.url

    @property
    def auth_token(self) -> str | None:
        """The token sent in ``auth`` (read-only; see :meth:`update_auth_token`)."""
        return self._auth_token

    @property
    def headers(self) -> Mapping[str, str]:
        """The headers sent with the handshake and in ``auth`` (read-only)."""
        return self._headers

    @property
    def connection_changes(self) -> Subscription[bool]:
        """A new async iterator of connection states: ``True`` once authenticated, else ``False``.

        Each access is a new subscriber seeing the changes from then on; it
        ends when the strategy is disposed.
        """
        return self._connection_changes.subscribe(_CONNECTION_BUFFER)

    @property
    def latest_connection_state(self) -> bool:
        """Whether the strategy is connected and authenticated now."""
        return self._connected

    @property
    def state(self) -> ConnectionState:
        """The core's connection state (``IDLE`` before the first start)."""
        client = self._session_client() or self._last
        return ConnectionState.IDLE if client is None else client.state

    def health(self) -> ClientHealth:
        """Return the core's typed health: state, reason, next retry, queue depth, cursors.

        Times (``next_retry_at``) are on the event loop's clock. After
        :meth:`stop` it describes the session that ended.
        """
        client = self._session_client() or self._last
        if client is not None:
            return client.health()
        return ClientHealth(
            state=ConnectionState.IDLE,
            reason="",
            connected=False,
            next_retry_at=None,
            reconnect_attempt=0,
            pending=0,
            oldest_pending_age=None,
            cursors=MappingProxyType({}),
            outstanding_applies=0,
        )

    async def start(self) -> None:
        """Connect in the background and keep syncing (reconnecting) until :meth:`stop`.

        Returns at once. Under trio it needs the task group of
        ``async with LocalFirstClient(...)``; calling it while started does
        nothing.
        """
        client = self._attached()
        if self._disposed:
            raise LocalProtocolError("this WebSocketSyncStrategy is disposed")
        if self._session is not None:
            return
        connect = adapter_connect(self._runtime)
        session = self._session = _Session()
        try:
            await start_in_background(partial(self._run, session, connect), client.task_group)
        except BaseException:
            self._session = None
            raise

    async def stop(self) -> None:
        """Disconnect (close handshake) and stop reconnecting; idempotent.

        Unsent events stay in the local store's outbox for the next :meth:`start`.
        """
        session = self._session
        if session is not None:
            session.stop.set()
            await session.done.wait()

    async def dispose(self) -> None:
        """Stop for good and end every ``connection_changes`` iterator; idempotent."""
        await self.stop()
        self._disposed = True
        self._connection_changes.close()

    def update_auth_token(self, token: str) -> None:
        """Use a new token; re-authenticate at once if connected (no reconnect)."""
        self.update_credentials(auth_token=token)

    def update_headers(self, headers: Mapping[str, str]) -> None:
        """Use new headers; re-authenticate at once if connected (no reconnect)."""
        self.update_credentials(headers=headers)

    def update_credentials(
        self, auth_token: str | None = None, headers: Mapping[str, str] | None = None
    ) -> None:
        """Use new credentials (``None`` keeps that part); re-authenticate at once if connected."""
        credentials = self._keep_credentials(auth_token, headers)
        client = self._session_client()
        if client is not None and client.state is not ConnectionState.CLOSED:
            client.update_credentials(credentials.auth_token, credentials.headers)

    def _keep_credentials(
        self, auth_token: str | None, headers: Mapping[str, str] | None
    ) -> AuthCredentials:
        """Check and keep new credentials (``None`` keeps that part); return them in full."""
        token = self._auth_token if auth_token is None else auth_token
        checked = replace(
            self._config, token=token, headers=self._headers if headers is None else headers
        )
        self._auth_token, self._headers = token, checked.headers
        return AuthCredentials(auth_token=token, headers=checked.headers)

    # --- the client's side ----------------------------------------------------------

    def attach(self, client: LocalFirstClient) -> None:
        """Bind to ``client``: its store, its repositories (called by ``initialize()``)."""
        if self._client is not None and self._client is not client:
            raise LocalProtocolError("this strategy already belongs to another LocalFirstClient")
        self._client = client

    async def push(self, repository: str, event: SyncEvent) -> PushResult:
        """Offer a recorded local event to the session (see the ``SyncStrategy`` protocol).

        While stopped the outbox keeps it for the next start: ``QUEUED``, or
        ``FAILED`` (marked so in the store) when the pending queue is disabled.
        """
        client = self._session_client()
        if client is not None and client.state is not ConnectionState.CLOSED:
            return client.push(repository, event)
        if self._config.enable_pending_queue:
            return PushResult.QUEUED
        await self._storage().mark_failed(
            [event.event_id], "not connected and the pending queue is disabled"
        )
        return PushResult.FAILED

    # --- ClientHost: what the session hands over -------------------------------------

    async def apply_events(self, repository: str, events: tuple[SyncEvent, ...]) -> None:
        """Merge remote events into the local store; the repository's watchers see them."""
        await self._attached().apply_remote(repository, events)

    async def sync_completed(
        self, repository: str, events: tuple[SyncEvent, ...], cursor: int | None
    ) -> None:
        """Store the new cursor, then call ``on_sync_completed(repository, events)``."""
        if cursor is not None:
            await self._storage().set_cursor(repository, cursor)
        if self._on_sync_completed is not None:
            await call_logged(
                "on_sync_completed",
                self._on_sync_completed,
                repository,
                [event_to_json(event) for event in events],
            )

    async def mark_synced(self, repositories: Mapping[str, tuple[str, ...]]) -> None:
        """Mark acknowledged events synced; offer more of the outbox if some waited."""
        await self._storage().mark_synced(i for ids in repositories.values() for i in ids)
        client = self._session_client()
        if self._backlog and client is not None and client.state.connected:
            await self._offer_outbox(client)

    async def push_failed(self, repository: str, event_ids: tuple[str, ...], reason: str) -> None:
        """Mark events failed; they stay in the outbox and are offered again."""
        await self._storage().mark_failed(event_ids, reason)
        self._backlog = True

    async def push_rejected(self, repository: str, event_ids: tuple[str, ...], reason: str) -> None:
        """Set events the server refused for good aside (see ``LocalFirstStorage.rejected``)."""
        await self._storage().reject(event_ids, reason)

    async def credentials_needed(self, reason: str) -> AuthCredentials | None:
        """Ask ``on_authentication_failed()`` for new credentials (``None``: wait)."""
        if self._on_authentication_failed is None:
            return None
        credentials = await call_logged("on_authentication_failed", self._on_authentication_failed)
        if credentials is None:
            return None
        if not isinstance(credentials, AuthCredentials):
            logger.error("on_authentication_failed returned %r, not AuthCredentials", credentials)
            return None
        try:
            return self._keep_credentials(credentials.auth_token, credentials.headers)
        except LocalProtocolError as error:
            logger.error("on_authentication_failed returned unusable credentials: %s", error)
            return None

    async def build_sync_filters(
        self, repositories: tuple[str, ...]
    ) -> Mapping[str, Mapping[str, JsonValue] | None]:
        """Ask ``on_build_sync_filter(repository)`` for each repository's catch-up fields."""
        filters: dict[str, Mapping[str, JsonValue] | None] = {}
        if self._on_build_sync_filter is None:
            return filters
        for repository in repositories:
            fields = await call_logged(
                f"on_build_sync_filter({repository!r})", self._on_build_sync_filter, repository
            )
            if fields is not None and not isinstance(fields, Mapping):
                logger.error(
                    "the sync filter of %r is %r, not a mapping or None; using the cursor",
                    repository,
                    fields,
                )
                fields = None
            filters[repository] = fields
        return filters

    def state_changed(self, state: ConnectionState, reason: str) -> None:
        """Publish connection changes; offer the outbox to every new connection."""
        if state.connected != self._connected:
            self._connected = state.connected
            self._connection_changes.publish(self._connected)
        client = self._session_client()
        if state is ConnectionState.SYNCING and client is not None:
            client.driver.loop.spawn(partial(self._offer_outbox, client))

    # --- running a session ---------------------------------------------------------

    async def _run(
        self, session: _Session, connect: Connect, *, task_status: TaskStatus[None]
    ) -> None:
        started = False
        try:
            client = self._attached()
            cursors = await client.local_storage.cursors()
            config = replace(
                self._config,
                token=self._auth_token,
                headers=self._headers,
                repositories=tuple(r.name for r in client.repositories),
            )
            async with connect(config, self, ssl=self._ssl, cursors=cursors) as running:
                session.client = self._last = running
                task_status.started()
                started = True
                if config.enable_pending_queue:
                    # Queued now, flushed in batches once authenticated.
                    await self._offer_outbox(running)
                await session.stop.wait()
        except Exception:
            if not started:
                raise
            logger.exception("the sync session failed; start() again to resume")
        finally:
            if self._session is session:
                self._session = None
            session.done.set()

    async def _offer_outbox(self, client: ClientBase) -> None:
        """Push the oldest unsynced events into ``client``'s session (it ignores known ones)."""
        limit = self._config.max_pending
        outbox = await self._storage().outbox(limit=limit)
        if client is not self._session_client() or client.state is ConnectionState.CLOSED:
            return
        self._backlog = len(outbox) >= limit
        for repository, event in outbox:
            client.push(repository, event)

    def _session_client(self) -> ClientBase | None:
        session = self._session
        return None if session is None else session.client

    def _attached(self) -> LocalFirstClient:
        if self._client is None:
            raise LocalProtocolError(
                "this strategy is not attached: pass it to LocalFirstClient(sync_strategies=[...]) "
                "and await client.initialize() first"
            )
        return self._client

    def _storage(self) -> LocalFirstStorage:
        return self._attached().local_storage
