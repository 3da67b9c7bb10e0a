"""The JSON library every peer of lfws uses: the one lfws uses (orjson when installed).

The peers then differ from lfws in their sync layer only, not in their JSON.
"""

from __future__ import annotations

import json
from typing import Any

try:
    import orjson
except ImportError:  # the "fast" extra is missing: everyone falls back alike
    orjson = None  # type: ignore[assignment]

LIBRARY = "orjson" if orjson is not None else "json"


def dumps(value: Any) -> bytes:
    """Encode ``value`` as compact UTF-8 JSON."""
    if orjson is not None:
        return orjson.dumps(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def dumps_text(value: Any) -> str:
    """Encode ``value`` as compact JSON text (for a WebSocket text frame)."""
    return dumps(value).decode()


def loads(data: bytes | str) -> Any:
    """Decode one JSON document."""
    if orjson is not None:
        return orjson.loads(data)
    return json.loads(data)
