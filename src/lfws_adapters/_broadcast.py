"""One publisher, many subscribers: an anyio memory object stream per subscriber.

A subscriber that reads slowly must never hold up the publisher (the sync
session publishes from its own callbacks). So each subscription has a bounded
buffer, and when it is full the *oldest* item is dropped to make room: a
watcher always ends up seeing the latest state, and :attr:`Subscription.dropped`
says how much it missed.
"""

from __future__ import annotations

import logging
import weakref
from types import TracebackType
from typing import Generic, TypeVar

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from lfws_core.errors import LocalProtocolError

__all__ = ["Broadcast", "Subscription"]

logger = logging.getLogger("lfws.client")

T = TypeVar("T")


class Subscription(Generic[T]):
    """What one subscriber reads: an async iterator, also an async context manager.

    Iteration ends once the publisher is closed and the buffer is read; use
    ``async with`` (or :meth:`aclose`) to unsubscribe earlier.
    """

    def __init__(self, buffer: int, name: str) -> None:
        send, receive = anyio.create_memory_object_stream[T](buffer)
        self._send: MemoryObjectSendStream[T] = send
        self._receive: MemoryObjectReceiveStream[T] = receive
        self._name = name
        self.dropped = 0
        """How many items were dropped because this subscriber fell behind."""

    def offer(self, item: T) -> None:
        """Buffer ``item``, dropping the oldest one if the buffer is full."""
        try:
            self._send.send_nowait(item)
        except anyio.WouldBlock:
            # Full, so nobody is waiting in receive(): the oldest can go.
            self._receive.receive_nowait()
            self._send.send_nowait(item)
            if not self.dropped:
                logger.warning(
                    "%s: a subscriber falls behind; dropping its oldest items", self._name
                )
            self.dropped += 1
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass  # unsubscribed meanwhile

    def end(self) -> None:
        """Let iteration finish once the buffer is read."""
        self._send.close()

    def __aiter__(self) -> Subscription[T]:
        return self

    async def __anext__(self) -> T:
        try:
            return await self._receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            self._receive.close()
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        """Unsubscribe: iteration ends at once."""
        self._send.close()
        self._receive.close()

    async def __aenter__(self) -> Subscription[T]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __del__(self) -> None:
        # A subscription dropped without being closed would make anyio warn
        # about its unclosed streams.
        self._send.close()
        self._receive.close()


class Broadcast(Generic[T]):
    """Hands every published item to every live subscription (see the module doc)."""

    def __init__(self, name: str) -> None:
        self._name = name
        # Weak: a subscription the app dropped unsubscribes itself.
        self._subscriptions: weakref.WeakSet[Subscription[T]] = weakref.WeakSet()
        self._closed = False

    def subscribe(self, buffer: int) -> Subscription[T]:
        """Return a new subscription that sees what is published from now on."""
        if isinstance(buffer, bool) or not isinstance(buffer, int) or buffer < 1:
            raise LocalProtocolError(f"the buffer must be an int >= 1, not {buffer!r}")
        subscription = Subscription[T](buffer, self._name)
        if self._closed:
            subscription.end()
        else:
            self._subscriptions.add(subscription)
        return subscription

    def publish(self, item: T) -> None:
        """Offer ``item`` to every subscription; never blocks."""
        for subscription in list(self._subscriptions):
            subscription.offer(item)

    def close(self) -> None:
        """End every subscription (after what it buffered) and every later one."""
        self._closed = True
        for subscription in list(self._subscriptions):
            subscription.end()
        self._subscriptions.clear()
