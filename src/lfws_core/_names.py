"""What an event id, a document id or a repository name may not contain.

Stores key their rows by these strings, and some characters that JSON and
Python strings carry cannot be stored: PostgreSQL refuses NUL in text, and a
lone surrogate has no UTF-8 form, so SQLite's driver cannot even encode it.
An event carrying one would fail on every resend, so lfws refuses such names
where they come in: in the decoder and in ``ClientSession.push``.
"""

from __future__ import annotations

__all__ = ["name_fault"]


def name_fault(value: str) -> str | None:
    """Return what makes ``value`` unfit for an id or a name (``must not ...``), or None."""
    if "\x00" in value:
        return "must not contain NUL characters"
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "must not contain lone surrogates"
    return None
