"""``django_postbud.AdminAlertHandler``: Django's error mails through postbud's alert policy.

Django's ``AdminEmailHandler`` renders and sends one mail per logged error, on the request's
thread: a crawler hitting a broken URL 5,000 times sends 5,000 mails, a slow SMTP server
slows every failing request, and under ``MAILERS`` a failed send raises out of
``logger.error()``. This handler keeps Django's report (``ExceptionReporter``, filtered by
``SafeExceptionReporterFilter``) and Django's subject, and hands the rest to
``postbud.AlertHandler``: the report is rendered only for a fingerprint's first occurrence
in the process (in ``capture``, while the request is still there), the repeats are counted,
and the core decides first alert, follow-up or digest, shared by every process on the spool.

Nothing is read from Django's settings when the handler is built: ``LOGGING`` is configured
before the settings are complete, and tests change them. Where alerts go (a "route": the
recipients, and a postbud Mailer or the Django backend of the test environment) is worked
out at the first error, and again after a mail setting changes.
"""

from __future__ import annotations

import dataclasses
import difflib
import email
import email.policy
import email.utils
import html
import logging
import threading
import weakref
from collections.abc import Callable, Mapping
from copy import copy
from datetime import datetime, timezone
from typing import Any

import django
from django.conf import settings as django_settings
from django.core import mail as django_mail
from django.core.signals import setting_changed
from django.utils.functional import empty
from django.utils.module_loading import import_string

import postbud
from postbud.alerts import Mail

__all__ = ["AdminAlertHandler"]

log = logging.getLogger("postbud")

#: Where the Django subject of each occurrence travels to its mail (an ``extra`` of the
#: record's copy, so a follow-up sent by another process has it too).
SUBJECT = "postbud_django_subject"
#: Subjects are one line. Django 5.2 and 6.x only escape CR and LF; older Djangos also cut
#: at 989 characters (the 998-character line limit less "Subject: "): so do we, keeping a
#: follow-up's count.
MAX_SUBJECT = 989
#: A report longer than this (frames with huge locals) is cut; its HTML is left out.
MAX_REPORT = 1_000_000
#: The settings a route built on a Django backend takes from POSTBUD and the handler.
POLICY = ("alert_cooldown", "alert_cap", "alert_tag", "exit_timeout")
#: Older Djangos ignore a MAILERS setting, and so does this handler.
MAILERS_API = django.VERSION >= (6, 1)
#: Settings whose change makes every handler work its route out again.
ROUTE_SETTINGS = frozenset({"ADMINS", "SERVER_EMAIL", "POSTBUD", "MAILERS"})

_generation = [0]  # bumped when a route setting changes
_handlers: weakref.WeakSet[AdminAlertHandler] = weakref.WeakSet()
_local = threading.local()  # .busy: this thread runs the handler's own code


