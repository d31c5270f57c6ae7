"""The alert handlers of one Flask app (``app.extensions["postbud"].alerts``).

``AppAlerts`` holds what ``POSTBUD_ALERTS_TO`` asked for and makes the app's
``postbud.AlertHandler`` when the first error needs it: on the app's Mailer (its spool,
so the app's worker processes share one alert state), or, under suppression, on a
Mailer whose transport hands each alert to ``record_messages()`` and nothing leaves
the process. The handler captures the request at a first occurrence (``_request``) and
adds it to the first alert. How records reach it: ``_alerts``.
"""

from __future__ import annotations

import email
import email.policy
import email.utils
import logging
import threading
import weakref
from typing import TYPE_CHECKING, Any

import flask

import postbud
from postbud.alerts import Mail

from ._request import capture_request, with_request

if TYPE_CHECKING:
    from ._state import PostbudState

__all__ = ["FORCE_KEY", "TO_KEY", "AppAlerts", "alert_recipients", "forced"]

TO_KEY = "POSTBUD_ALERTS_TO"
FORCE_KEY = "POSTBUD_ALERTS_FORCE"
log = logging.getLogger("postbud")


def alert_recipients(value: Any) -> tuple[str, ...]:
    """``POSTBUD_ALERTS_TO`` as addresses (empty: alerts off); ConfigurationError naming
    the key for anything else than an address, a comma-separated string or a list."""
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        items = [value]
    elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        items = list(value)
    else:
        raise postbud.ConfigurationError(
            f"{TO_KEY} must be an address, a comma-separated string or a list of addresses "
            f"(such as ['ops@example.com']), not {type(value).__name__} {value!r}."
        )
    found: list[str] = []
    for item in items:
        for name, address in email.utils.getaddresses([item]):
            if not (name or address):
                continue
            local, at, domain = address.rpartition("@")
            if not (local and at and domain) or any(c.isspace() for c in address):
                raise postbud.ConfigurationError(
                    f"{TO_KEY}: {address or name!r} is not an email address; give an address, a "
                    "comma-separated string of them or a list (['ops@example.com'])."
                )
            found.append(address)
    if not found:
        raise postbud.ConfigurationError(f"{TO_KEY}: no address in {value!r}.")
    return tuple(dict.fromkeys(found))


def forced(config: Any) -> bool:
    """``POSTBUD_ALERTS_FORCE``: alerts also under ``app.debug`` or ``app.testing``."""
    value = config.get(FORCE_KEY)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise postbud.ConfigurationError(f"{FORCE_KEY} must be True or False, got {value!r}.")
    return value


