"""A wrapper that keeps passwords and tokens out of reprs, logs and tracebacks.

Settings, credentials and errors hold secrets only as ``Secret``; the plain value is
read with ``reveal()`` at the last moment (building the AUTH line), so a stray
``repr(settings)`` or ``logger.debug("%s", mailer)`` never prints it.
"""

from __future__ import annotations

import hmac

REDACTED = "********"


class Secret:
    """A string whose ``repr`` and ``str`` are redacted."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """Return the plain value. Call it only where the value goes on the wire."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret('{REDACTED}')"

    def __str__(self) -> str:
        return REDACTED

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> tuple[type[Secret], tuple[str]]:
        return (Secret, (self._value,))


def as_secret(value: str | Secret | None) -> Secret | None:
    """Wrap a plain string (``None`` and empty strings stay ``None``)."""
    if value is None or isinstance(value, Secret):
        return value or None
    return Secret(value) if value else None


# Invisible characters a copy from a web page may carry along with the letters (zero-width
# spaces and joiners, the word joiner, a byte-order mark); whitespace, U+00A0 included,
# is removed by str.split().
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff"))


def bare_password(value: str) -> tuple[str, bool]:
    """An app password as Gmail takes it, and whether it was in quotes.

    Without one pair of surrounding quotes (``'...'`` or ``"..."``: Docker's
    ``--env-file`` keeps them) and without any whitespace or invisible
    character inside (Google shows ``abcd efgh ijkl mnop``; a browser copy may bring
    non-breaking or zero-width spaces). ``Settings`` warns about the quotes.
    """
    value = value.strip()
    quoted = len(value) >= 2 and value[0] == value[-1] and value[0] in "'\""
    if quoted:
        value = value[1:-1]
    return "".join(value.translate(_INVISIBLE).split()), quoted