class AdminAlertHandler(logging.Handler):
    """A drop-in for ``django.utils.log.AdminEmailHandler`` with postbud's storm control.

    The first occurrence of an error mails Django's report to ``ADMINS`` (from
    ``SERVER_EMAIL``, subject ``"[Django] ERROR (EXTERNAL IP): Internal Server Error:
    /path"``); repeats are counted into one follow-up; past ``alert_cap`` mails an hour the
    rest go into an hourly digest. ``logger.error()`` never waits for a server and never
    raises. When the site's backend (``EMAIL_BACKEND``, or the ``using`` alias) is not
    postbud's, as with the locmem backend of Django's tests, alerts go through that backend.

    Args:
        include_html: Attach Django's HTML report (it shows frame locals).
        email_backend: A backend path used instead of ``EMAIL_BACKEND`` (not with
            ``MAILERS``; ignored in Django's test environment, so tests never mail).
        reporter_class: An ``ExceptionReporter`` subclass or its path (default:
            ``DEFAULT_EXCEPTION_REPORTER``).
        using: The ``MAILERS`` alias to send with (Django 6.1; default ``"default"``).
        level: Lowest level mailed (default ``ERROR``).
        clock: Seconds since the epoch for the policy (tests move time with it).
        **options: postbud settings by name (``alert_tag``, ``alert_cooldown``...), over
            the site's; checked here, used at the first error.
    """

    def __init__(
        self,
        include_html: bool = False,
        email_backend: str | None = None,
        reporter_class: str | type[Any] | None = None,
        using: str | None = None,
        *,
        level: int | str = logging.ERROR,
        clock: Callable[[], float] | None = None,
        **options: Any,
    ) -> None:
        super().__init__(level)
        # Usable by flush() and close() (logging.shutdown()) even if a check below fails.
        self._route: _Route | None = None
        self._route_lock = threading.Lock()
        self._shut = False
        if email_backend and using:
            raise postbud.ConfigurationError(
                "AdminAlertHandler takes email_backend or using, not both: with MAILERS, "
                "name the alias with using."
            )
        known = {f.name for f in dataclasses.fields(postbud.Settings)}
        for name in options:
            if name not in known:
                close = difflib.get_close_matches(name, sorted(known), n=1)
                fix = f" Did you mean {close[0]!r}?" if close else ""
                raise postbud.ConfigurationError(
                    f"Unknown postbud setting {name!r} for AdminAlertHandler.{fix}"
                )
        self.include_html = bool(include_html)
        self.email_backend = email_backend
        self.using = using
        # Imported now, as Django does, so a typo fails the logging config loudly.
        if isinstance(reporter_class, str):
            reporter_class = import_string(reporter_class)
        self.reporter_class: Any = reporter_class
        self.options = dict(options)
        self._clock = clock
        _handlers.add(self)

    def __repr__(self) -> str:
        return f"<django_postbud.AdminAlertHandler {logging.getLevelName(self.level)} to ADMINS>"

    # -- the caller's thread -------------------------------------------------------------

    def handle(self, record: logging.LogRecord) -> logging.LogRecord | bool:  # type: ignore[override]
        # No handler lock, as postbud.AlertHandler: emit is thread-safe, and a request
        # must never wait behind flush() or close().
        name = record.name if isinstance(record.name, str) else ""
        if name == "postbud" or name.startswith("postbud.") or getattr(_local, "busy", False):
            return False
        result = self.filter(record)
        if result:
            self.emit(result if isinstance(result, logging.LogRecord) else record)
        return result

    def emit(self, record: logging.LogRecord) -> None:
        """Count ``record`` (and render Django's report at its first occurrence)."""
        _local.busy = True
        try:
            core = self._core()
            if core is not None:
                shown = copy(record)  # other handlers must not see what we add
                setattr(shown, SUBJECT, _django_subject(record))
                core.handle(shown)
        except Exception:
            self.handleError(record)
        finally:
            _local.busy = False

    def _capture(self, record: logging.LogRecord) -> dict[str, Any]:
        """Django's report of a first occurrence, exactly as ``AdminEmailHandler.emit``
        makes it (its filter hides settings, POST fields and locals marked sensitive)."""
        request = getattr(record, "request", None)
        if not hasattr(request, "META"):
            request = None
        no_exc = copy(record)
        no_exc.exc_info, no_exc.exc_text = None, None
        exc_info = record.exc_info or (None, record.getMessage(), None)
        reporter_class = self.reporter_class or import_string(
            django_settings.DEFAULT_EXCEPTION_REPORTER
        )
        reporter = reporter_class(request, *exc_info, is_email=True)
        text = f"{self.format(no_exc)}\n\n{reporter.get_traceback_text()}"
        page = str(reporter.get_traceback_html()) if self.include_html else None
        if len(text) > MAX_REPORT:
            text = text[:MAX_REPORT] + "\n… (postbud cut this report: it was too long)\n"
        if page is not None and len(page) > MAX_REPORT:
            page = None
        return {"text": str(text), "html": page}

    # -- routes --------------------------------------------------------------------------

    def _core(self) -> _Core | None:
        key = _route_key()
        route = self._route
        if route is not None and route.key == key:
            return route.core
        with self._route_lock:
            route = self._route
            if self._shut:
                return None
            if route is None or route.key != key:
                old, route = route, self._build(key)
                self._route = route
                if old is not None:  # settings changed without a signal: never block here
                    try:
                        threading.Thread(target=old.close, name="postbud-alerts-close").start()
                    except RuntimeError:  # at interpreter exit (3.12+): no new thread
                        old.close()
        return route.core

    def _build(self, key: tuple[Any, ...]) -> _Route:
        route = _Route(key)
        try:
            to = _recipients(django_settings.ADMINS)
            if to:
                route.core, route.own = self._mailer_route(to)
        except Exception as exc:  # said once per route: the next settings may work
            why = (
                str(exc)
                if isinstance(exc, postbud.PostbudError)
                else f"{type(exc).__name__}: {exc}"
            )
            if why.startswith("to: "):  # AlertHandler's name for the recipients
                why = "ADMINS: " + why[len("to: ") :]
            log.warning("postbud's AdminAlertHandler cannot send alerts: %s", why)
        return route

    def _mailer_route(self, to: tuple[str, ...]) -> tuple[_Core, postbud.Mailer | None]:
        """A core on the site's postbud Mailer, or on a Mailer that hands mail to the
        Django backend (then also returned: the route owns it)."""
        wrapped = _quiet_settings()
        mailers = getattr(wrapped, "MAILERS", None) if MAILERS_API else None
        server = str(django_settings.SERVER_EMAIL)
        if mailers is not None:
            alias = self.using or "default"
            if self.email_backend:  # Django refuses this at start-up; alerts still go out
                log.warning(
                    "postbud's AdminAlertHandler ignores email_backend=%r: MAILERS is defined, "
                    "so it sends with the alias %r (name another with using=).",
                    self.email_backend,
                    alias,
                )
            if alias not in mailers:
                raise postbud.ConfigurationError(f"MAILERS has no alias {alias!r} (using).")
            config = mailers[alias]
            backend = config.get("BACKEND", "django.core.mail.backends.smtp.EmailBackend")
            options = dict(config.get("OPTIONS") or {})
            name = f"MAILERS[{alias!r}] ({backend})"
            connect: Callable[[], Any] = lambda: django_mail.mailers[alias]  # noqa: E731
        else:
            alias, options = None, {}
            backend = getattr(wrapped, "EMAIL_BACKEND")  # noqa: B009 - read quietly
            if self.email_backend and not hasattr(django_mail, "outbox"):
                backend = self.email_backend  # (the test environment keeps locmem)
            name = backend
            connect = import_string(backend)  # a new instance per mail, as get_connection()
        if _is_postbud(backend):
            from ._registry import mailer_for
            from ._settings import settings_for

            # Without options of its own the lookup reads (and checks) the alias's OPTIONS.
            found = settings_for(alias, {**options, **self.options} if self.options else None)
            sender = email.utils.parseaddr(server)[1].lower()
            if django_settings.is_overridden("SERVER_EMAIL") and sender not in (
                found.username.lower(),
                email.utils.parseaddr(found.sender or "")[1].lower(),
            ):
                found = found.replace(sender=server)
            return _Core(self, to, mailer_for(found)), None
        # A Django backend: the alert policy from POSTBUD and the handler, state in memory
        # (never the spool: a test's alerts must not wait there for a real Mailer).
        policy = {k: v for k, v in (_postbud_dict() | self.options).items() if k in POLICY}
        try:  # the account only names the Message-ID's domain; the From is SERVER_EMAIL
            found = postbud.Settings.from_mapping(
                policy, username=email.utils.parseaddr(server)[1], auth=_NoLogin(), spool=None
            )
        except postbud.ConfigurationError:  # Django's default, root@localhost
            found = postbud.Settings.from_mapping(
                policy, username="alerts@django.invalid", auth=_NoLogin(), spool=None
            )
        own = postbud.Mailer(found, transport=_DjangoTransport(connect, server, name))
        return _Core(self, to, own), own

    def _drop_route(self) -> None:
        with self._route_lock:
            route, self._route = self._route, None
        if route is not None:
            route.close()

    # -- the handler's thread ------------------------------------------------------------

    def _render(self, core: _Core, mail: Mail) -> tuple[str, str, str | None]:
        s = core.mailer.settings
        tag = f"[{s.alert_tag}] " if s.alert_tag else ""
        head = tag + str(django_settings.EMAIL_SUBJECT_PREFIX)
        extra = dict(mail.detail.get("extra") or {})
        base = str(extra.pop(SUBJECT, "") or "") or _fallback_subject(mail.detail)
        plain = dataclasses.replace(mail, detail={**mail.detail, "extra": extra})
        captured = mail.detail.get("captured")
        footer = (
            "Sent by postbud's AdminAlertHandler. Repeats of this error within "
            f"{s.alert_cooldown:g} s are counted and reported in one follow-up; at most "
            f"{s.alert_cap} alert mail(s) an hour, the rest in an hourly digest."
        )
        if mail.kind == "digest":
            subject, text, page = core.core_render(plain)
            rest = subject[len(tag) :] if tag and subject.startswith(tag) else subject
            return _subject(head, rest, ""), text, page if self.include_html else None
        if mail.kind == "first" and isinstance(captured, dict) and "text" in captured:
            mask = core.mailer.masker()  # the Mailer's own secrets, had a frame kept them
            text = f"{mask(str(captured['text'])).rstrip()}\n\n-- \n{footer}\n"
            page = captured.get("html")
            if self.include_html and isinstance(page, str):
                return _subject(head, base, ""), text, _with_footer(mask(page), footer)
            return _subject(head, base, ""), text, None
        _, text, page = core.core_render(plain)
        suffix = ""
        if mail.kind == "follow-up":
            suffix = f" ({mail.count} more since {_hhmm(mail.since)})"
        elif isinstance(captured, dict) and captured.get("capture_error"):
            text = f"Django's report could not be made ({captured['capture_error']}).\n\n{text}"
        return _subject(head, base, suffix), text, page if self.include_html else None

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def mailer(self) -> postbud.Mailer | None:
        """The Mailer of the current route (None before the first error, or with none)."""
        route = self._route
        return route.core.mailer if route is not None and route.core is not None else None

    def tick(self, *, force: bool = False) -> None:
        """Do now what the handler's thread does about once a second (tests: see
        ``postbud.AlertHandler.tick``)."""
        route = self._route
        if route is not None and route.core is not None:
            route.core.tick(force=force)

    def flush(self) -> None:
        """Send pending follow-ups and the digest now and wait up to ``exit_timeout``."""
        route = self._route
        if route is not None and route.core is not None:
            route.core.flush()

    def close(self) -> None:
        """Send what is pending, as ``flush``, and stop."""
        self._shut = True
        self._drop_route()
        super().close()

    def stats(self) -> dict[str, int]:
        """Records counted and mails queued by kind, for the current route."""
        route = self._route
        if route is not None and route.core is not None:
            return route.core.stats()
        return {"records": 0, "first": 0, "follow-up": 0, "digest": 0}


