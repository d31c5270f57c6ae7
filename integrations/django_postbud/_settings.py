"""The one settings lookup of django_postbud: ``resolve()`` / ``settings_for()``.

The backend, the admin alert handler, the system checks and the management commands all
ask here, so a Django site is read one way everywhere, and every error names the setting
the way the site wrote it (``POSTBUD["PORT"]``, ``EMAIL_PORT``,
``MAILERS["default"]["OPTIONS"]["port"]``).
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import os
from collections.abc import Mapping
from typing import Any

import django
from django.conf import settings as django_settings
from django.core import mail as django_mail
from django.core.exceptions import ImproperlyConfigured as DjangoImproperlyConfigured

import postbud

__all__ = [
    "ADAPTER_KEYS",
    "OPTION_NAMES",
    "ImproperlyConfigured",
    "InvalidMailerError",
    "Resolved",
    "mailers_defined",
    "resolve",
    "settings_for",
]


class ImproperlyConfigured(DjangoImproperlyConfigured, postbud.ConfigurationError):
    """A postbud setting of the site is wrong: Django's ``ImproperlyConfigured`` (what
    Django code catches) and postbud's ``ConfigurationError`` (never swallowed by
    ``fail_silently``). The message names the setting as the site wrote it."""


class _NoMailers(ImproperlyConfigured):
    """Stands in for ``django.core.mail.InvalidMailer`` on Django < 6.1 (no MAILERS)."""


_InvalidMailer: Any = getattr(django_mail, "InvalidMailer", None) or _NoMailers


class InvalidMailerError(_InvalidMailer, ImproperlyConfigured):
    """A ``MAILERS`` alias of django_postbud is wrong: Django's ``InvalidMailer`` (as
    Django's own backends raise for bad OPTIONS), also ``ImproperlyConfigured`` and
    postbud's ``ConfigurationError``."""

    def __init__(self, message: str, *, alias: str | None = None) -> None:
        # Django's InvalidMailer puts "MAILERS['x']: " first when given the alias; the
        # texts that name MAILERS["x"]["OPTIONS"][...] themselves come without it.
        super().__init__(f"MAILERS[{alias!r}]: {message}" if alias is not None else message)


@dataclasses.dataclass(frozen=True)
class Resolved:
    """What the lookup found for one mailer.

    Attributes:
        settings: The postbud ``Settings`` (the registry's key: equal settings share
            one Mailer, so one connection, one token cache, one outbox).
        background: The adapter-only ``BACKGROUND`` key (``"background"`` option or
            ``POSTBUD["BACKGROUND"]``): ``send_messages`` queues instead of sending.
        alias: The ``MAILERS`` alias, or None for a site without ``MAILERS``.
        machines: The adapter-only ``POSTBUD["MACHINES"]``: how many machines the site
            runs on (default 1). Only the system checks read it (``postbud.W005``:
            several machines and no shared ``STATE``).
    """

    settings: postbud.Settings
    background: bool = False
    alias: str | None = None
    machines: int = 1


_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(postbud.Settings))
# Who logs in: the first level that sets any of these gives all of them (DESIGN.md), so a
# POSTBUD OAuth token file is never combined with a legacy EMAIL_HOST_PASSWORD.
CREDENTIALS = postbud.Settings.CREDENTIALS
_SECRETS = frozenset(
    {"app_password", "oauth_client_secret", "oauth_refresh_token", "state_password"}
)
# What one process shares between its mailers: the only keys POSTBUD (and the POSTBUD_*
# environment) may give under MAILERS. An alias's account and connection come from its
# OPTIONS alone.
_PROCESS_WIDE = frozenset(
    {
        "spool",
        "state",
        "state_password",
        "queue_size",
        "exit_timeout",
        "max_age",
        "alert_cooldown",
        "alert_cap",
        "alert_tag",
        "alert_reserve",
        "alert_max_share",
    }
) & frozenset(_FIELDS)
# Django's SMTP names (what get_connection(), send_mail(auth_user=, auth_password=) and
# OPTIONS written for Django's SMTP backend pass).
_ALIASES = {"password": "app_password"}
_TLS_FLAGS = {"use_ssl": "ssl", "use_tls": "starttls"}
_BACKGROUND = "background"
# How many machines the site runs on: a POSTBUD key of the site, never an option (it is
# the whole site's, not one mailer's), read only by the checks (postbud.W005).
_MACHINES = "machines"
#: The POSTBUD keys of the Django adapter alone (not Settings fields), in capitals.
ADAPTER_KEYS = ("BACKGROUND", "MACHINES")
#: Every keyword argument / MAILERS option the backend takes for itself.
OPTION_NAMES = frozenset({*_FIELDS, *_ALIASES, *_TLS_FLAGS, _BACKGROUND})
# Django's legacy settings, read only when the site set them (Django defines
# EMAIL_HOST="localhost" and EMAIL_PORT=25 for everyone) and MAILERS is not defined.
# EMAIL_SSL_CERTFILE/KEYFILE are a *client* certificate in Django: never mapped.
_LEGACY = {
    "EMAIL_HOST_USER": "username",
    "EMAIL_HOST_PASSWORD": "app_password",
    "EMAIL_HOST": "host",
    "EMAIL_PORT": "port",
    "EMAIL_TIMEOUT": "timeout",
}
_LEGACY_TLS = {"EMAIL_USE_SSL": "ssl", "EMAIL_USE_TLS": "starttls"}
_ENV_PREFIX = "POSTBUD_"
log = logging.getLogger("postbud")


