"""Fan-out on a shared event log: every event, once, in sequence order.

On a log several nodes write to (:class:`~lfws_adapters.shared_event_log.SharedEventLog`),
a node's clients must get what the other nodes stored, and a client that
is live on a repository takes the highest ``serverSequence`` it received
as its cursor. So a node may broadcast sequence ``N`` only once it has
broadcast every sequence below it, or a client that drops between the two
resumes past an event it never got. Sequence order is commit order in a
shared log, but stores finish out of order (here and on other nodes), so
the :class:`Relay` sits between stores and :meth:`SyncHub.broadcast
<lfws_adapters.hub.SyncHub.broadcast>`:

* what this node stored comes in from its connections (:meth:`Relay.stored`)
  with the connection that stored it, which the broadcast skips as usual;
* what any node stored is announced by the log's change feed; the relay
  fetches, by cursor, only what it has neither broadcast nor holds;
* per repository it holds events until the run from its cursor is
  complete, then broadcasts the run; an event below the cursor has been
  broadcast already and is dropped, so none goes out twice;
* a gap below an event this node stored is committed already (the event
  committed after it), so the relay fetches it at once instead of waiting
  for the feed; a failed fetch is retried;
* before fetching, it lets this node's stores into the repository that are
  in progress return: what they stored comes in with its connection
  instead of being fetched and echoed to that connection.

The cursors start where the feed found the log on entering, and clients
are authenticated only from then on (:meth:`Relay.gate`), so a client sees,
from its first catch-up on, every event by fetch or by broadcast.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

import anyio

from lfws_core.events import SyncEvent

from .auth import Authenticator, Credentials, resolve
from .event_log import EventLog
from .shared_event_log import ChangeSource, SharedEventLog

if TYPE_CHECKING:
    from .hub import Peer

__all__ = ["Relay"]

logger = logging.getLogger("lfws.server.relay")

_RETRY_DELAY = 1.0
_MAX_RETRY_DELAY = 10.0


class _Hub(Protocol):
    @property
    def event_log(self) -> EventLog: ...

    def broadcast(
        self, origin: Peer | None, repository: str, events: tuple[SyncEvent, ...]
    ) -> None: ...


class Relay:
    """Orders and completes a node's broadcasts on a shared event log.

    :meth:`run` must run for the life of the hub (it follows the feed and
    fetches); :meth:`stored` takes what this node's connections stored.
    """

    def __init__(self, hub: _Hub, log: SharedEventLog, *, page_size: int) -> None:
        self._hub = hub
        self._log = log
        self._page_size = page_size
        # Per repository: the next sequence to broadcast, and what waits for it.
        self._next: dict[str, int] = {}
        self._held: dict[str, dict[int, tuple[SyncEvent, Peer | None]]] = {}
        # Per repository: fetch and broadcast everything up to this sequence.
        self._wanted: dict[str, int] = {}
        self._wake: anyio.Event | None = None
        self._ready = False
        self._on_ready: anyio.Event | None = None

    # --- the hub's side ---------------------------------------------------

    def stored(self, origin: Peer | None, repository: str, events: tuple[SyncEvent, ...]) -> None:
        """Broadcast what ``origin`` stored, once every earlier sequence is out."""
        self._hold(repository, events, origin)
        self._release(repository)
        held = self._held.get(repository)
        if held:
            self._want(repository, max(held))

    def gate(self, authenticator: Authenticator) -> Authenticator:
        """Wrap ``authenticator`` so that it answers only once the relay follows the log."""

        async def authenticate_when_ready(credentials: Credentials) -> object:
            await self._wait_ready()
            return await resolve(authenticator(credentials))

        return authenticate_when_ready

    async def run(self) -> None:
        """Enter the change feed (retrying), then relay until cancelled.

        Should the feed end or anything in the relay fail, it logs, enters a
        new feed and goes on from its cursors: a dead relay would hold every
        later broadcast behind the first gap it can no longer fill.
        """
        while True:
            feed = await self._enter_feed()
            try:
                for repository, last in feed.cursors.items():
                    if not self._ready:
                        self._next[repository] = last + 1  # where the log stands
                    else:
                        # Entered anew: the cursors stay, what was missed is fetched.
                        self._want(repository, last)
                self._set_ready()
                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(self._follow, feed, tasks.cancel_scope)
                    await self._fetch_wanted()
            except Exception:
                logger.exception("the relay failed; following the shared event log anew")
            else:
                logger.warning("the change feed ended; following the shared event log anew")
            finally:
                with anyio.CancelScope(shield=True):
                    await feed.__aexit__(None, None, None)
            await anyio.sleep(_RETRY_DELAY)

    # --- internals --------------------------------------------------------

    async def _enter_feed(self) -> ChangeSource:
        delay = _RETRY_DELAY
        while True:
            feed = self._log.change_feed()
            try:
                await feed.__aenter__()
            except Exception as exc:
                logger.warning(
                    "cannot follow the shared event log (%s); clients wait; retrying in %.0f s",
                    exc,
                    delay,
                )
                await anyio.sleep(delay)
                delay = min(delay * 2, _MAX_RETRY_DELAY)
                continue
            return feed

    def _set_ready(self) -> None:
        self._ready = True
        if self._on_ready is not None:
            self._on_ready.set()

    async def _wait_ready(self) -> None:
        if not self._ready:
            if self._on_ready is None:
                self._on_ready = anyio.Event()
            await self._on_ready.wait()

    async def _follow(self, feed: ChangeSource, relaying: anyio.CancelScope) -> None:
        async for change in feed:
            self._want(change.repository, change.up_to_sequence)
        relaying.cancel()  # a feed is meant to go on until exited

    def _want(self, repository: str, up_to: int) -> None:
        if up_to < self._next.get(repository, 1) or up_to <= self._wanted.get(repository, 0):
            return
        self._wanted[repository] = up_to
        if self._wake is not None:
            self._wake.set()

    async def _fetch_wanted(self) -> None:
        while True:
            if not self._wanted:
                self._wake = anyio.Event()
                await self._wake.wait()
                continue
            repository = next(iter(self._wanted))
            await self._catch_up(repository, self._wanted.pop(repository))

    async def _catch_up(self, repository: str, up_to: int) -> None:
        # This node's stores that committed already come back with their
        # connection (so that it is skipped); fetched, they would echo to it.
        await self._log.stores_returned(repository)
        delay = _RETRY_DELAY
        while (first := self._next.get(repository, 1)) <= up_to:
            held = self._held.get(repository)
            # Only what is neither broadcast nor held: the gap below the held events.
            last = min(up_to, min(held) - 1) if held else up_to
            limit = min(last - first + 1, self._page_size)
            try:
                events = await self._hub.event_log.fetch(repository, first - 1, limit)
            except Exception as exc:
                logger.warning(
                    "cannot fetch %s after %d for this node's clients (%s); retrying in %.0f s",
                    repository,
                    first - 1,
                    exc,
                    delay,
                )
                await anyio.sleep(delay)
                delay = min(delay * 2, _MAX_RETRY_DELAY)
                continue
            if not events:
                # Committed sequences have no gaps: only a log emptied under us gets here.
                logger.error(
                    "%s has no event after %d; expected up to %d", repository, first - 1, up_to
                )
                return
            self._hold(repository, events, None)
            self._release(repository)

    def _hold(self, repository: str, events: Sequence[SyncEvent], origin: Peer | None) -> None:
        first = self._next.get(repository, 1)
        held = self._held.setdefault(repository, {})
        for event in events:
            sequence = event.server_sequence
            if sequence is None or sequence < first:
                continue  # broadcast already
            # The connection that stored it is remembered, whichever came first.
            if origin is not None or sequence not in held:
                held[sequence] = (event, origin)
        if not held:
            del self._held[repository]

    def _release(self, repository: str) -> None:
        held = self._held.get(repository)
        if not held:
            return
        sequence = self._next.get(repository, 1)
        run: list[tuple[SyncEvent, Peer | None]] = []
        while (entry := held.pop(sequence, None)) is not None:
            run.append(entry)
            sequence += 1
        if not held:
            del self._held[repository]
        if not run:
            return
        self._next[repository] = sequence
        for origin, group in itertools.groupby(run, key=lambda entry: entry[1]):
            self._hub.broadcast(origin, repository, tuple(event for event, _ in group))
