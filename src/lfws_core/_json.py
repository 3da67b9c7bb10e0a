"""JSON backends: one strict grammar, a fast parser and a reference parser.

Every backend accepts exactly the same texts and returns the same values:
RFC 8259 JSON in UTF-8 without a byte order mark, no NaN or Infinity, no lone
surrogates (raw or escaped), integers within the 64-bit signed range, at most
``MAX_DEPTH`` nested containers. Duplicate keys are accepted and the last one
wins, as in Dart's ``jsonDecode``: orjson keeps no trace of them, and finding
them would mean tokenising every message in Python. For the same reason a
value that a later duplicate replaces is discarded unchecked (the limits
apply to the message as decoded), except that it must still be JSON.

Each backend parses with its fast parser, then one walk over the result
checks the depth and integer limits. Whenever the fast parser fails, the walk
finds a fault, or it meets a float that may be an integer literal in disguise
(orjson turns integers beyond 64 bits into floats), the reference parser (the
stdlib one, with hooks) decides, and gives the precise reason. So reasons are
the same whichever backend parsed, and only doubtful input is parsed twice.

Output is compact, non-ASCII is written as is, and floats are written the way
orjson writes them, so both backends produce the same text.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import InvalidMessage, LocalProtocolError

MAX_DEPTH = 64
"""How many containers a message may nest, the top-level object included."""

_MIN_INT = -(2**63)
_MAX_INT = 2**63 - 1
# orjson parses integer literals outside 64 bits as floats, all of them at least this large.
_BIG_FLOAT = 2.0**63

_TOO_DEEP = f"nesting deeper than {MAX_DEPTH} levels"
_INT_OUT_OF_RANGE = "integer outside the 64-bit signed range"
_LONE_SURROGATE = "lone surrogate in a string"


@dataclass(frozen=True, kw_only=True, slots=True)
class JsonBackend:
    """A JSON parser and serializer pair with one behaviour whatever the library.

    ``loads`` accepts exactly one strict grammar (RFC 8259 in UTF-8 without a
    BOM; no NaN or Infinity; no lone surrogates; integers within 64 bits; at
    most :data:`MAX_DEPTH` nested containers; the last of duplicate keys
    wins) and raises :class:`~lfws_core.errors.InvalidMessage`, and nothing
    else, for any other text. ``dumps`` writes compact JSON with non-ASCII as is and floats as
    orjson writes them; it raises :class:`~lfws_core.errors.LocalProtocolError`
    for what the library cannot serialize (a set, say). It does not hold the
    value to the grammar: a NaN, an integer beyond 64 bits, a non-string key
    or deep nesting may be written, refused or written differently by each
    library.
    """

    name: str
    loads: Callable[[str | bytes], object]
    dumps: Callable[[object], str]
    parse: Callable[[str | bytes], object] | None = None
    """The fast parser alone, or ``None``: for a caller that enforces the limits itself.

    It may raise ``ValueError`` or ``RecursionError`` for what ``loads``
    refuses, and returns what ``loads`` does for what it accepts, except
    that the depth and integer limits are not checked and a float may stand
    for an integer too large for 64 bits. See :func:`within_limits`.
    """


# --- parsing -----------------------------------------------------------------


class _Refused:
    """A literal the grammar refuses, left in place by the reference parser.

    A later duplicate key may still replace it: only one that stays in the
    decoded value makes the text invalid, so that the reference parser agrees
    with the fast ones, which keep no trace of a replaced value.
    """

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


def _scan(container: dict[str, Any] | list[Any], depth: int) -> bool:
    """Enforce the depth and integer limits below ``container``.

    Returns whether a float needs a second look: NaN, an infinity, or one as
    large as a 64-bit integer. Raises the reason of a refused literal.
    """
    if depth > MAX_DEPTH:
        raise InvalidMessage(_TOO_DEEP)
    suspicious = False
    # Exact type checks, most frequent first: this walk is on the hot path.
    for item in container.values() if isinstance(container, dict) else container:
        kind = type(item)
        if kind is str:
            continue
        if kind is int:
            if not _MIN_INT <= item <= _MAX_INT:
                raise InvalidMessage(_INT_OUT_OF_RANGE)
        elif kind is dict or kind is list:
            suspicious |= _scan(item, depth + 1)
        elif kind is float:
            if not -_BIG_FLOAT < item < _BIG_FLOAT:
                suspicious = True
        elif kind is _Refused:
            raise InvalidMessage(item.reason)
    return suspicious


def _needs_reference_parse(value: object) -> bool:
    return _scan([value], 0)


def within_limits(container: dict[str, Any] | list[Any], depth: int) -> bool:
    """Whether what ``parse`` returned below ``container`` is sure to pass ``loads``.

    ``depth`` counts ``container`` itself (the top-level value is at depth 1).
    False when a limit is broken or a float is in doubt: only ``loads`` can
    then say whether the text is valid, and why not.
    """
    try:
        return not _scan(container, depth)
    except InvalidMessage:
        return False


def _reject_constant(name: str) -> _Refused:
    return _Refused(f"{name} is not valid JSON (numbers must be finite)")


def _parse_int(literal: str) -> int | _Refused:
    # Counting digits first keeps int() away from huge literals.
    if len(literal) - literal.startswith("-") > 19:
        return _Refused(_INT_OUT_OF_RANGE)
    value = int(literal)
    if not _MIN_INT <= value <= _MAX_INT:
        return _Refused(_INT_OUT_OF_RANGE)
    return value


def _parse_float(literal: str) -> float | _Refused:
    value = float(literal)
    if math.isinf(value):
        return _Refused(f"number {literal[:40]} is too large for a float")
    return value


_STRICT_DECODER = json.JSONDecoder(
    parse_constant=_reject_constant, parse_int=_parse_int, parse_float=_parse_float
)
_DECODER = json.JSONDecoder()
_ENCODER = json.JSONEncoder(
    ensure_ascii=False, check_circular=False, allow_nan=False, separators=(",", ":")
)


def _text(data: str | bytes) -> str:
    if isinstance(data, str):
        text = data
    else:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidMessage(f"not valid UTF-8 (byte {exc.start})") from None
    if text.startswith("\ufeff"):
        raise InvalidMessage("starts with a byte order mark (BOM)")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidMessage(f"{_LONE_SURROGATE} (character {exc.start})") from None
    return text


def _syntax_error(text: str, exc: json.JSONDecodeError) -> InvalidMessage:
    if not text.strip(" \t\n\r"):
        return InvalidMessage("empty message")
    where = f"line {exc.lineno} column {exc.colno}"
    if exc.msg == "Extra data":
        return InvalidMessage(f"trailing data after the JSON value at {where}")
    return InvalidMessage(f"not valid JSON: {exc.msg} at {where}")


def _reject_escaped_surrogates(value: object) -> None:
    # The stdlib decodes a lone "\ud800" escape into a lone surrogate; such a
    # string cannot be encoded as UTF-8, which is a cheap way to find one.
    try:
        _ENCODER.encode(value).encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidMessage(_LONE_SURROGATE) from None


def _reference_loads(data: str | bytes) -> object:
    """Parse by the book with the stdlib, raising the precise reason."""
    text = _text(data)
    try:
        value = _STRICT_DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise _syntax_error(text, exc) from None
    except RecursionError:
        raise InvalidMessage(_TOO_DEEP) from None
    _needs_reference_parse(value)
    _reject_escaped_surrogates(value)
    return value


def _strict(parse: Callable[[str | bytes], object]) -> Callable[[str | bytes], object]:
    """Hold a fast parser to the grammar; when in doubt, the reference parser decides."""

    def loads(data: str | bytes) -> object:
        try:
            value = parse(data)
            if not _needs_reference_parse(value):
                return value
        except (ValueError, RecursionError, InvalidMessage):
            pass
        # Every reason comes from here, so both backends give the same one.
        return _reference_loads(data)

    return loads


def _stdlib_parse(data: str | bytes) -> object:
    text = data if isinstance(data, str) else data.decode("utf-8")
    if not text.isascii():
        text.encode("utf-8")  # raises on a raw lone surrogate
    value = _DECODER.decode(text)
    if "\\ud" in text or "\\uD" in text:
        _ENCODER.encode(value).encode("utf-8")  # raises on an escaped lone surrogate
    return value


# --- serializing ---------------------------------------------------------------

# repr() writes exponents -5 to -9 as "1e-05"; orjson as "0.00001" and "1e-7".
_REPR_SMALL_EXPONENT = re.compile(r"(?<=[0-9])e-0[5-9]")


def _float_text(value: float) -> str:
    """Write ``value`` as orjson does: repr(), except for exponents -5 to -9."""
    text = repr(value)
    mantissa, small, exponent = text.partition("e-0")
    if not small:
        return text
    if exponent != "5":
        return f"{mantissa}e-{exponent}"
    sign = "-" if mantissa.startswith("-") else ""
    return f"{sign}0.0000{mantissa.lstrip('-').replace('.', '')}"


def _dumps_by_hand(value: object) -> str:
    """Serialize like ``_ENCODER``, but with orjson's float format."""
    if isinstance(value, float):
        return _float_text(value)
    if isinstance(value, dict):
        if not all(isinstance(key, str) for key in value):
            raise TypeError("keys must be str")
        members = (f"{_ENCODER.encode(key)}:{_dumps_by_hand(item)}" for key, item in value.items())
        return "{" + ",".join(members) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(map(_dumps_by_hand, value)) + "]"
    return _ENCODER.encode(value)