def mailers_defined() -> bool:
    """Whether the site configures mail with Django 6.1's ``MAILERS`` (older Djangos
    ignore a ``MAILERS`` setting, so this does too)."""
    return django.VERSION >= (6, 1) and hasattr(django_settings, "MAILERS")


def settings_for(
    alias: str | None = None, options: Mapping[str, Any] | None = None
) -> postbud.Settings:
    """The postbud ``Settings`` of a mailer: ``resolve(alias, options).settings``."""
    return resolve(alias, options).settings


def resolve(alias: str | None = None, options: Mapping[str, Any] | None = None) -> Resolved:
    """Look a mailer's settings up, in this order (the first level that has a value wins):

    1. ``options``: the backend's keyword arguments, i.e. ``MAILERS[alias]["OPTIONS"]``
       or what ``get_connection(**kwargs)`` passes. Lower-case postbud names
       (``username``, ``app_password``, ``oauth_token_file``, ``port``...), Django's SMTP
       names as aliases (``password`` is the app password, ``use_ssl``/``use_tls`` set
       ``security``; ``username``, ``host``, ``port``, ``timeout`` are the same), and
       ``background``. None means "not given". An unknown name raises (with the closest
       valid one): ``InvalidMailerError`` under ``MAILERS``, else ``ImproperlyConfigured``.
    2. ``settings.POSTBUD``: a dict of upper-case postbud names plus ``BACKGROUND`` and
       ``MACHINES`` (how many machines the site runs on, an int >= 1; only the checks
       read it). Under ``MAILERS`` it holds only what the process shares (``SPOOL``,
       ``STATE``, ``STATE_PASSWORD``, ``QUEUE_SIZE``, ``EXIT_TIMEOUT``, ``MAX_AGE``, the
       ``ALERT_*`` policy, ``MACHINES``, and ``BACKGROUND`` as every alias's default): an
       account or a connection setting there raises, it belongs in the alias's OPTIONS.
    3. Django's legacy settings, only without ``MAILERS`` and only those the site set
       (``settings.is_overridden``): ``EMAIL_HOST_USER``, ``EMAIL_HOST_PASSWORD`` (the app
       password), ``EMAIL_HOST``, ``EMAIL_PORT``, ``EMAIL_USE_SSL``/``EMAIL_USE_TLS``,
       ``EMAIL_TIMEOUT``. ``EMAIL_SSL_CERTFILE`` is a client certificate: never read.
    4. The ``POSTBUD_*`` environment (empty means unset, but ``POSTBUD_SPOOL=""`` means
       memory); under ``MAILERS`` only the process-wide names of level 2.
    5. postbud's defaults (``Settings``).

    Credentials resolve as one group: the first level that sets any of ``username``,
    ``app_password``, ``oauth_*`` (but ``oauth_token_uri``), ``service_account_file`` or
    ``auth`` gives all of them. ``port`` and ``security`` follow each other across
    levels as in ``Settings.replace``: a ``security`` above drops a Gmail port (465, 587)
    from below, a Gmail port above drops the ``security`` from below.

    ``alias=None`` under ``MAILERS`` means ``"default"``; with ``options=None`` and an
    alias, the alias's OPTIONS are read from ``MAILERS`` (whatever its BACKEND). Errors
    are ``ImproperlyConfigured`` (``InvalidMailerError`` for an alias), both also
    ``postbud.ConfigurationError``, naming the key as the site wrote it.
    """
    mailers = mailers_defined()
    if mailers and alias is None:
        alias = "default"
    if not mailers:
        if alias not in (None, "default"):
            raise ImproperlyConfigured(
                f"Mailer alias {alias!r} needs settings.MAILERS (Django 6.1 or later); "
                "this site has none."
            )
        alias = None
    if options is None and alias is not None:
        options = _alias_options(alias)
    error = InvalidMailerError if alias is not None else ImproperlyConfigured
    levels = [_options_level(options or {}, alias)]
    levels.append(_postbud_level(mailers, alias, error))
    if not mailers:
        levels.append(_legacy_level())
    levels.append(_env_level(mailers, error))
    background = _background(levels, error)
    machines = _machines(levels, error)
    home = _home(levels, alias)
    layers = [(level.values, _spelling_of(level, home)) for level in levels]
    try:
        settings = postbud.Settings.from_layers(layers, unnamed=home)
    except postbud.MissingDependencyError:
        raise
    except postbud.ConfigurationError as exc:
        # from None: the cause's frames (Settings.__init__) hold the secrets as locals.
        raise error(str(exc)) from None
    return Resolved(settings, background, alias, machines)