class AppAlerts:
    """One app's alerts (``app.extensions["postbud"].alerts``): the recipients and the
    ``postbud.AlertHandler`` that does the work, one for sending and one for recording
    under suppression, each made when first needed.

    ``tick()``, ``flush()``, ``wait()`` and ``stats()`` are the handler's controls (tests).
    """

    def __init__(self, app: flask.Flask, state: PostbudState, to: tuple[str, ...]) -> None:
        self.app_ref = weakref.ref(app)
        self.state = state
        self.to = to
        #: The handler's name: part of the alert state's scope on a shared spool.
        self.name = f"flask_postbud:{app.import_name}"
        self._lock = threading.Lock()
        self._cores: dict[bool, _Core] = {}  # suppressed? -> its handler
        self._own: list[postbud.Mailer] = []  # the recording Mailers (suppression)
        self._failed = False

    def __repr__(self) -> str:
        return f"<flask_postbud alerts to {', '.join(self.to)}>"

    @property
    def running(self) -> bool:
        """Whether a handler was made (its Mailer must outlive it at exit)."""
        return bool(self._cores)

    @property
    def handlers(self) -> list[postbud.AlertHandler]:
        """The handlers made so far."""
        return list(self._cores.values())

    def active(self, app: flask.Flask) -> bool:
        """Whether errors are alerted now: not under debug or testing, unless forced."""
        return forced(app.config) or not (app.debug or app.testing)

    def handle(self, app: flask.Flask, record: logging.LogRecord) -> None:
        """Count ``record``, on the caller's thread: memory only (the handler's
        ``emit``), except that the first record of an app makes its handler."""
        if self.active(app):
            core = self.core(app)
            if core is not None:
                core.handle(record)

    def core(self, app: flask.Flask, *, strict: bool = False) -> _Core | None:
        """The handler for the app's present suppression, made on first use. A mistake
        raises with ``strict``, else is said once (None until ``close()``)."""
        quiet = self.state.suppressed(app)
        core = self._cores.get(quiet)
        if core is not None:
            return core
        with self._lock:
            core = self._cores.get(quiet)
            if core is None:
                if self._failed and not strict:
                    return None
                try:
                    core = self._cores[quiet] = self._build(app, quiet)
                except postbud.ConfigurationError as exc:
                    if strict:
                        raise
                    self._failed = True
                    log.warning(
                        "postbud cannot send the alerts of the Flask app %r: %s", app.name, exc
                    )
                    return None
        return core

    def _build(self, app: flask.Flask, quiet: bool) -> _Core:
        if not quiet:
            return _Core(self, self.state.mailer(app))
        settings = self.state.builder(app).settings  # memory spool, stand-in credentials
        mailer = postbud.Mailer(settings, transport=_Recording(self.state.extension, settings))
        self._own.append(mailer)
        return _Core(self, mailer)

    def tick(self, *, force: bool = False) -> None:
        """``AlertHandler.tick`` of each handler: send what is due now."""
        for core in self.handlers:
            core.tick(force=force)

    def flush(self) -> None:
        """``AlertHandler.flush`` of each: pending follow-ups and digests now, and wait."""
        for core in self.handlers:
            core.flush()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the handlers' Mailers (``Mailer.flush``); True when all settled."""
        settled = [core.mailer.flush(timeout) for core in self.handlers]  # each, no short cut
        return all(settled)

    def stats(self) -> dict[str, int]:
        """Records counted and mails queued by kind, summed over the handlers."""
        total = {"records": 0, "first": 0, "follow-up": 0, "digest": 0}
        for core in self.handlers:
            for key, value in core.stats().items():
                total[key] = total.get(key, 0) + value
        return total

    def close(self, timeout: float | None = None) -> None:
        """Send what is pending (within ``exit_timeout``) and stop; an error after this
        makes a new handler (``PostbudState.close`` reads the config again too)."""
        with self._lock:
            cores, own = list(self._cores.values()), self._own
            self._cores, self._own, self._failed = {}, [], False
        for core in cores:
            core.close()
        for mailer in own:
            mailer.close(0 if timeout is None else timeout)


class _Core(postbud.AlertHandler):
    """The ``postbud.AlertHandler`` of one app: the request in first alerts."""

    def __init__(self, owner: AppAlerts, mailer: postbud.Mailer) -> None:
        self._scope_name = owner.name
        try:
            super().__init__(list(owner.to), level=logging.ERROR, mailer=mailer)
        except postbud.ConfigurationError as exc:  # its "to: ..." is our key
            raise postbud.ConfigurationError(str(exc).replace("to: ", f"{TO_KEY}: ", 1)) from None

    @property
    def name(self) -> str | None:
        """The app's name for the alert state (never registered as a logging name)."""
        return self._scope_name

    @name.setter
    def name(self, value: str | None) -> None:
        pass

    def capture(self, record: logging.LogRecord) -> Any:
        shown = capture_request()
        return None if shown is None else {"request": shown}

    def render_mail(self, mail: Mail) -> tuple[str, str, str | None]:
        subject, text, page = super().render_mail(mail)
        captured = mail.detail.get("captured")
        if mail.kind == "first" and isinstance(captured, dict):
            shown = captured.get("request")
            if isinstance(shown, dict):
                text, page = with_request(text, page, shown, self.mailer.masker())
        return subject, text, page


class _Recording:
    """The transport of alerts under suppression: into ``record_messages()``, never out
    of the process."""

    def __init__(self, extension: Any, settings: postbud.Settings) -> None:
        self.extension = extension
        self.sender = settings.sender or settings.username

    def send(self, envelope: postbud.Envelope) -> dict[str, tuple[int, str]]:
        parsed: Any = email.message_from_bytes(envelope.data, policy=email.policy.default)
        text, page = (
            None if part is None else str(part.get_content())
            for part in (parsed.get_body(("plain",)), parsed.get_body(("html",)))
        )
        source = dict.fromkeys(("cc", "bcc", "reply_to", "headers"))
        source.update(to=list(envelope.recipients), subject=str(parsed["Subject"]))
        source.update(text=text, html=page)
        self.extension._recorder.add(source, envelope.data, envelope.message_id, self.sender)
        return {}

    def open(self) -> None:
        """Nothing to open."""

    def close(self) -> None:
        """Nothing to close."""