class _Core(postbud.AlertHandler):
    """The postbud AlertHandler of one route; Django's report and subjects via its owner."""

    def __init__(self, owner: AdminAlertHandler, to: tuple[str, ...], mailer: postbud.Mailer):
        self._owner = owner
        # The subject template is never shown (render_mail is ours); it keeps these
        # alerts' shared state apart from a plain AlertHandler's on the same spool.
        super().__init__(
            list(to), "[django] {message}", owner.level, mailer=mailer, clock=owner._clock
        )

    @property
    def name(self) -> str | None:
        """The owner's name (dictConfig's key): part of the state shared on a spool."""
        return self._owner.name

    @name.setter
    def name(self, value: str | None) -> None:
        pass  # registering the core under the owner's name would replace the owner

    def capture(self, record: logging.LogRecord) -> Any:
        return self._owner._capture(record)

    def render_mail(self, mail: Mail) -> tuple[str, str, str | None]:
        return self._owner._render(self, mail)

    def core_render(self, mail: Mail) -> tuple[str, str, str | None]:
        """postbud's own rendering (follow-ups, digests, a first alert without a report)."""
        return super().render_mail(mail)


@dataclasses.dataclass
class _Route:
    """Where alerts go for one state of the settings (``key``)."""

    key: tuple[Any, ...]
    core: _Core | None = None  # None: ADMINS is empty, or the settings do not work
    own: postbud.Mailer | None = None  # a Mailer made for a Django backend (not shared)

    def close(self) -> None:
        if self.core is not None:
            self.core.close()  # sends what is pending, within exit_timeout
        if self.own is not None:
            self.own.close(0)


