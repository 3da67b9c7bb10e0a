"""A test kit for lfws users and for lfws itself, pure like the rest of the core.

* :class:`SplitMix64` — a seeded random source (the core takes randomness as
  an injected callable; this one is reproducible).
* :class:`MemoryEventLog` — the server's event log in memory: dedupe by event
  id, a ``serverSequence`` per repository, fetch by cursor.
* :class:`MemoryReplica` — a client's local store in memory: documents merged
  by the core's last-writer-wins rule, and an outbox of unsynced events.
* :class:`ClientServerPair` — clients and a server joined by in-memory
  byte transports on a fake clock, answering from a :class:`MemoryEventLog`
  (:class:`PairClient` and :class:`ByteLink` are its parts).
* :mod:`lfws_core.testing.simulation` — the deterministic simulation: several
  clients and a server on a faulty network with a virtual clock.
"""

from __future__ import annotations

from .memory_log import MemoryEventLog
from .pair import ByteLink, ClientServerPair, PairClient
from .prng import SplitMix64
from .replica import MemoryReplica

__all__ = [
    "ByteLink",
    "ClientServerPair",
    "MemoryEventLog",
    "MemoryReplica",
    "PairClient",
    "SplitMix64",
]
