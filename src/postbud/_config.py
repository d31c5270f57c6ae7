"""Settings: one vocabulary for every way postbud is configured.

Keyword arguments, ``POSTBUD_*`` environment variables, Django's ``POSTBUD`` dict and
Flask's ``POSTBUD_*`` config keys all end up here, so the names, the defaults and the
validation exist once. Values may arrive as strings (environment, config files); they
are converted and checked when a ``Settings`` is built, and every error names the
setting as the user spelled it and says how to fix it.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, TypedDict

from ._auth import AppPassword, Credentials
from ._convert import (
    GMAIL_HOST,
    PORTS,
    Security,
    label,
    spelled_as,
    to_address,
    to_endpoint,
    to_host,
    to_number,
    to_path,
    to_secret,
    to_state,
    to_text,
    to_token_uri,
)
from ._oauth import OAuth2
from ._secret import Secret, bare_password
from .errors import ConfigurationError

__all__ = [
    "CREDENTIAL_SETTINGS",
    "GMAIL_HOST",
    "PORTS",
    "Security",
    "Settings",
    "SettingsKwargs",
    "app_password_looks_wrong",
    "default_spool_path",
    "normal_app_password",
]

log = logging.getLogger("postbud")

_SECRET_FIELDS = frozenset(
    {"app_password", "oauth_client_secret", "oauth_refresh_token", "state_password"}
)
#: Who logs in: ``Settings.from_layers`` takes these as one group, from one place.
CREDENTIAL_SETTINGS = frozenset(
    {
        "username",
        "app_password",
        "auth",
        "oauth_token_file",
        "oauth_client_id",
        "oauth_client_secret",
        "oauth_refresh_token",
        "service_account_file",
    }
)
_OAUTH_USER_FIELDS = ("oauth_client_id", "oauth_client_secret", "oauth_refresh_token")


def default_spool_path(environ: Mapping[str, str] | None = None) -> str | None:
    """Where the spool lives when ``spool=`` is not given.

    ``POSTBUD_SPOOL`` if set (empty means in memory), else
    ``$XDG_CACHE_HOME/postbud/outbox.sqlite`` (``~/.cache`` when unset).
    """
    env = os.environ if environ is None else environ
    if "POSTBUD_SPOOL" in env:
        return os.path.expanduser(env["POSTBUD_SPOOL"]) or None
    cache = env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "postbud", "outbox.sqlite")


def normal_app_password(secret: Secret | None) -> Secret | None:
    """The app password as Gmail wants it: no spaces, no surrounding quotes.

    Google shows app passwords as ``abcd efgh ijkl mnop``, and a copy from the browser
    may bring non-breaking or zero-width spaces: every whitespace character inside is
    removed. Docker's ``--env-file`` keeps quotes as part of the value (a shell and
    systemd's ``EnvironmentFile=`` remove them), so one pair of surrounding quotes
    (``'...'`` or ``"..."``) is removed too, with one warning on the ``postbud``
    logger naming the setting as the user spelled it (``POSTBUD_APP_PASSWORD`` from
    the environment), never the value.

    Done here, for every source, so that what is sent, what is masked and what the
    outbox hashes to recognise a changed credential is one value.
    """
    if secret is None:
        return None
    value, quoted = bare_password(secret.reveal())
    if quoted and value:
        log.warning(
            "%s was given in quotes; postbud removed them. Docker's --env-file keeps "
            "quotes: write the 16 letters without quotes or spaces.",
            label("app_password"),
        )
    if value == secret.reveal():
        return secret
    return Secret(value) if value else None


def app_password_looks_wrong(secret: str | Secret | None) -> str | None:
    """Why this does not look like a Google app password, or None when it does.

    Google's app passwords are 16 letters (shown as four groups of four). Another value
    is not refused (a server other than Gmail may take another password); this only
    says what is suspicious, for ``postbud check`` and the like. The value is read as
    ``Settings`` reads it (spaces and surrounding quotes removed); the sentence never
    contains it, only its length.
    """
    if secret is None:
        return None
    value, _ = bare_password(secret.reveal() if isinstance(secret, Secret) else secret)
    if not value:
        return None
    others = sum(1 for c in value if not (c.isascii() and c.isalpha()))
    if len(value) != 16:
        count = f"{len(value)} character" + ("" if len(value) == 1 else "s")
    elif others == 1:
        count = "1 character that is not a letter"
    elif others:
        count = f"{others} characters that are not letters"
    else:
        return None
    return f"an app password is 16 letters; this value has {count} — is it your account password?"


class SettingsKwargs(TypedDict, total=False):
    """The settings vocabulary as keyword arguments (``Mailer(**settings)``).

    Used with ``Unpack`` so that ``mypy --strict`` and IDEs catch a misspelt name
    (``usernme=``) or a wrong type (``app_password=123``); at run time an unknown
    name still raises ``ConfigurationError`` with the closest valid one.
    """

    username: str | None
    app_password: str | Secret | None
    auth: Credentials | None
    oauth_token_file: str | os.PathLike[str] | None
    oauth_client_id: str | None
    oauth_client_secret: str | Secret | None
    oauth_refresh_token: str | Secret | None
    oauth_token_uri: str | None
    service_account_file: str | os.PathLike[str] | None
    sender: str | None
    host: str | None
    port: int | str | None
    security: str | None
    timeout: float | str
    ca_file: str | os.PathLike[str] | None
    spool: str | os.PathLike[str] | None
    state: str | None
    state_password: str | Secret | None
    daily_limit: int | str
    queue_size: int | str
    exit_timeout: float | str
    max_age: float | str
    alert_cooldown: float | str
    alert_cap: int | str
    alert_tag: str | None
    alert_reserve: float | str
    alert_max_share: float | str


@dataclasses.dataclass(frozen=True, init=False)
class Settings:
    """Everything a Mailer needs to know, validated when built.

    Build it from keyword arguments, ``Settings.from_env()`` or
    ``Settings.from_mapping(...)``. Values may be strings ("465", "30"): they are
    converted here. Invalid or contradictory values raise ``ConfigurationError``.

    Attributes:
        username: The Gmail (or Workspace) address that logs in and sends.
        app_password: A Google app password (16 letters; spaces, and one pair of
            surrounding quotes with a warning, are removed: ``normal_app_password``).
        auth: A credentials object (``postbud.AppPassword`` or ``postbud.OAuth2``).
        host, port, security: Where to connect: ``"ssl"`` (port 465, TLS from the
            first byte; the default) or ``"starttls"`` (port 587).
        timeout: Total deadline in seconds of one delivery attempt.
        ca_file: PEM file of CA certificates to trust instead of the system's.
        spool: Path of the outbox database, or None to keep the queue in memory.
        state: Where the state every process of the account shares lives (the quota
            ledger, the login pause, the hold): None for the spool, or a
            ``redis://host:port/db`` (``rediss://`` for TLS) URL for a fleet of
            machines. Stored without its password (see ``state_password``).
        state_password: The Redis password: the one in the ``state`` URL if it has
            one, else this (``POSTBUD_STATE_PASSWORD``). A redacted ``Secret``.

    ``Settings.CREDENTIALS`` names the settings that say who logs in (taken as one
    group by ``from_layers``).
    """

    CREDENTIALS: ClassVar[frozenset[str]] = CREDENTIAL_SETTINGS

    username: str
    app_password: Secret | None
    auth: Credentials | None
    oauth_token_file: str | None
    oauth_client_id: str | None
    oauth_client_secret: Secret | None
    oauth_refresh_token: Secret | None
    oauth_token_uri: str | None
    service_account_file: str | None
    sender: str | None
    host: str
    port: int
    security: Security
    timeout: float
    ca_file: str | None
    spool: str | None
    state: str | None
    state_password: Secret | None
    daily_limit: int
    queue_size: int
    exit_timeout: float
    max_age: float
    alert_cooldown: float
    alert_cap: int
    alert_tag: str | None
    alert_reserve: float
    alert_max_share: float

    def __init__(
        self,
        *,
        username: str | None = None,
        app_password: str | Secret | None = None,
        auth: Credentials | None = None,
        oauth_token_file: str | os.PathLike[str] | None = None,
        oauth_client_id: str | None = None,
        oauth_client_secret: str | Secret | None = None,
        oauth_refresh_token: str | Secret | None = None,
        oauth_token_uri: str | None = None,
        service_account_file: str | os.PathLike[str] | None = None,
        sender: str | None = None,
        host: str | None = None,
        port: int | str | None = None,
        security: str | None = None,
        timeout: float | str = 30.0,
        ca_file: str | os.PathLike[str] | None = None,
        spool: str | os.PathLike[str] | object | None = ...,
        state: str | None = None,
        state_password: str | Secret | None = None,
        daily_limit: int | str = 500,
        queue_size: int | str = 1000,
        exit_timeout: float | str = 5.0,
        max_age: float | str = 3 * 86400.0,
        alert_cooldown: float | str = 600.0,
        alert_cap: int | str = 10,
        alert_tag: str | None = None,
        alert_reserve: float | str = 0.1,
        alert_max_share: float | str = 0.5,
    ) -> None:
        put = object.__setattr__
        put(self, "username", to_address("username", username, required=True))
        put(self, "app_password", normal_app_password(to_secret("app_password", app_password)))
        put(self, "auth", auth)
        put(self, "oauth_token_file", to_path("oauth_token_file", oauth_token_file, exists=True))
        put(self, "oauth_client_id", to_text("oauth_client_id", oauth_client_id))
        put(self, "oauth_client_secret", to_secret("oauth_client_secret", oauth_client_secret))
        put(self, "oauth_refresh_token", to_secret("oauth_refresh_token", oauth_refresh_token))
        put(self, "oauth_token_uri", to_token_uri(to_text("oauth_token_uri", oauth_token_uri)))
        put(
            self,
            "service_account_file",
            to_path("service_account_file", service_account_file, exists=True),
        )
        put(self, "sender", to_address("sender", sender, required=False) or None)
        put(self, "host", to_host(to_text("host", host)) or GMAIL_HOST)
        sec, prt = to_endpoint(security, port)
        put(self, "security", sec)
        put(self, "port", prt)
        put(self, "timeout", to_number("timeout", timeout, minimum=0.001))
        put(self, "ca_file", to_path("ca_file", ca_file, exists=True))
        if spool is ...:
            put(self, "spool", default_spool_path())
        else:
            put(self, "spool", to_path("spool", spool, exists=False))
        # The URL's password wins over state_password (the precedence); either
        # way it is kept apart from the URL, as a Secret.
        url, url_password = to_state(state)
        put(self, "state", url)
        put(self, "state_password", url_password or to_secret("state_password", state_password))
        put(self, "daily_limit", int(to_number("daily_limit", daily_limit, minimum=1, whole=True)))
        put(self, "queue_size", int(to_number("queue_size", queue_size, minimum=1, whole=True)))
        put(self, "exit_timeout", to_number("exit_timeout", exit_timeout, minimum=0))
        put(self, "max_age", to_number("max_age", max_age, minimum=1))
        put(self, "alert_cooldown", to_number("alert_cooldown", alert_cooldown, minimum=0))
        put(self, "alert_cap", int(to_number("alert_cap", alert_cap, minimum=1, whole=True)))
        put(self, "alert_tag", to_text("alert_tag", alert_tag))
        put(
            self,
            "alert_reserve",
            to_number("alert_reserve", alert_reserve, minimum=0, maximum=0.99),
        )
        put(
            self,
            "alert_max_share",
            to_number("alert_max_share", alert_max_share, minimum=0, maximum=1),
        )
        self._check_credentials()

    # -- construction helpers -------------------------------------------------------

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read ``POSTBUD_*`` environment variables (``POSTBUD_USERNAME``, ...).

        Empty variables count as unset, except ``POSTBUD_SPOOL`` where empty means
        "keep the queue in memory". An unknown ``POSTBUD_*`` variable is an error
        (it is almost always a typo of a real one). ``overrides`` win over the
        environment.
        """
        _check_names(overrides, str)
        env = os.environ if environ is None else environ
        values = {k: v for k, v in env.items() if v != "" or k.upper() == "POSTBUD_SPOOL"}
        if not any(k.upper() == "POSTBUD_SPOOL" for k in values) and "spool" not in overrides:
            overrides["spool"] = default_spool_path(env)  # from this mapping, not os.environ
        return cls.from_mapping(values, prefix="POSTBUD_", **overrides)

    @classmethod
    def from_mapping(
        cls, mapping: Mapping[str, Any], prefix: str = "", **overrides: Any
    ) -> Settings:
        """Build settings from a mapping such as Django's ``POSTBUD`` dict.

        Keys are case-insensitive. With a ``prefix`` (``"POSTBUD_"`` for Flask's
        ``app.config``) only keys starting with it are read and the rest ignored;
        without one, every key must be a setting. Unknown keys raise
        ``ConfigurationError`` with the closest valid name.
        """
        up = prefix.upper()
        values: dict[str, Any] = {}
        for key, value in mapping.items():
            if isinstance(key, str) and key.upper().startswith(up):
                values[key[len(up) :].lower()] = value
        _check_names(values, lambda n: up + n.upper())
        _follow_mode(values, overrides)
        values.update(overrides)
        # Errors name a value as its user wrote it: POSTBUD_PORT from the mapping,
        # port from the overrides.
        with spelled_as(lambda n: n if n in overrides else up + n.upper()):
            return cls(**values)

    @classmethod
    def from_layers(
        cls,
        layers: Sequence[tuple[Mapping[str, Any], Callable[[str], str]]],
        *,
        unnamed: Callable[[str], str] | None = None,
    ) -> Settings:
        """Build settings from the several places a framework's configuration has.

        The precedence every adapter follows, highest first: explicit arguments → the
        framework's own postbud settings (Django's ``POSTBUD`` dict or a ``MAILERS``
        alias's ``OPTIONS``, Flask's ``POSTBUD_*`` config keys) → its legacy mail
        settings (Django's ``EMAIL_*``, Flask-Mail's ``MAIL_*``) → the ``POSTBUD_*``
        environment → the defaults of ``Settings``.

        Args:
            layers: ``(values, spell)`` pairs, highest first. ``values`` maps setting
                names (``port``) to what that place gives; None means "not given there".
                ``spell(name)`` is how that place names a setting (``POSTBUD_PORT``,
                ``MAIL_PORT``, ``POSTBUD["PORT"]``): every error and warning about a
                value names it so.
            unnamed: How to name a setting no layer gave (``sender`` is invalid...);
                by default as the first layer spells it. A missing credential is
                named as the layer that gave the others spells it (``MAIL_USERNAME``
                beside ``MAIL_PASSWORD``).

        A value from a higher layer wins, with two rules across layers:

        - **Credentials resolve as one group**: the first layer that gives any of
          ``CREDENTIAL_SETTINGS`` (``username``, ``app_password``, ``auth``,
          ``oauth_*`` but ``oauth_token_uri``, ``service_account_file``) gives all of
          them, so an OAuth2 token file above is never combined with an app password
          below.
        - ``port`` and ``security`` follow each other as in ``replace``: a
          ``security`` above drops a Gmail port (465, 587) from below, a Gmail port
          above drops a ``security`` from below; any other port stays.

        Raises ``ConfigurationError`` for an unknown name (with the closest valid one,
        spelled by its layer) and for every invalid value.
        """
        account = next(
            (
                i
                for i, (values, _) in enumerate(layers)
                if any(values.get(name) is not None for name in CREDENTIAL_SETTINGS)
            ),
            None,
        )
        merged: dict[str, Any] = {}
        came_from: dict[str, Callable[[str], str]] = {}
        for i in reversed(range(len(layers))):  # lowest first, each over those below
            values, spell = layers[i]
            _check_names(values, spell)
            given = {
                name: value
                for name, value in values.items()
                if value is not None and (name not in CREDENTIAL_SETTINGS or i == account)
            }
            _follow_mode(merged, given)
            merged.update(given)
            came_from.update(dict.fromkeys(given, spell))
        fallback = unnamed or (layers[0][1] if layers else str)
        chosen = {name: value for name, value in merged.items() if value is not None}

        def spelled(name: str) -> str:
            if name in chosen:
                return came_from[name](name)
            if name in CREDENTIAL_SETTINGS and account is not None:
                return layers[account][1](name)  # beside the rest of the account
            return fallback(name)

        with spelled_as(spelled):
            return cls(**chosen)

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> Settings:
        """Like ``Settings(**kwargs)``, but an unknown name raises ``ConfigurationError``
        with the closest valid one instead of a bare ``TypeError``."""
        _check_names(kwargs, str)
        return cls(**kwargs)

    def replace(self, **changes: Any) -> Settings:
        """Return a copy with some settings changed (validated again).

        Changing only ``security`` or only ``port`` follows the rule of ``from_env``'s
        overrides: Gmail's ports follow the mode (``replace(security="starttls")`` on
        port 465 gives 587, ``replace(port=587)`` gives STARTTLS); another port is kept
        when the mode changes, and keeps the mode when it is the new port.
        """
        _check_names(changes, str)
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        _follow_mode(values, changes)
        values.update(changes)
        return type(self)(**values)

    def app_password_looks_wrong(self) -> str | None:
        """Why ``app_password`` does not look like a Google app password (one sentence,
        without the value), or None when it does or is not set. See
        ``app_password_looks_wrong()`` of this module."""
        return app_password_looks_wrong(self.app_password)

    def credentials(self) -> Credentials:
        """The credentials object these settings describe."""
        if self.auth is not None:
            if not isinstance(self.auth, Credentials):
                raise ConfigurationError(
                    "auth must be a credentials object such as postbud.AppPassword(...) or "
                    f"postbud.OAuth2...; got {type(self.auth).__name__}."
                )
            return self.auth
        if self.app_password is not None:
            return AppPassword(self.app_password)
        token_uri = self.oauth_token_uri
        if self.oauth_token_file:
            return OAuth2.from_authorized_user_file(self.oauth_token_file, token_uri=token_uri)
        if self.service_account_file:
            return OAuth2.from_service_account_file(
                self.service_account_file, subject=self.username, token_uri=token_uri
            )
        # _check_credentials made sure exactly one kind is set and these are complete.
        assert self.oauth_client_id
        assert self.oauth_client_secret
        assert self.oauth_refresh_token
        return OAuth2.from_refresh_token(
            client_id=self.oauth_client_id,
            client_secret=self.oauth_client_secret.reveal(),
            refresh_token=self.oauth_refresh_token.reveal(),
            token_uri=token_uri,
        )

    # -- validation -----------------------------------------------------------------

    def _check_credentials(self) -> None:
        kinds = []
        if self.app_password:
            kinds.append("app_password")
        if self.auth is not None:
            kinds.append("auth")
        if self.oauth_token_file:
            kinds.append("oauth_token_file")
        if any(getattr(self, f) for f in _OAUTH_USER_FIELDS):
            kinds.append("oauth_client_id/oauth_client_secret/oauth_refresh_token")
        if self.service_account_file:
            kinds.append("service_account_file")
        if self.app_password:
            AppPassword(self.app_password)  # its format is checked here, not at first use
        if not kinds:
            raise ConfigurationError(
                f"No credentials for {self.username}: set {label('app_password')} to a "
                "Google app password (https://myaccount.google.com/apppasswords), or "
                f"{label('oauth_token_file')} to an OAuth2 token file (see docs/oauth.md)."
            )
        if len(kinds) > 1:
            raise ConfigurationError(
                "Two kinds of credentials are set ("
                + " and ".join(label(k) if "/" not in k else k for k in kinds)
                + "): keep exactly one."
            )
        if kinds[0].startswith("oauth_client_id"):
            missing = [label(f) for f in _OAUTH_USER_FIELDS if not getattr(self, f)]
            if missing:
                raise ConfigurationError(
                    f"OAuth2 with a refresh token needs {label('oauth_client_id')}, "
                    f"{label('oauth_client_secret')} and {label('oauth_refresh_token')}; "
                    f"missing: {', '.join(missing)}."
                )

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{f.name}={getattr(self, f.name)!r}"
            for f in dataclasses.fields(self)
            if getattr(self, f.name) is not None
        )
        return f"Settings({shown})"