# -- the levels -------------------------------------------------------------------------


@dataclasses.dataclass
class _Level:
    """The values one place of the site gives, and how the site spelled each key."""

    where: str  # "options", "postbud", "legacy", "env"
    values: dict[str, Any] = dataclasses.field(default_factory=dict)
    spelling: dict[str, str] = dataclasses.field(default_factory=dict)
    background: tuple[Any, str] | None = None  # (value, spelling)
    machines: tuple[Any, str] | None = None  # (value, spelling), POSTBUD only

    def put(self, name: str, value: Any, spelled: str) -> None:
        if name in _SECRETS and isinstance(value, str):
            # A Secret at once: a frame's locals and the values' reprs never show it.
            value = postbud.Secret(value)
        self.values[name] = value
        self.spelling[name] = spelled


def _alias_options(alias: str) -> Mapping[str, Any]:
    config = (
        django_settings.MAILERS.get(alias) if isinstance(django_settings.MAILERS, Mapping) else None
    )
    if not isinstance(config, Mapping):
        raise InvalidMailerError(f"The mailer {alias!r} is not configured in settings.MAILERS.")
    options = config.get("OPTIONS", {})
    if not isinstance(options, Mapping):
        raise InvalidMailerError(
            f"OPTIONS must be a dict, got {type(options).__name__}.", alias=alias
        )
    return options


def _given(name: str, value: Any) -> bool:
    """None (and an empty string) mean "not given, ask the next level"; for ``spool``
    they are a value: keep the queue in memory."""
    return name == "spool" or (value is not None and value != "")


def _options_level(options: Mapping[str, Any], alias: str | None) -> _Level:
    level = _Level("options")
    error = InvalidMailerError if alias is not None else ImproperlyConfigured

    def spell(key: str) -> str:
        return f'MAILERS["{alias}"]["OPTIONS"]["{key}"]' if alias is not None else key

    valid = sorted(OPTION_NAMES)
    flags: dict[str, str] = {}
    for key, value in options.items():
        if not isinstance(key, str) or (key not in valid):
            raise _unknown_option(key, valid, alias)
        if key == _BACKGROUND:
            level.background = (value, spell(key))
            continue
        if key in _TLS_FLAGS:
            if value is not None and not isinstance(value, bool):
                raise error(f"{spell(key)} must be True or False, got {value!r}.")
            if value:
                flags[key] = _TLS_FLAGS[key]
            continue
        name = _ALIASES.get(key, key)
        if name in level.spelling:
            raise error(f"{level.spelling[name]} and {spell(key)} are the same setting: keep one.")
        if _given(name, value):
            level.put(name, value, spell(key))
    if len(flags) > 1:
        raise error(
            f"{spell('use_ssl')} and {spell('use_tls')} are both True: keep one (use_ssl for "
            "port 465, TLS from the first byte; use_tls for port 587, STARTTLS)."
        )
    for key, security in flags.items():
        if "security" in level.spelling:
            raise error(
                f"{level.spelling['security']} and {spell(key)} are the same setting: keep one."
            )
        level.put("security", security, spell(key))
    return level


def _unknown_option(key: object, valid: list[str], alias: str | None) -> ImproperlyConfigured:
    text = str(key)
    close = difflib.get_close_matches(text.lower(), valid, n=1)
    if not close and text.lower() in valid:
        close = [text.lower()]
    if alias is not None:
        fix = f" Did you mean {close[0]!r}?" if close else ""
        return InvalidMailerError(
            f"Unknown option {text!r} for django_postbud.EmailBackend.{fix}", alias=alias
        )
    if key in ("ssl_certfile", "ssl_keyfile"):
        return ImproperlyConfigured(
            f"{text} is a client certificate, which Gmail does not use; to trust another "
            "CA, pass ca_file."
        )
    fix = f" Did you mean {close[0]}?" if close else ""
    return ImproperlyConfigured(f"Unknown postbud setting {text}.{fix}")


