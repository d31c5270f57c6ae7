"""System checks: the site's mail settings as postbud's backend will read them.

``manage.py check`` (and ``runserver``, ``migrate``...) runs them when ``django_postbud``
is in ``INSTALLED_APPS``, and only for a site that uses postbud: ``EMAIL_BACKEND``, a
``MAILERS`` backend or the backend of an ``AdminAlertHandler`` in ``LOGGING`` is
django_postbud's. Every settings check asks ``_settings.resolve()``, the lookup the
backend and the alert handler use, so a check fails exactly when the backend would raise,
in the backend's words; the id only says which mistake it is. A check never raises: a
surprise becomes ``postbud.E007`` with its text.

The OAuth2 token file is left to ``check --deploy`` (``postbud.W001``): a container is
often built (and checked) before the secret is mounted.
"""

from __future__ import annotations

import dataclasses
import difflib
import email.utils
import re
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from django.conf import settings as django_settings
from django.core.checks import CheckMessage, Error
from django.core.checks import Warning as CheckWarning
from django.utils.module_loading import import_string

import postbud

from ._alerts import AdminAlertHandler
from ._backend import EmailBackend
from ._settings import ADAPTER_KEYS, Resolved, mailers_defined, resolve

__all__ = ["Site", "check_deployment", "check_settings", "is_postbud", "postbud_sites"]

_SMTP_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
# What a LOGGING handler entry holds besides the handler's postbud settings (dictConfig's
# keys and AdminAlertHandler's own arguments).
_HANDLER_KEYS = frozenset(
    {"class", "()", ".", "level", "formatter", "filters", "include_html", "email_backend",
     "reporter_class", "using", "clock"}
)  # fmt: skip
_FILES = ("oauth_token_file", "service_account_file")
# What stands in for a credentials file that is not there yet, so the rest of the
# settings is still checked: any file that exists (Settings only asks that of a path).
_STAND_IN = __file__
# Settings' own sentence for a missing file: '<setting> '<path>' does not exist: point it
# at the authorized-user JSON ... / the service account key JSON ...'.
_MISSING_FILE = re.compile(
    r"(?P<key>\S+) (?P<path>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\") does not exist: point it "
    r"at the (?P<kind>authorized-user JSON|service account key)"
)

_E001_HINT = (
    "postbud logs in as the Gmail account with a Google app password (2-Step Verification "
    "on: https://myaccount.google.com/apppasswords) or an OAuth2 token file (docs/oauth.md)."
)
_E002_HINT = (
    "The credentials come from one place (the first of OPTIONS, POSTBUD, the EMAIL_* "
    "settings, the POSTBUD_* environment that sets any) and must be of one kind."
)
_E003_HINT = (
    "Gmail speaks TLS from the first byte on port 465 (use_ssl, postbud's default) and "
    "STARTTLS on port 587 (use_tls): a connection is one or the other."
)
_E004_HINT = (
    "Either one alone is enough: postbud takes port 465 for SSL and 587 for STARTTLS, and "
    "the mode from Gmail's port."
)
_E005_HINT = (
    'POSTBUD\'s keys are postbud\'s settings in capitals ("USERNAME", "APP_PASSWORD", '
    '"SPOOL"...), "BACKGROUND" and "MACHINES"; MAILERS OPTIONS take them in lower case.'
)
_E006_HINT = (
    "The backend raises this error when it is made (fail_silently does not hide it): fix "
    "the setting it names."
)
_E007_HINT = (
    "Run 'manage.py postbud_check' for a step-by-step diagnosis; if the message names no "
    "setting of the site, report it as a bug of postbud."
)
# Which mistake a configuration error of resolve() is, from its words (postbud's and
# _settings' sentences, pinned by tests/integrations/django/test_checks.py).
_KINDS: tuple[tuple[str, re.Pattern[str], str], ...] = (
    (
        "postbud.E001",
        re.compile(r"No credentials for |is missing: set it to the Gmail"),
        _E001_HINT,
    ),
    ("postbud.E002", re.compile(r"Two kinds of credentials are set"), _E002_HINT),
    ("postbud.E003", re.compile(r"are both True: keep one"), _E003_HINT),
    ("postbud.E004", re.compile(r"is Gmail's '\w+' port but"), _E004_HINT),
    ("postbud.E005", re.compile(r"Unknown (?:postbud setting|option) "), _E005_HINT),
)


