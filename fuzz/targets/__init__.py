"""The fuzz targets: each takes any ``bytes`` and fails only on a finding.

A finding is any exception: an ``AssertionError`` from a target's checks, or
anything lfws raised that it documents it never raises. Targets run in a
few milliseconds (an input that takes long is a finding too, for libFuzzer's
``-timeout``). See each module for what its target checks.
"""

from __future__ import annotations

from collections.abc import Callable

from .client import fuzz_client_connection, fuzz_client_session
from .codec import fuzz_decode
from .server import fuzz_server_connection, fuzz_server_session
from .ws import fuzz_ws_client, fuzz_ws_server

__all__ = ["TARGETS"]

TARGETS: dict[str, Callable[[bytes], None]] = {
    "decode": fuzz_decode,
    "ws_server": fuzz_ws_server,
    "ws_client": fuzz_ws_client,
    "server_session": fuzz_server_session,
    "server_connection": fuzz_server_connection,
    "client_session": fuzz_client_session,
    "client_connection": fuzz_client_connection,
}
"""Every target by name (the name of its corpus directory too)."""
