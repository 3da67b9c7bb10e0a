"""One Autobahn verdict per case, and the per-runtime tally shown after the run."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

OK = "OK"
NON_STRICT = "NON-STRICT"
INFORMATIONAL = "INFORMATIONAL"
UNIMPLEMENTED = "UNIMPLEMENTED"
FAILED = "FAILED"
VERDICTS = (OK, NON_STRICT, INFORMATIONAL, UNIMPLEMENTED, FAILED)

TALLY = pytest.StashKey[dict[str, Counter[str]]]()


def verdict(result: Any) -> str:
    """Autobahn's summary label for a kosoku ``CaseResult``.

    A case passes when both its message exchange and its closing handshake
    are acceptable. Anything else is FAILED, including a case kosoku could not
    run (ERROR) and a wrong close code or unclean close after a good exchange.
    """
    behavior = str(result.behavior.value)
    if result.passed or behavior == UNIMPLEMENTED:
        return behavior
    return FAILED


def record_counts(config: pytest.Config, runtime: str, counts: Counter[str]) -> None:
    config.stash.setdefault(TALLY, {})[runtime] = counts


def summary_lines(config: pytest.Config) -> list[str]:
    tally = config.stash.get(TALLY, {})
    return [
        f"{runtime}: " + ", ".join(f"{name} {counts[name]}" for name in VERDICTS)
        for runtime, counts in tally.items()
    ]