def _stdlib_dumps(value: object) -> str:
    try:
        text = _ENCODER.encode(value)
        # Small floats are rare; only then is the slow way needed.
        if "e-0" in text and _REPR_SMALL_EXPONENT.search(text):
            return _dumps_by_hand(value)
    except (TypeError, ValueError, RecursionError) as exc:
        raise LocalProtocolError(f"cannot encode as JSON: {exc}") from None
    return text


STDLIB_JSON = JsonBackend(
    name="json", loads=_strict(_stdlib_parse), dumps=_stdlib_dumps, parse=_stdlib_parse
)
"""The backend on the standard library's :mod:`json`; always available."""


def _orjson_backend() -> JsonBackend | None:
    try:
        import orjson
    except ImportError:
        return None

    def dumps(value: object) -> str:
        try:
            return orjson.dumps(value).decode("utf-8")
        except TypeError as exc:  # orjson.JSONEncodeError
            raise LocalProtocolError(f"cannot encode as JSON: {exc}") from None

    return JsonBackend(name="orjson", loads=_strict(orjson.loads), dumps=dumps, parse=orjson.loads)


ORJSON = _orjson_backend()
"""The backend on orjson (``pip install lfws[fast]``), or ``None`` without it."""

DEFAULT_BACKEND = ORJSON or STDLIB_JSON
"""orjson when it is installed, else the standard library."""
