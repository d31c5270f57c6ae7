"""Masking of secrets in text, ``sys.argv`` and ``extra`` values, before they are mailed.

Alert mails and ``postbud run`` reports carry log messages, tracebacks, command lines
and ``extra`` fields, any of which may hold a password. This module masks the values
of secret-looking keys (password, token, secret, authorization, cookie, api_key…) in
mappings at any depth and in ``key=value`` text, credentials after ``Bearer``, and the
passwords of URLs; it also makes text a mail can carry (``clean``).
"""

from __future__ import annotations

import base64
import functools
import re
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "MASK",
    "clean",
    "clip",
    "known_secrets",
    "mask_argv",
    "mask_known",
    "mask_text",
    "mask_value",
    "secret_name",
]

MASK = "********"

# One list of secret words, for keys (``extra``, dicts, options) and for free text.
_WORDS = (
    r"pass(?:word|wd|phrase)?|pwd|token|secret|authori[sz]ation|cookie|api[-_]?key|"
    r"credential|private[-_]?key|session|signature|csrf|xsrf|cvv|cvc|iban"
)
# Keys whose values are never shown (also ``auth``, ``sig``, ``otp``, ``pin``, ``ssn``
# and ``card`` as whole parts of a key: "X-Auth-Token", "card_number", not "author").
_SECRET_KEY = re.compile(
    rf"{_WORDS}|(?:^|[-_])(?:auth|sig|otp|pin|ssn|card)(?:$|[-_])", re.IGNORECASE
)
# ``password=hunter2``, ``"token": "abc"``, ``X-Amz-Signature=…`` inside any text.
_INLINE = re.compile(
    # Bounded, and anchored where a key can start: unbounded [\w-]* before the words
    # made a long run of letters (a hex dump) take seconds.
    rf"(?<![\w-])(?P<key>[\"']?[\w-]{{0,40}}?(?:{_WORDS}|sig)[\w-]{{0,40}}[\"']?)"
    r"(?P<sep>\s*[=:]\s*)"
    # The value: quoted; or an app password as Google shows it, four groups of four
    # letters with spaces (all of it, not only the first group); or up to a separator.
    r"(?P<value>\"[^\"]*\"|'[^']*'|[a-z]{4}(?:[ \t][a-z]{4}){3}(?![\w-])"
    r"|[^\s&;,'\"}\])]+)",
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


def secret_name(name: str) -> bool:
    """Whether a key, option, header or form field called ``name`` holds a secret."""
    return _SECRET_KEY.search(name) is not None


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


# -- the secrets postbud knows ----------------------------------------------------------

#: Shorter values are not masked on their own: they would hide ordinary words.
MIN_SECRET = 6


def known_secrets(values: Iterable[str], username: str = "") -> re.Pattern[str] | None:
    """One pattern for every spelling of these secrets that may reach a text.

    Each value as it is, with or without the spaces Google shows in app passwords
    (``abcd efgh ijkl mnop``), and base64 as the SASL exchanges send it (AUTH PLAIN
    ``\\0user\\0secret``, AUTH LOGIN, XOAUTH2), in any case: a server that echoes a
    line upper-cased still gets it masked. None when there is nothing to mask.
    """
    return _pattern(tuple(sorted({v for v in values if v})), username)


@functools.lru_cache(maxsize=32)
def _pattern(values: tuple[str, ...], username: str) -> re.Pattern[str] | None:
    spellings: set[str] = set()
    for value in values:
        bare = "".join(value.split())
        if len(bare) < MIN_SECRET:
            continue
        # Any whitespace between the characters: "abcd efgh ijkl mnop" and its groups.
        spellings.add(r"\s?".join(re.escape(c) for c in bare))
        for sasl in (
            bare,
            f"\0{username}\0{bare}",
            f"user={username}\x01auth=Bearer {bare}\x01\x01",
        ):
            encoded = base64.b64encode(sasl.encode("utf-8", "replace")).decode("ascii")
            spellings.add(re.escape(encoded.rstrip("=")))
    if not spellings:
        return None
    # Longest first, so that a whole spelling is masked rather than a part of it.
    ordered = sorted(spellings, key=len, reverse=True)
    return re.compile("|".join(ordered), re.IGNORECASE)


def mask_known(text: str, secrets: re.Pattern[str] | None) -> str:
    """``text`` with every spelling of the known secrets masked."""
    return text if secrets is None else secrets.sub(MASK, text)
