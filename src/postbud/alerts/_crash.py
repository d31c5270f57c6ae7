"""``postbud.alert_on_crash()``: mail an uncaught exception before the program dies.

It wraps ``sys.excepthook`` (the main thread) and ``threading.excepthook`` (other
threads). The alert is sent at once, within ``exit_timeout``; if Gmail cannot be
reached it is kept in the spool (the next postbud command or Mailer of the account
sends it) and one line on stderr says so. The previous hooks run afterwards, so the
traceback is still printed as usual. Ctrl-C (``KeyboardInterrupt``) is not a crash.

A configuration mistake never stops the script it is meant to watch: the call prints
one line and the script runs without alerts; at a crash the traceback comes first, as
without postbud, then the mistake again, so a cron mail or a CI log shows both.
(``AlertHandler`` keeps failing ``dictConfig`` loudly: a service's logging set-up is
read by a person, a crash hook in a cron script often by nobody.)
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from postbud._config import Settings
from postbud._mailer import Mailer
from postbud.errors import ConfigurationError

from ._handler import recipients_of
from ._policy import Mail
from ._record import describe, masked
from ._render import DEFAULT_SUBJECT, check_template, render

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from postbud._config import SettingsKwargs

__all__ = ["alert_on_crash"]

_state: dict[str, Any] = {}


def alert_on_crash(
    to: str | Sequence[str] | None = None,
    subject: str | None = None,
    *,
    mailer: Mailer | None = None,
    **settings: Unpack[SettingsKwargs],
) -> None:
    """Mail uncaught exceptions (of the main thread and of other threads) as alerts.

    Call it once, early in a script::

        postbud.alert_on_crash(to="oncall@example.com")

    Args:
        to: Recipients (default: the sending account itself).
        subject: A subject template as for ``AlertHandler`` (default
            ``"[{level}] {logger}: {message}"``; the logger is the script's name).
        mailer: A Mailer to send with; else one is built from ``**settings`` over the
            ``POSTBUD_*`` environment variables. Each attempt is bounded by
            ``exit_timeout``.

    A configuration mistake (a missing password, a bad address in ``to``, an unknown
    subject field) does not raise: one line on stderr says that alerts on crash are off
    and why, and a crash later prints its traceback and then that line again.
    """
    try:
        mailer, owned, recipients, template = _prepare(to, subject, mailer, settings)
    except ConfigurationError as error:
        _forget()
        _state["error"] = str(error)
        print(f"postbud: alerts on crash are off: {error}", file=sys.stderr, flush=True)
    else:
        _forget()  # a second call replaces the first one's Mailer
        _state.update(mailer=mailer, owned=owned, to=recipients, subject=template, error=None)
    if "sys" not in _state:  # install once; later calls only change the settings
        _state["sys"] = sys.excepthook
        _state["threading"] = threading.excepthook
        sys.excepthook = _sys_hook
        threading.excepthook = _thread_hook


def _prepare(
    to: str | Sequence[str] | None,
    subject: str | None,
    mailer: Mailer | None,
    settings: SettingsKwargs,
) -> tuple[Mailer, bool, tuple[str, ...], str]:
    """(mailer, whether we own it, recipients, subject template), or ConfigurationError."""
    if mailer is not None and settings:
        raise ConfigurationError("alert_on_crash takes either mailer= or settings, not both.")
    config = Settings.from_env(**settings) if mailer is None else mailer.settings
    recipients = recipients_of(to, config.username)
    template = DEFAULT_SUBJECT if subject is None else subject
    check_template(template)
    if mailer is not None:
        return mailer, False, recipients, template
    # The program is dying: one attempt may take exit_timeout, not the full timeout.
    timeout = max(1.0, min(config.timeout, config.exit_timeout))
    return Mailer(config.replace(timeout=timeout)), True, recipients, template


def _forget() -> None:
    """Close the Mailer an earlier call built (never one the caller passed in)."""
    if _state.get("owned"):
        _state["mailer"].close(timeout=0)
    _state.update(mailer=None, owned=False)


def _sys_hook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    if _state["error"] is not None:
        _state["sys"](exc_type, exc, tb)  # the traceback first, as without postbud
        _unmailed(exc_type)
        return
    try:
        _report(exc_type, exc, tb, threading.current_thread().name)
    finally:
        _state["sys"](exc_type, exc, tb)


def _thread_hook(args: threading.ExceptHookArgs) -> None:
    if _state["error"] is not None:
        _state["threading"](args)
        _unmailed(args.exc_type)
        return
    try:
        if args.exc_value is not None:
            name = args.thread.name if args.thread is not None else "?"
            _report(args.exc_type, args.exc_value, args.exc_traceback, name)
    finally:
        _state["threading"](args)


def _unmailed(exc_type: type[BaseException]) -> None:
    """The configuration mistake again, after the traceback: why no mail came."""
    if not issubclass(exc_type, (KeyboardInterrupt, SystemExit)):
        print(f"postbud: the crash was not mailed: {_state['error']}", file=sys.stderr, flush=True)


def _report(
    exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None, thread: str
) -> None:
    if issubclass(exc_type, (KeyboardInterrupt, SystemExit)):
        return  # Ctrl-C, and sys.exit() in a thread, are no crashes
    mailer: Mailer = _state["mailer"]
    try:
        where = traceback.extract_tb(tb)[-1] if tb is not None else None
        script = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python"
        place = "" if thread == "MainThread" else f" in thread {thread}"
        message = f"Uncaught {exc_type.__name__}{place}: {exc}"
        record = logging.LogRecord(
            script,
            logging.CRITICAL,
            where.filename if where else "?",
            (where.lineno or 0) if where else 0,
            message,
            None,
            (exc_type, exc, tb),
        )
        record.threadName = thread
        record.funcName = where.name if where else ""
        at = time.time()
        detail = masked(describe(record, message, at), mailer.mask)
        s = mailer.settings
        subject, text, html = render(
            Mail("first", 1, at, at, detail, "crash"),
            template=_state["subject"],
            tag=s.alert_tag,
            cooldown=s.alert_cooldown,
            cap=s.alert_cap,
            intro=f"{script} crashed: an exception nobody caught{place}.",
            footer="Sent by postbud.alert_on_crash().",
        )
        envelope = mailer.build(
            list(_state["to"]),
            subject,
            text,
            html,
            headers={"X-Postbud-Alert": "crash", "X-Postbud-Count": "1"},
        )
    except Exception as error:  # never hide the original crash behind our own
        print(f"postbud: could not build the crash alert: {error}", file=sys.stderr)
        return
    try:
        _, kept = mailer.outbox.send_or_keep(envelope, "alert")
        if kept is not None:
            print(f"postbud: {mailer.outbox.kept_line('the crash alert', kept)}", file=sys.stderr)
    except Exception as error:  # DeliveryError included: one line, then the traceback
        print(f"postbud: the crash alert could not be sent: {error}", file=sys.stderr)
