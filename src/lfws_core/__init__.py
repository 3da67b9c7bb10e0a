"""lfws_core: the sans-IO protocol core of lfws.

Pure state machines and codecs: no I/O, no clocks, no randomness. Time comes
in as ``now`` arguments, randomness from an injected source. Adapters (see
:mod:`lfws_adapters`) feed bytes and events in and carry out the actions out.
"""

from __future__ import annotations
