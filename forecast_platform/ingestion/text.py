"""Bounded quotes: an error text never copies a whole offending value.

A landed value or line can be megabytes (a runaway export, a binary file read as text); quoting
it whole in a reason, a check's metadata or an exception would copy it into the warehouse, the
Dagster event log and every alert. Reasons quote at most ``QUOTE_LIMIT`` characters of it and
say how long it was.
"""

from __future__ import annotations

QUOTE_LIMIT = 120  # characters of an offending value a reason quotes
MESSAGE_LIMIT = 400  # characters of a whole reason or foreign error message


def clip(value: object, limit: int = QUOTE_LIMIT) -> str:
    """``repr`` of a value's text, cut to ``limit`` characters with its full length said."""
    text = str(value)
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text):,} characters)"


def clip_message(message: str, limit: int = MESSAGE_LIMIT) -> str:
    """A message cut to ``limit`` characters (a foreign library's error, a reason)."""
    message = " ".join(str(message).split())
    return message if len(message) <= limit else message[: limit - 14] + " ... (cut)"
