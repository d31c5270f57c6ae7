"""Error alerts for Flask apps: ``POSTBUD_ALERTS_TO`` turns them on.

``app.config["POSTBUD_ALERTS_TO"]`` (an address, a comma-separated string or a list, read
at ``init_app``) puts one handler on ``app.logger``: every unhandled exception of a view
and every ``app.logger.error(...)`` becomes a ``postbud.AlertHandler`` alert with the
request (method, URL, endpoint, remote address, user agent, headers, form; secrets masked,
see ``_request``), through the app's Mailer and its spool, so the app's worker processes
share one storm control: the first occurrence is mailed, repeats are counted into one
follow-up, past ``POSTBUD_ALERT_CAP`` an hour the rest go into a digest.
``logger.error()`` never waits for Gmail and never raises.

Decisions:

- **One handler per logger, routed by ``current_app``**: apps with the same import name
  share ``app.logger``; the one handler sends each record to the alerts of the app whose
  context is current, so each error is mailed once, with that app's config. A record
  logged outside any app context goes to the app that turned alerts on last.
- **Flask's two paths**: ``handle_exception`` sends ``got_request_exception`` and then,
  unless it re-raises (``PROPAGATE_EXCEPTIONS``, default under testing or debug), logs
  with ``log_exception``. The signal is counted (so re-raised errors are alerted too)
  and marks the exception on the request; the ``log_exception`` record of that same
  exception is then skipped: one occurrence, one count.
- **Off under ``app.debug`` or ``app.testing``** (read at each error: tests set
  ``TESTING`` after the factory) unless ``POSTBUD_ALERTS_FORCE = True``.
- **Under suppression** (``POSTBUD_SUPPRESS_SEND``, default ``app.testing``) alerts are
  recorded, not sent: they are built with the same storm control, nothing leaves the
  process, and ``record_messages()`` receives them (once the handler's thread made them:
  ``flush()`` first).
- **Configuration errors** (a bad ``POSTBUD_ALERTS_TO`` or ``POSTBUD_ALERTS_FORCE``) raise
  at ``init_app`` naming the key; so do the account's settings when alerts are on and
  the config holds credentials. Otherwise the handler's Mailer is made at the first
  error and a mistake then is one warning on the ``postbud`` logger, never an exception.
"""

from __future__ import annotations

import logging
import threading
import weakref
from typing import TYPE_CHECKING, Any

import flask

import postbud

from ._app_alerts import AppAlerts, alert_recipients, forced
from ._settings import has_credentials

if TYPE_CHECKING:
    from ._state import PostbudState

__all__ = ["install_alerts"]

#: ``request.environ`` key: the exception ``got_request_exception`` already counted.
_COUNTED = "flask_postbud.alerted"
log = logging.getLogger("postbud")
_signal = {"connected": False}
_lock = threading.Lock()


def install_alerts(app: flask.Flask, state: PostbudState) -> None:
    """Turn on error alerts for ``app`` when ``POSTBUD_ALERTS_TO`` is set (``init_app``).

    Raises:
        postbud.ConfigurationError: A bad ``POSTBUD_ALERTS_TO`` or
            ``POSTBUD_ALERTS_FORCE``, or (alerts on, credentials in the config) a bad
            account setting; ``init_app`` then leaves the app unregistered.
    """
    try:
        to = alert_recipients(app.config.get("POSTBUD_ALERTS_TO"))
        forced(app.config)
        if not to:
            return
        alerts = AppAlerts(app, state, to)
        if alerts.active(app):
            try:
                alerts.core(app, strict=True)
            except postbud.ConfigurationError:
                if has_credentials(app.config):
                    raise
                # No credentials in the config yet (the factory may add them, or the
                # environment lacks them): tried again, and said, at the first error.
    except BaseException:
        app.extensions.pop("postbud", None)
        raise
    state.alerts = alerts
    with _lock:
        router = next((h for h in app.logger.handlers if isinstance(h, _Router)), None)
        if router is None:
            router = _Router(app.logger)
            app.logger.addHandler(router)
        router.add(alerts)
        if not _signal["connected"]:
            flask.got_request_exception.connect(_on_exception, weak=False)
            _signal["connected"] = True


