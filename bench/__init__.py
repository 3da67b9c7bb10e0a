"""The lfws benchmark suite: lfws against a `websockets` peer and the raw ceiling.

Run ``python -m bench`` (``--quick`` for a smoke run, ``--json PATH`` to keep
every figure, ``--only NAME`` for one scenario). Every scenario runs lfws and
its peers in one process run, interleaved round by round, and reports
medians and ratios; see ``docs/performance.md``.
"""