class _NoLogin:
    """The credentials of a Mailer that hands mail to a Django backend: it never logs in."""

    credential = "Django mail backend"

    def login(self, smtp: Any, username: str) -> None:
        raise postbud.ConfigurationError("This Mailer hands mail to a Django backend.")


class _DjangoTransport:
    """A postbud transport that hands alert mails to a Django backend (the locmem backend
    of Django's tests, or a backend that is not postbud's): the outbox's thread sends, so
    the backend's failures are retried, never raised at a caller."""

    def __init__(self, connect: Callable[[], Any], from_email: str, name: str) -> None:
        self.connect, self.from_email, self.name = connect, from_email, name

    def send(self, envelope: postbud.Envelope) -> dict[str, tuple[int, str]]:
        from django.core.mail import EmailMultiAlternatives

        parsed: Any = email.message_from_bytes(envelope.data, policy=email.policy.default)
        headers = {
            k: str(parsed[k])
            for k in ("X-Postbud-Alert", "X-Postbud-Count", "X-Postbud-Fingerprint")
            if parsed[k] is not None
        }
        headers["Message-ID"] = envelope.message_id  # and Django asks no DNS for one
        text, page = (
            None if part is None else part.get_content().replace("\r\n", "\n")
            for part in (parsed.get_body(("plain",)), parsed.get_body(("html",)))
        )
        message = EmailMultiAlternatives(
            str(parsed["Subject"] or ""),
            text or "",
            self.from_email,
            list(envelope.recipients),
            headers=headers,
        )
        if page is not None:
            message.attach_alternative(page, "text/html")
        try:
            sent = self.connect().send_messages([message])
        except Exception as exc:
            raise postbud.TransportError(
                f"The Django mail backend {self.name} failed: {type(exc).__name__}: {exc}"
            ) from None
        if not sent:
            raise postbud.TransportError(f"The Django mail backend {self.name} sent nothing.")
        return {}

    def open(self) -> None:
        """Nothing to open: Django's backend connects per message."""

    def close(self) -> None:
        """Nothing to close."""