class _Router(logging.Handler):
    """The one handler on a logger: each record to the alerts of the current app."""

    def __init__(self, logger: logging.Logger) -> None:
        # At ERROR, not NOTSET: Flask adds its stderr handler only when no handler of
        # the logger's level is there, and this one must not stand in for it.
        super().__init__(logging.ERROR)
        self.logger = logger
        self._apps: list[weakref.ref[AppAlerts]] = []

    def __repr__(self) -> str:
        return f"<flask_postbud alerts on {self.logger.name}>"

    def add(self, alerts: AppAlerts) -> None:
        self._apps = [r for r in self._apps if r() is not None] + [weakref.ref(alerts)]

    def handle(self, record: logging.LogRecord) -> logging.LogRecord | bool:  # type: ignore[override]
        # No handler lock, as postbud.AlertHandler: a request never waits behind another.
        result = self.filter(record)
        if result:
            self.emit(result if isinstance(result, logging.LogRecord) else record)
        return result

    def emit(self, record: logging.LogRecord) -> None:
        try:
            exc = record.exc_info[1] if record.exc_info else None
            counted = flask.has_request_context() and flask.request.environ.get(_COUNTED)
            if exc is not None and counted is exc:
                return  # log_exception of what got_request_exception counted
            target = self._route()
            if target is not None:
                target[0].handle(target[1], record)
        except Exception:
            self.handleError(record)

    def dispatch(self, record: logging.LogRecord, alerts: AppAlerts, app: flask.Flask) -> None:
        """A record made for ``app`` (the signal's), through this handler's level and
        filters."""
        try:
            if record.levelno >= self.level and self.filter(record):
                alerts.handle(app, record)
        except Exception:
            self.handleError(record)

    def _route(self) -> tuple[AppAlerts, flask.Flask] | None:
        if flask.has_app_context():
            app: flask.Flask = flask.current_app._get_current_object()  # type: ignore[attr-defined]
            if app.logger is self.logger:
                alerts = _alerts_of(app)
                return None if alerts is None else (alerts, app)
        for ref in reversed(self._apps):  # no app context: the last app that turned alerts on
            alerts = ref()
            found = alerts.app_ref() if alerts is not None else None
            if alerts is not None and found is not None and _alerts_of(found) is alerts:
                return alerts, found
        return None


def _alerts_of(app: flask.Flask) -> AppAlerts | None:
    state = app.extensions.get("postbud")
    alerts = getattr(state, "alerts", None)
    return alerts if isinstance(alerts, AppAlerts) else None


def _on_exception(sender: Any, exception: BaseException | None = None, **_: Any) -> None:
    """``got_request_exception``: count the error as ``log_exception`` would log it
    (Flask may re-raise instead), and mark it so its log record is not counted again."""
    try:
        alerts = _alerts_of(sender) if isinstance(sender, flask.Flask) else None
        if alerts is None or exception is None or not flask.has_request_context():
            return
        request = flask.request
        request.environ[_COUNTED] = exception
        logger = sender.logger
        router = next((h for h in logger.handlers if isinstance(h, _Router)), None)
        if router is None or not logger.isEnabledFor(logging.ERROR):
            return
        tb = exception.__traceback__
        where: tuple[str, int, str | None] = ("(unknown file)", 0, None)
        while tb is not None:
            where = (tb.tb_frame.f_code.co_filename, tb.tb_lineno, tb.tb_frame.f_code.co_name)
            tb = tb.tb_next
        # log_exception's message, with the path as an argument: one error on
        # /orders/17 and /orders/18 is one fingerprint, not two.
        record = logger.makeRecord(
            logger.name,
            logging.ERROR,
            where[0],
            where[1],
            "Exception on %s [%s]",
            (request.path, request.method),
            (type(exception), exception, exception.__traceback__),
            where[2],
        )
        if logger.filter(record):
            router.dispatch(record, alerts, sender)
    except Exception:  # never in the way of Flask's own handling of the error
        log.exception("postbud could not count an error of a Flask app")
