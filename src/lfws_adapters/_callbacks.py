"""Calling the app's callbacks: plain or async, and never fatal to sync."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from .auth import resolve

__all__ = ["call_logged"]

logger = logging.getLogger("lfws.client")

T = TypeVar("T")


async def call_logged(
    what: str, callback: Callable[..., T | Awaitable[T]], *args: object
) -> T | None:
    """Return ``callback(*args)``, awaited if it is awaitable; log an exception and return None."""
    try:
        return await resolve(callback(*args))
    except Exception:
        logger.exception("%s failed; sync goes on without it", what)
        return None