# -- helpers ------------------------------------------------------------------------------


def _quiet_settings() -> Any:
    """Django's settings object behind the lazy proxy. Read through it, ``EMAIL_BACKEND``
    does not warn on Django 6.1: the deprecation speaks to the site's code, and this
    handler reads it as Django's own AdminEmailHandler does, to send where it would."""
    wrapped = django_settings._wrapped
    if wrapped is empty:
        getattr(django_settings, "DEBUG")  # noqa: B009 - sets the proxy up
        wrapped = django_settings._wrapped
    return wrapped


def _route_key() -> tuple[Any, ...]:
    """What the route depends on, cheaply (every record): settings changed through
    ``override_settings`` bump the generation; Django's test set-up assigns
    ``EMAIL_BACKEND``/``MAILERS`` directly, so they are compared too."""
    wrapped = _quiet_settings()
    mailers = getattr(wrapped, "MAILERS", None) if MAILERS_API else None
    mode = id(mailers) if mailers is not None else getattr(wrapped, "EMAIL_BACKEND", None)
    admins = getattr(wrapped, "ADMINS", None)
    return (_generation[0], mode, id(admins), hasattr(django_mail, "outbox"))


def _is_postbud(backend: str) -> bool:
    from ._backend import EmailBackend

    found = import_string(backend)
    return isinstance(found, type) and issubclass(found, EmailBackend)


