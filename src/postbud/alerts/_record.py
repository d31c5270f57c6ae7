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
import site
import socket
import sys
import sysconfig
import traceback
from collections.abc import Callable
from typing import Any

from postbud._mask import clean, clip, mask_argv, mask_text, mask_value

__all__ = ["Fingerprint", "describe", "digest_key", "fingerprint", "masked"]

Fingerprint = tuple[str, str, int, str]
#: How much of a traceback, a stack or one extra value goes into a mail.
MAX_TRACEBACK = 20_000
MAX_VALUE = 1_000

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


def masked(value: Any, mask: Callable[[str], str]) -> Any:
    """Every string inside ``value`` (a description: dicts, lists) passed through ``mask``
    (the secrets the Mailer knows, in every spelling)."""
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, dict):
        return {k: masked(v, mask) for k, v in value.items()}
    if isinstance(value, list):
        return [masked(v, mask) for v in value]
    return value


def _value(key: str, value: Any) -> str:
    return mask_value(key, value, MAX_VALUE)


@functools.lru_cache(maxsize=1)
def _hostname() -> str:
    return socket.gethostname()


@functools.lru_cache(maxsize=4)
def _argv(argv: tuple[str, ...]) -> str:
    """The command line, masked once (not per record: it rarely changes)."""
    return " ".join(mask_argv(list(argv)))


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
        "message": mask_text(clip(message, MAX_TRACEBACK)),
        "level": clean(str(record.levelname)),
        "logger": clean(str(record.name)),
        "at": at,
        "where": clean(f"{record.pathname}:{record.lineno} in {record.funcName}"),
        "host": _hostname(),
        "pid": record.process,
        "process": clean(str(record.processName or "")),
        "thread": clean(str(record.threadName or "")),
        "argv": _argv(tuple(sys.argv)),
        "python": _PYTHON,
        "exc_type": clean(exc_type),
        "traceback": mask_text(clip(trace, MAX_TRACEBACK, keep_end=True)),
        "stack": mask_text(clip(record.stack_info or "", MAX_TRACEBACK, keep_end=True)),
        "extra": extras,
    }