@dataclasses.dataclass(frozen=True)
class Site:
    """A mailer of the site that sends through postbud.

    Attributes:
        alias: The ``MAILERS`` alias, or None for a site without ``MAILERS``.
        options: What the backend gets as keyword arguments (the alias's OPTIONS, plus
            an alert handler's own postbud settings).
        name: How a check message names it (``MAILERS['default']``).
    """

    alias: str | None
    options: Mapping[str, Any]
    name: str


@dataclasses.dataclass
class _Found:
    """What resolving a site gave: its settings (None when it failed), the error, and
    the credentials files that are missing (checked with the stand-in instead)."""

    resolved: Resolved | None = None
    error: Exception | None = None
    missing: list[str] = dataclasses.field(default_factory=list)


# -- the registered checks ------------------------------------------------------------------


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """postbud.E001-E007, W002-W006: what the backend would refuse or get wrong."""
    return _never_raising(_settings_messages)


def check_deployment(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """postbud.W001 (``check --deploy``): a credentials file missing or unreadable."""
    return _never_raising(_deployment_messages)


def _never_raising(run: Callable[[], list[CheckMessage]]) -> list[CheckMessage]:
    try:
        return _unique(run())
    except Exception as exc:  # a check must never break manage.py
        return [_crashed("the mail settings", exc)]


def _crashed(name: str, exc: Exception) -> CheckMessage:
    return Error(
        f"postbud could not check {name}: {type(exc).__name__}: {exc}",
        hint=_E007_HINT,
        id="postbud.E007",
    )


def _unique(messages: Iterable[CheckMessage]) -> list[CheckMessage]:
    """One message per mistake: aliases that share POSTBUD share its errors."""
    seen: set[tuple[str, str]] = set()
    kept = []
    for message in messages:
        if (message.id, message.msg) not in seen:
            seen.add((message.id, message.msg))
            kept.append(message)
    return kept


def _settings_messages() -> list[CheckMessage]:
    sites = postbud_sites()
    alerting, handlers = _alert_sites()
    if not sites and not alerting:
        return []
    messages = _unknown_postbud_keys() + _state_urls_with_a_password(sites)
    senders: list[tuple[Site, Resolved]] = []
    for site in [*sites, *handlers]:
        found = _resolve(site)
        if found.error is not None:
            messages.append(_configuration_error(site, found.error))
        if found.resolved is None:
            continue  # an error, or a credentials file to wait for (check --deploy)
        messages += _background_without_spool(site, found.resolved)
        messages += _machines_without_state(found.resolved)
        if site.alias in (None, "default") or site in handlers:
            senders.append((site, found.resolved))
    messages += _foreign_senders(senders, handlers)
    if not mailers_defined() and (sites or handlers):
        messages += _client_certificate()
    return messages


def _deployment_messages() -> list[CheckMessage]:
    messages: list[CheckMessage] = []
    for site in [*postbud_sites(), *_alert_sites()[1]]:
        found = _resolve(site)
        for text in found.missing:
            messages.append(
                CheckWarning(
                    text,
                    hint="Mail fails until the file is there. If it is a secret mounted when "
                    "the container starts, this warning at build time is expected: run "
                    "'manage.py check --deploy' where the site runs.",
                    obj=site.name,
                    id="postbud.W001",
                )
            )
        settings = found.resolved.settings if found.resolved is not None else None
        for name in _FILES:
            path = getattr(settings, name, None)
            if not path or path == _STAND_IN:
                continue
            try:
                with open(path, "rb"):
                    pass
            except OSError as exc:
                messages.append(
                    CheckWarning(
                        f"The {name} {path!r} cannot be read: {exc.strerror or exc}.",
                        hint="Mail fails until the user the site runs as can read it "
                        "(chmod/chown, or the secret's mount options).",
                        obj=site.name,
                        id="postbud.W001",
                    )
                )
    return messages


# -- which mailers are postbud's --------------------------------------------------------------


def postbud_sites() -> list[Site]:
    """The site's mailers whose backend is django_postbud's (``EMAIL_BACKEND``, or each
    such ``MAILERS`` alias)."""
    if mailers_defined():
        mailers = django_settings.MAILERS
        if not isinstance(mailers, Mapping):
            return []
        return [
            Site(alias, _options_of(config), f"MAILERS[{alias!r}]")
            for alias, config in mailers.items()
            if isinstance(config, Mapping) and is_postbud(config.get("BACKEND", _SMTP_BACKEND))
        ]
    backend = getattr(django_settings, "EMAIL_BACKEND", _SMTP_BACKEND)
    return [Site(None, {}, "EMAIL_BACKEND")] if is_postbud(backend) else []


def _alert_sites() -> tuple[bool, list[Site]]:
    """Whether ``LOGGING`` has an ``AdminAlertHandler``, and those of them that send
    through postbud, each with its own postbud settings over its mailer's OPTIONS."""
    logging_config = getattr(django_settings, "LOGGING", None)
    handlers = logging_config.get("handlers") if isinstance(logging_config, Mapping) else None
    if not isinstance(handlers, Mapping):
        return False, []
    found, sites = False, []
    for name, config in handlers.items():
        if not isinstance(config, Mapping):
            continue
        factory = config.get("()", config.get("class"))
        if not _is_subclass(factory, AdminAlertHandler):
            continue
        found = True
        own = {k: v for k, v in config.items() if k not in _HANDLER_KEYS}
        if mailers_defined():
            alias: str | None = config.get("using") or "default"
            mailers = django_settings.MAILERS
            entry = mailers.get(alias) if isinstance(mailers, Mapping) else None
            if not isinstance(entry, Mapping):
                continue  # the handler says so itself (and logs it) when it first sends
            backend, options = entry.get("BACKEND", _SMTP_BACKEND), _options_of(entry)
        else:
            alias, options = None, {}
            backend = config.get("email_backend") or getattr(
                django_settings, "EMAIL_BACKEND", _SMTP_BACKEND
            )
        if is_postbud(backend):
            sites.append(Site(alias, {**options, **own}, f"LOGGING['handlers'][{name!r}]"))
    return found, sites


def _options_of(config: Mapping[str, Any]) -> Mapping[str, Any]:
    options = config.get("OPTIONS") or {}
    return options if isinstance(options, Mapping) else {}


def is_postbud(backend: object) -> bool:
    """Whether ``backend`` (a class or its dotted path) is django_postbud's backend."""
    return _is_subclass(backend, EmailBackend)


def _is_subclass(value: object, base: type) -> bool:
    """Whether ``value`` (a class or its dotted path) is ``base`` or a subclass; a path
    that does not import is not (Django reports that itself)."""
    if isinstance(value, str):
        try:
            value = import_string(value)
        except Exception:
            return False
    return isinstance(value, type) and issubclass(value, base)


# -- resolving, as the backend does ----------------------------------------------------------


def _resolve(site: Site) -> _Found:
    """``resolve()`` of the site, with a missing credentials file of its options replaced
    by a stand-in so the rest is still checked (the file is the deploy check's job)."""
    found = _Found()
    options = dict(site.options)
    for _ in range(len(_FILES) + 1):  # each file at most once, then the rest
        try:
            found.resolved = resolve(site.alias, options)
        except postbud.ConfigurationError as exc:
            missing = _missing_file(exc)
            if missing is None:
                found.error = exc
                return found
            key, text = missing
            found.missing.append(text)
            if key not in options:
                return found  # from POSTBUD or the environment: the rest waits for it
            options[key] = _STAND_IN
            continue
        except Exception as exc:
            found.error = exc
        return found
    return found


def _missing_file(exc: Exception) -> tuple[str, str] | None:
    """(the options key, the sentence) of a missing credentials file error, else None."""
    match = _MISSING_FILE.search(str(exc))
    if match is None:
        return None
    name = _FILES[0] if match["kind"].startswith("authorized") else _FILES[1]
    # A key of the options is spelled as itself, or as MAILERS["x"]["OPTIONS"]["key"].
    spelled = match["key"]
    key = name if spelled == name or spelled.endswith(f'["OPTIONS"]["{name}"]') else ""
    return key, str(exc)


def _configuration_error(site: Site, exc: Exception) -> CheckMessage:
    if not isinstance(exc, postbud.ConfigurationError):
        return _crashed(site.name, exc)
    text = str(exc)
    for check_id, pattern, hint in _KINDS:
        if pattern.search(text):
            return Error(text, hint=hint, obj=site.name, id=check_id)
    return Error(text, hint=_E006_HINT, obj=site.name, id="postbud.E006")


# -- the checks of single settings ------------------------------------------------------------


def _unknown_postbud_keys() -> list[CheckMessage]:
    """postbud.E005 for every unknown ``POSTBUD`` key at once (the backend stops at the
    first), in the backend's words."""
    given = getattr(django_settings, "POSTBUD", None)
    if not isinstance(given, Mapping):
        return []
    names = [f.name.upper() for f in dataclasses.fields(postbud.Settings)] + list(ADAPTER_KEYS)
    messages: list[CheckMessage] = []
    for key in given:
        upper = key.upper() if isinstance(key, str) else ""
        if upper in names:
            continue
        close = difflib.get_close_matches(upper, names, n=1)
        fix = f' Did you mean POSTBUD["{close[0]}"]?' if close else ""
        messages.append(
            Error(
                f'Unknown postbud setting POSTBUD["{key}"].{fix}',
                hint=_E005_HINT,
                obj="POSTBUD",
                id="postbud.E005",
            )
        )
    return messages


def _background_without_spool(site: Site, resolved: Resolved) -> list[CheckMessage]:
    if not resolved.background or resolved.settings.spool is not None:
        return []
    return [
        CheckWarning(
            "BACKGROUND is on but the outbox keeps its queue in memory (the spool is empty): "
            "mail queued and not yet sent is lost when the process stops or restarts.",
            hint='Point POSTBUD["SPOOL"] at a file on a local disk that every process of '
            "the site can write (or remove SPOOL and an empty POSTBUD_SPOOL for the default "
            "in the user's cache directory).",
            obj=site.name,
            id="postbud.W003",
        )
    ]


def _machines_without_state(resolved: Resolved) -> list[CheckMessage]:
    """postbud.W005: the site says it runs on several machines (``POSTBUD["MACHINES"]``,
    nothing else tells: ALLOWED_HOSTS names sites, not machines), and the shared state
    is each machine's own spool."""
    machines = resolved.machines
    if machines <= 1 or resolved.settings.state is not None:
        return []
    limit = resolved.settings.daily_limit
    return [
        CheckWarning(
            f'POSTBUD["MACHINES"] is {machines} but the state postbud shares is each '
            "machine's own spool (no STATE): each machine then counts its own daily limit "
            f"(together up to {machines} × {limit} recipients a day of one account; Gmail "
            "suspends sending for up to a day past the limit) and mails its own copy of "
            "each alert.",
            hint='Set POSTBUD["STATE"] = "redis://…" (one Redis every machine reaches; '
            'its password in POSTBUD["STATE_PASSWORD"]; see docs/several-machines.md), or '
            'POSTBUD["MACHINES"] = 1 if the site runs on one machine.',
            obj="POSTBUD",
            id="postbud.W005",
        )
    ]


def _state_urls_with_a_password(sites: list[Site]) -> list[CheckMessage]:
    """postbud.W006: a password inside a ``STATE`` URL. postbud keeps it apart from the
    URL, but Django's error reports (the DEBUG page, the report mailed to ADMINS) list
    the settings as the site wrote them, hiding only keys named like a secret
    (``STATE_PASSWORD`` is, ``STATE`` is not)."""
    given = getattr(django_settings, "POSTBUD", None)
    found = [
        (f'POSTBUD["{key}"]', value)
        for key, value in (given.items() if isinstance(given, Mapping) else ())
        if isinstance(key, str) and key.upper() == "STATE"
    ]
    for site in sites:  # a MAILERS alias's OPTIONS
        if site.alias is not None and "state" in site.options:
            found.append((f'MAILERS["{site.alias}"]["OPTIONS"]["state"]', site.options["state"]))
    messages: list[CheckMessage] = []
    for where, value in found:
        if not isinstance(value, str) or not _has_password(value):
            continue
        messages.append(
            CheckWarning(
                f"{where} holds the Redis password: Django's error reports (the DEBUG page, "
                "the report mailed to ADMINS) list the settings as written and hide only "
                "keys named like a secret, so they show it.",
                hint='Write the URL without it ("redis://host:6379/0") and put the password '
                'in POSTBUD["STATE_PASSWORD"] (hidden in those reports) or in the '
                "POSTBUD_STATE_PASSWORD environment variable.",
                obj=where,
                id="postbud.W006",
            )
        )
    return messages


def _has_password(url: str) -> bool:
    try:
        return bool(urllib.parse.urlsplit(url.strip()).password)
    except ValueError:  # not a URL: the backend's error (E006) says so
        return False


def _foreign_senders(
    sites: list[tuple[Site, Resolved]], handlers: list[Site]
) -> list[CheckMessage]:
    """postbud.W002: a From that Gmail rewrites. ``DEFAULT_FROM_EMAIL`` against the
    default mailer; ``SERVER_EMAIL`` against the mailers that send error mail."""
    admins = bool(
        getattr(django_settings, "ADMINS", None) or getattr(django_settings, "MANAGERS", None)
    )
    messages: list[CheckMessage] = []
    for site, resolved in sites:
        names = ["SERVER_EMAIL"] if site in handlers else ["DEFAULT_FROM_EMAIL"]
        if site not in handlers and admins:
            names.append("SERVER_EMAIL")
        account = resolved.settings.username
        for name in names:
            value = str(getattr(django_settings, name, "") or "")
            address = email.utils.parseaddr(value)[1]
            if address.lower() == account.lower():
                continue
            default = "" if django_settings.is_overridden(name) else " (Django's default)"
            messages.append(
                CheckWarning(
                    f"{name} {value!r}{default} is not the account postbud logs in as "
                    f"({account}): Gmail sends such mail From {account} unless the address "
                    "is a verified 'Send mail as' alias of the account.",
                    hint=f"Set {name} to the account (a display name is fine: "
                    f"'Site <{account}>'), or, if it is a verified alias, silence this "
                    "warning: SILENCED_SYSTEM_CHECKS = ['postbud.W002'].",
                    obj=name,
                    id="postbud.W002",
                )
            )
    return messages


def _client_certificate() -> list[CheckMessage]:
    """postbud.W004: Django's ``EMAIL_SSL_CERTFILE``/``KEYFILE`` are a client certificate,
    which the backend does not use (only read when the site set them)."""
    given = [
        name
        for name in ("EMAIL_SSL_CERTFILE", "EMAIL_SSL_KEYFILE")
        if django_settings.is_overridden(name) and getattr(django_settings, name, None)
    ]
    if not given:
        return []
    return [
        CheckWarning(
            f"{' and '.join(given)} {'is' if len(given) == 1 else 'are'} set: in Django that "
            "is a client certificate, which Gmail does not ask for; postbud does not use it.",
            hint="To trust another CA (a test server, a TLS-inspecting proxy) set "
            'POSTBUD["CA_FILE"] to its PEM file; otherwise remove '
            f"{' and '.join(given)}.",
            obj=given[0],
            id="postbud.W004",
        )
    ]
