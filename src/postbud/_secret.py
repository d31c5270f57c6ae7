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
