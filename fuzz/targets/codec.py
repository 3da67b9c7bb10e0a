"""The message decoder: anything in, one message or ``InvalidMessage`` out.

Checked on every input, for ``bytes`` and for ``str`` (with lone surrogates
where the bytes are not UTF-8), on every installed JSON backend:

* ``decode_message`` raises ``InvalidMessage`` and nothing else;
* both backends give the same message or the same reason;
* a decoded message encodes, and the text decodes back to the same message
  (compared by ``repr``, so ``True`` and ``1`` stay apart), with the same
  text on every backend.
"""

from __future__ import annotations

from lfws_core.codec import ORJSON, STDLIB_JSON, JsonBackend, decode_message, encode_message
from lfws_core.errors import InvalidMessage

__all__ = ["fuzz_decode"]

BACKENDS: tuple[JsonBackend, ...] = (STDLIB_JSON,) if ORJSON is None else (STDLIB_JSON, ORJSON)


def _decode(data: str | bytes, backend: JsonBackend) -> tuple[str, str]:
    """Return ``("ok", repr, text)`` or ``("invalid", reason)`` as a comparable pair."""
    try:
        message = decode_message(data, backend=backend)
    except InvalidMessage as exc:
        return "invalid", exc.reason
    text = encode_message(message, backend=backend)
    again = decode_message(text, backend=backend)
    assert repr(again) == repr(message), f"round trip changed {message!r} into {again!r}"
    return repr(message), text


def fuzz_decode(data: bytes) -> None:
    for payload in (data, data.decode("utf-8", "surrogateescape")):
        results = {backend.name: _decode(payload, backend) for backend in BACKENDS}
        assert len(set(results.values())) == 1, f"backends disagree on {payload!r}: {results}"
