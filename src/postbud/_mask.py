"""Masking of secrets in text, ``sys.argv`` and ``extra`` values, before they are mailed.

Alert mails and ``postbud run`` reports carry log messages, tracebacks, command lines
and ``extra`` fields, any of which may hold a password. This module masks the values
of secret-looking keys (password, token, secret, authorization, cookie, api_key…) in
mappings at any depth and in ``key=value`` text, credentials after ``Bearer``, and the
passwords of URLs; it also makes text a mail can carry (``clean``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["MASK", "clean", "clip", "mask_argv", "mask_text", "mask_value"]

MASK = "********"

# One list of secret words, for keys (``extra``, dicts, options) and for free text.
_WORDS = (
    r"pass(?:word|wd|phrase)?|pwd|token|secret|authori[sz]ation|cookie|api[-_]?key|"
    r"credential|private[-_]?key|session|signature"
)
# Keys whose values are never shown (also ``auth``, ``sig`` as whole parts of a key).
_SECRET_KEY = re.compile(rf"{_WORDS}|(?:^|[-_])(?:auth|sig)(?:$|[-_])", re.IGNORECASE)
# ``password=hunter2``, ``"token": "abc"``, ``X-Amz-Signature=…`` inside any text.
_INLINE = re.compile(
    # Bounded, and anchored where a key can start: unbounded [\w-]* before the words
    # made a long run of letters (a hex dump) take seconds.
    rf"(?<![\w-])(?P<key>[\"']?[\w-]{{0,40}}?(?:{_WORDS}|sig)[\w-]{{0,40}}[\"']?)"
    r"(?P<sep>\s*[=:]\s*)"
    r"(?P<value>\"[^\"]*\"|'[^']*'|[^\s&;,'\"}\])]+)",
    re.IGNORECASE,
)
# ``Authorization: Bearer abc…``: the scheme is no secret, the credential after it is.
_SCHEME = re.compile(r"\b(?P<scheme>Bearer|Basic|Digest)\s+[\w.~+/=-]{6,}", re.IGNORECASE)
# ``scheme://user:password@host`` and ``redis://:password@host``
_URL_PASSWORD = re.compile(
    r"(?<![a-z0-9+.-])(?P<head>[a-z][a-z0-9+.-]{0,30}://[^/\s:@]{0,200}:)[^/\s@]{1,500}(?=@)",
    re.IGNORECASE,
)
# What a mail cannot carry: NUL and other control characters (tab and newline stay).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def clean(text: str) -> str:
    """Text a mail can carry: lone surrogates escaped, control characters replaced."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a file name that was not UTF-8, say
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return _CONTROL.sub("\ufffd", text)


def mask_text(text: str) -> str:
    """Mask ``password=…``-style pairs, credentials after ``Bearer`` and URL passwords."""
    text = _SCHEME.sub(lambda m: f"{m['scheme']} {MASK}", clean(text))
    text = _INLINE.sub(lambda m: f"{m['key']}{m['sep']}{MASK}", text)
    return _URL_PASSWORD.sub(lambda m: f"{m['head']}{MASK}", text)


def mask_argv(argv: list[str]) -> list[str]:
    """``sys.argv`` with the values of secret-looking options masked.

    ``--password=x`` and ``--password x`` (the value is the next item) both become
    ``--password=********`` / ``--password ********``.
    """
    masked: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            masked.append(MASK)
            hide_next = False
            continue
        name, eq, _ = arg.partition("=")
        if arg.startswith("-") and _SECRET_KEY.search(name.lstrip("-")):
            if eq:
                masked.append(f"{name}={MASK}")
            else:
                masked.append(arg)
                hide_next = True
            continue
        masked.append(mask_text(arg))
    return masked


def mask_value(key: str, value: Any, limit: int) -> str:
    """``value`` as text (at most ``limit`` characters) with its secrets masked."""
    return clip(_shown(key, value, 0, set()), limit)


def _shown(key: str, value: Any, depth: int, seen: set[int]) -> str:
    """``value`` as text with secrets masked: keys of mappings at any depth, and
    ``(name, value)`` pairs in lists (HTTP headers); free text by ``mask_text``."""
    if _SECRET_KEY.search(key):
        return MASK
    nested = isinstance(value, (Mapping, list, tuple, set, frozenset))
    if nested and (depth >= 20 or id(value) in seen):
        return "…"
    if isinstance(value, Mapping):
        seen.add(id(value))
        items = list(value.items())[:100]
        inner = ", ".join(f"{k!r}: {_shown(str(k), v, depth + 1, seen)}" for k, v in items)
        return "{" + inner + (", …" if len(value) > 100 else "") + "}"
    if isinstance(value, (list, tuple, set, frozenset)):
        seen.add(id(value))
        items = list(value)[:100]
        if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str):
            return f"({value[0]!r}, {_shown(value[0], value[1], depth + 1, seen)})"
        inner = ", ".join(_shown("", v, depth + 1, seen) for v in items)
        more = ", …" if len(value) > 100 else ""
        return ("[" + inner + more + "]") if isinstance(value, list) else ("(" + inner + more + ")")
    try:
        text = value if isinstance(value, str) and not depth else repr(value)
    except Exception as exc:  # a broken __repr__ must not lose the alert
        text = f"<unprintable {type(value).__name__}: {type(exc).__name__}>"
    return mask_text(text)


def clip(text: str, limit: int, *, keep_end: bool = False) -> str:
    if len(text) <= limit:
        return text
    if keep_end:  # a traceback's last lines are the ones that matter
        return "… (cut) …\n" + text[-limit:]
    return text[:limit] + " … (cut)"
