"""lfws_adapters: runtimes that wire :mod:`lfws_core` to sockets, timers and stores."""

from __future__ import annotations
