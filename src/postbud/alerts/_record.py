"""What the alert handler keeps of a log record: a fingerprint and a masked description.

The fingerprint is computed on the caller's thread for every record, so it is a few
dictionary lookups: the exception type, the innermost frame of the user's own code
(outside the stdlib and site-packages, else the innermost frame), and the message
template (``record.msg`` before ``%`` arguments), so "user 17 failed" and "user 18
failed" logged as ``log.error("user %s failed", uid)`` are one error. With no
exception, ``record.pathname:lineno`` stands in for the frame.

The description (text for the mail) is built later, on the handler's own thread. It
masks the values of secret-looking keys in ``extra`` fields and in ``sys.argv``, and
``key=value`` pairs and URL passwords anywhere in the text, before it is stored or sent.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import re
import site
import socket
import sys
import sysconfig
import traceback
from collections.abc import Mapping
from typing import Any

__all__ = ["Fingerprint", "describe", "digest_key", "fingerprint", "mask_argv", "mask_text"]

Fingerprint = tuple[str, str, int, str]
MASK = "********"
#: How much of a traceback, a stack or one extra value goes into a mail.
MAX_TRACEBACK = 20_000
MAX_VALUE = 1_000

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

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
}


@functools.lru_cache(maxsize=1)
def _library_roots() -> tuple[str, ...]:
    # Asked when the first exception is fingerprinted, not at ``import postbud``.
    roots = {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    try:
        roots.update(site.getsitepackages())
        roots.add(site.getusersitepackages())
    except AttributeError:  # pragma: no cover - some embedded or virtualenv builds
        pass
    return tuple(os.path.join(os.path.normcase(r), "") for r in roots if r)


_is_library_cache: dict[str, bool] = {}
# "CPython 3.11.7", without importing ``platform`` (it costs ``import postbud`` 1 ms).
_PYTHON = f"{sys.implementation.name.replace('cpython', 'CPython')} {sys.version.split()[0]}"


def _is_library(filename: str) -> bool:
    known = _is_library_cache.get(filename)
    if known is None:
        known = filename.startswith("<") or os.path.normcase(filename).startswith(_library_roots())
        if len(_is_library_cache) > 10_000:
            _is_library_cache.clear()
        _is_library_cache[filename] = known
    return known


def fingerprint(record: logging.LogRecord) -> Fingerprint:
    """(exception type, file, line, template) identifying "the same error"."""
    template = record.msg if isinstance(record.msg, str) else str(record.msg)
    exc_info = record.exc_info
    if exc_info and exc_info[0] is not None:
        etype, tb = exc_info[0], exc_info[2]
        mine: tuple[str, int] | None = None
        last: tuple[str, int] | None = None
        while tb is not None:
            filename = tb.tb_frame.f_code.co_filename
            last = (filename, tb.tb_lineno)
            if not _is_library(filename):
                mine = last
            tb = tb.tb_next
        where = mine or last or (record.pathname, record.lineno)
        return (f"{etype.__module__}.{etype.__qualname__}", where[0], where[1], template)
    return ("", record.pathname, record.lineno, template)


def digest_key(fp: Fingerprint) -> str:
    """A short stable name for a fingerprint (the spool's key; shown in mails)."""
    return hashlib.sha1(repr(fp).encode(), usedforsecurity=False).hexdigest()[:16]


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


def _value(key: str, value: Any) -> str:
    return _clip(_shown(key, value, 0, set()), MAX_VALUE)


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


def _clip(text: str, limit: int, *, keep_end: bool = False) -> str:
    if len(text) <= limit:
        return text
    if keep_end:  # a traceback's last lines are the ones that matter
        return "… (cut) …\n" + text[-limit:]
    return text[:limit] + " … (cut)"


@functools.lru_cache(maxsize=1)
def _hostname() -> str:
    return socket.gethostname()


def describe(record: logging.LogRecord, message: str, at: float) -> dict[str, Any]:
    """Everything the mail shows about one occurrence, masked, as JSON-able values."""
    exc_info = record.exc_info
    trace = ""
    exc_type = ""
    if exc_info and exc_info[0] is not None:
        exc_type = exc_info[0].__name__
        trace = record.exc_text or "".join(traceback.format_exception(*exc_info))
    extras = {
        clean(str(k)): _value(str(k), v) for k, v in vars(record).items() if k not in _STANDARD
    }
    return {
        "message": mask_text(_clip(message, MAX_TRACEBACK)),
        "level": clean(str(record.levelname)),
        "logger": clean(str(record.name)),
        "at": at,
        "where": clean(f"{record.pathname}:{record.lineno} in {record.funcName}"),
        "host": _hostname(),
        "pid": record.process,
        "process": clean(str(record.processName or "")),
        "thread": clean(str(record.threadName or "")),
        "argv": " ".join(mask_argv(list(sys.argv))),
        "python": _PYTHON,
        "exc_type": clean(exc_type),
        "traceback": mask_text(_clip(trace, MAX_TRACEBACK, keep_end=True)),
        "stack": mask_text(_clip(record.stack_info or "", MAX_TRACEBACK, keep_end=True)),
        "extra": extras,
    }