def _follow_mode(below: dict[str, Any], given: Mapping[str, Any]) -> None:
    """One rule for ``port`` or ``security`` given over values from elsewhere.

    ``replace()``, ``Mailer(settings, security=...)`` and the overrides of ``from_env``
    / ``from_mapping`` (the command line's ``--port`` and ``--security``) all follow it:
    Gmail's ports 465 and 587 belong to a mode, so an old one follows a new
    ``security`` and a new one sets the mode; any other port was chosen on purpose (a
    relay, a tunnel, a test server), so it is kept when ``security`` changes, and a new
    one keeps the mode. Both given at one level are checked together, as when building.
    """
    if "security" in given and "port" not in given and _gmail_port(below.get("port")):
        below["port"] = None
    if "port" in given and "security" not in given and _gmail_port(given["port"]):
        below["security"] = None


def _gmail_port(value: object) -> bool:
    try:
        return not isinstance(value, bool) and int(str(value).strip()) in PORTS.values()
    except ValueError:
        return False


def _check_names(values: Mapping[str, Any], spell: Callable[[str], str]) -> None:
    names = [f.name for f in dataclasses.fields(Settings)]
    for name in values:
        if name not in names:
            close = difflib.get_close_matches(name, names, n=1)
            fix = f" Did you mean {spell(close[0])}?" if close else ""
            raise ConfigurationError(f"Unknown postbud setting {spell(name)}.{fix}")