def _postbud_level(mailers: bool, alias: str | None, error: type[ImproperlyConfigured]) -> _Level:
    level = _Level("postbud")
    site = getattr(django_settings, "POSTBUD", None)
    if site is None:
        return level
    if not isinstance(site, Mapping):
        raise error(f"settings.POSTBUD must be a dict, got {type(site).__name__}.")
    names = [*(n.upper() for n in _FIELDS), *ADAPTER_KEYS]
    for key, value in site.items():
        spelled = f'POSTBUD["{key}"]'
        upper = key.upper() if isinstance(key, str) else ""
        if upper not in names:
            close = difflib.get_close_matches(upper, names, n=1)
            fix = f' Did you mean POSTBUD["{close[0]}"]?' if close else ""
            raise error(f"Unknown postbud setting {spelled}.{fix}")
        name = upper.lower()
        if name == _BACKGROUND:
            level.background = (value, spelled)
            continue
        if name == _MACHINES:  # the site's, so allowed under MAILERS too
            level.machines = (value, spelled)
            continue
        if mailers and name not in _PROCESS_WIDE:
            raise error(
                f"{spelled} is not read when settings.MAILERS is defined: POSTBUD holds only "
                "what the process shares (spool, state, alert policy); put it in each "
                f'alias\'s OPTIONS, as MAILERS["{alias}"]["OPTIONS"]["{name}"].'
            )
        if _given(name, value):
            level.put(name, value, spelled)
    return level


def _legacy_level() -> _Level:
    level = _Level("legacy")
    for setting, name in _LEGACY.items():
        value = _overridden(setting)
        if _given(name, value):
            level.put(name, value, setting)
    on = {s: sec for s, sec in _LEGACY_TLS.items() if _overridden(s)}
    if len(on) > 1:
        raise ImproperlyConfigured(
            "EMAIL_USE_SSL and EMAIL_USE_TLS are both True: keep one (EMAIL_USE_SSL for port "
            "465, TLS from the first byte; EMAIL_USE_TLS for port 587, STARTTLS)."
        )
    for setting, security in on.items():
        level.put("security", security, setting)
    return level


def _overridden(setting: str) -> Any:
    """The site's own value of a legacy setting, or None when it kept Django's default."""
    if not django_settings.is_overridden(setting):
        return None
    try:
        return getattr(django_settings, setting)
    except AttributeError:  # deleted by a test's override_settings
        return None


def _env_level(mailers: bool, error: type[ImproperlyConfigured]) -> _Level:
    level = _Level("env")
    for key, value in os.environ.items():
        if not key.upper().startswith(_ENV_PREFIX):
            continue
        name = key[len(_ENV_PREFIX) :].lower()
        if name not in _FIELDS:
            names = [_ENV_PREFIX + f.upper() for f in _FIELDS]
            close = difflib.get_close_matches(key.upper(), names, n=1)
            fix = f" Did you mean {close[0]}?" if close else ""
            raise error(f"Unknown postbud setting {key} in the environment.{fix}")
        if mailers and name not in _PROCESS_WIDE:
            continue  # the environment is shared with other programs (the CLI): not an error
        if value != "" or name == "spool":
            level.put(name, value, key)
    return level


# -- putting them together --------------------------------------------------------------


def _background(levels: list[_Level], error: type[ImproperlyConfigured]) -> bool:
    for level in levels:
        if level.background is not None:
            value, spelled = level.background
            if value is None:
                continue
            if not isinstance(value, bool):
                raise error(f"{spelled} must be True or False, got {value!r}.")
            return value
    return False


def _machines(levels: list[_Level], error: type[ImproperlyConfigured]) -> int:
    for level in levels:
        if level.machines is None or level.machines[0] is None:
            continue
        value, spelled = level.machines
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise error(
                f"{spelled} must be a whole number >= 1 (how many machines the site runs "
                f"on), got {value!r}."
            )
        return value
    return 1


def _spelling_of(level: _Level, home: Any) -> Any:
    """How ``level`` names a setting: as the site wrote it there, else where it would go."""
    return lambda name: level.spelling.get(name) or home(name)


def _home(levels: list[_Level], alias: str | None) -> Any:
    """How to name a setting no level gave (``username`` is missing): where the site
    would put it — the alias's OPTIONS; the legacy EMAIL_* name when the account comes
    from there; a keyword argument's name when it comes from get_connection(); else
    POSTBUD."""
    if alias is not None:
        return lambda name: f'MAILERS["{alias}"]["OPTIONS"]["{name}"]'
    account = next((lv for lv in levels if CREDENTIALS & lv.values.keys()), None)
    where = account.where if account is not None else "postbud"
    legacy = {name: setting for setting, name in _LEGACY.items()}

    def name_of(name: str) -> str:
        if where == "legacy" and name in legacy:
            return legacy[name]
        if where == "options":
            return name
        if where == "env":
            return _ENV_PREFIX + name.upper()
        return f'POSTBUD["{name.upper()}"]'

    return name_of
