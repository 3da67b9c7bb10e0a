"""What an adapter provides to the shared server and client drivers.

The drivers in :mod:`lfws_adapters.hub` (server) and
:mod:`lfws_adapters.driver` (client) hold every bit of logic the runtimes
share: carrying out the core's actions, talking to stores and to the app.
Each runtime (asyncio, trio, anyio) supplies only these two small services,
so the adapters stay short and alike:

* a :class:`Loop`: the clock, one-shot timers, background tasks and events;
* a :class:`Link` per connection: write bytes, close, report the backlog
  and wait for it to drain.

Every callback the drivers receive from a runtime is synchronous and runs on
the event loop thread, like an ``asyncio.Protocol`` callback.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

__all__ = ["Event", "Link", "Loop", "PeerFactory", "TimerHandle", "TransportPeer"]


class TimerHandle(Protocol):
    """A scheduled call that can be cancelled."""

    def cancel(self) -> None:
        """Cancel the call if it has not run yet."""


class Event(Protocol):
    """A one-shot event of the runtime (``asyncio.Event``, ``trio.Event``, ``anyio.Event``)."""

    def set(self) -> None:
        """Wake every waiter, now and later."""

    async def wait(self) -> object:
        """Return once :meth:`set` was called."""


class Loop(Protocol):
    """Clock, timers and tasks of one event loop."""

    def time(self) -> float:
        """Return the loop's monotonic clock in seconds."""
        ...

    def call_at(self, when: float, callback: Callable[[], None]) -> TimerHandle:
        """Run ``callback`` on the loop at ``when`` (on :meth:`time`'s clock)."""
        ...

    def spawn(self, function: Callable[[], Awaitable[None]]) -> None:
        """Run ``function()`` as a background task owned by the server or client.

        The task must not raise: the drivers catch and log what they start.
        """
        ...

    def new_event(self) -> Event:
        """Return a new :class:`Event`: a long-lived task waits on one for work."""
        ...


class Link(Protocol):
    """One transport (TCP or TLS stream) as the drivers see it."""

    def write(self, data: bytes) -> None:
        """Queue ``data`` for sending; never blocks."""
        ...

    def close(self) -> None:
        """Flush what was queued, then close the transport (idempotent)."""
        ...

    def buffered(self) -> int:
        """Return how many written bytes are not yet handed to the OS."""
        ...

    async def drained(self) -> None:
        """Return once :meth:`buffered` is 0, or the transport is gone.

        The low-water mark is zero: the OS socket buffer, which keeps the
        pipe full meanwhile, is all the read-ahead a paced writer needs, and
        no setting has to know about any other.
        """
        ...


class TransportPeer(Protocol):
    """What a server runtime feeds for each accepted transport."""

    def data_received(self, data: bytes) -> None:
        """Take bytes read from the transport; ``b""`` is the end of input.

        The transport stays open for writing after the end of input (a
        client may half-close once its HTTP request is sent); the peer
        closes the link once it has nothing more to send.
        """

    def connection_lost(self, reason: str = "connection lost") -> None:
        """Report the transport closed or failed (the end, after any ``b""``)."""


class PeerFactory(Protocol):
    """Makes a peer per accepted transport: the sync hub, or the echo endpoint."""

    def connect(self, link: Link, name: str) -> TransportPeer:
        """Start serving ``link``; ``name`` (the peer address) is for logs."""
        ...