def _postbud_dict() -> dict[str, Any]:
    given = getattr(django_settings, "POSTBUD", None) or {}
    return {str(k).lower(): v for k, v in dict(given).items()}


def _recipients(admins: Any) -> tuple[str, ...]:
    """``ADMINS`` as addresses: 6.0's strings or the older (name, address) pairs."""
    if not admins:
        return ()
    if isinstance(admins, (str, bytes)) or not isinstance(admins, (list, tuple)):
        raise postbud.ConfigurationError(
            "The ADMINS setting must be a list of email addresses (or of (name, address) pairs)."
        )
    found = []
    for item in admins:
        address = item[1] if isinstance(item, (list, tuple)) and len(item) == 2 else item
        if isinstance(address, (list, tuple, bytes)):
            raise postbud.ConfigurationError(f"ADMINS: {item!r} is not an email address.")
        found.append(str(address))
    return tuple(found)


#: One line, as Django's ``format_subject`` makes it (CR and LF shown as ``\\r``, ``\\n``);
#: the other characters ``str.splitlines`` breaks at become spaces.
_ONE_LINE = str.maketrans(
    {"\n": "\\n", "\r": "\\r", **dict.fromkeys("\v\f\x1c\x1d\x1e\x85\u2028\u2029", " ")}
)


def _escape(text: str) -> str:
    return text.translate(_ONE_LINE)


def _django_subject(record: logging.LogRecord) -> str:
    """``AdminEmailHandler.emit``'s subject, without ``EMAIL_SUBJECT_PREFIX``."""
    try:
        request: Any = getattr(record, "request")  # noqa: B009 - as Django: any failure
        internal = request.META.get("REMOTE_ADDR") in django_settings.INTERNAL_IPS
        subject = "%s (%s IP): %s" % (  # noqa: UP031 - Django's own format
            record.levelname,
            "internal" if internal else "EXTERNAL",
            record.getMessage(),
        )
    except Exception:
        subject = f"{record.levelname}: {record.getMessage()}"
    return _escape(subject)[:MAX_SUBJECT]


def _fallback_subject(detail: Mapping[str, Any]) -> str:
    message = str(detail.get("message", "")).strip().split("\n", 1)[0]
    return f"{detail.get('level', 'ERROR')}: {message}"


def _subject(head: str, base: str, suffix: str) -> str:
    head, base = _escape(head), _escape(base)
    room = MAX_SUBJECT - len(head) - len(suffix)
    if len(base) > room:
        base = base[: max(room - 1, 0)] + "…"
    return head + base + suffix


def _hhmm(at: float | None) -> str:
    if at is None:
        return "?"
    return datetime.fromtimestamp(at, timezone.utc).strftime("%H:%M UTC")


def _with_footer(page: str, footer: str) -> str:
    note = f'<p style="color:#777;font-size:12px;margin:16px">{html.escape(footer)}</p>'
    at = page.rfind("</body>")
    return page[:at] + note + page[at:] if at >= 0 else page + note


def _settings_changed(*, setting: str, **kwargs: Any) -> None:
    """override_settings of a mail setting: every handler sends what its route holds
    (before the registry closes the Mailers of the old settings) and makes a new one."""
    if setting in ROUTE_SETTINGS or setting.startswith("EMAIL_"):
        _generation[0] += 1
        for handler in list(_handlers):
            handler._drop_route()


setting_changed.connect(_settings_changed, dispatch_uid="django_postbud.alerts")
