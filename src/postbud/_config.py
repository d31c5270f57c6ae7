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
import math
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Literal

from ._address import parse_address
from ._auth import AppPassword, credentials_from_settings
from ._secret import Secret, as_secret
from .errors import ConfigurationError, InvalidMessageError

if TYPE_CHECKING:
    from ._auth import Credentials

__all__ = ["GMAIL_HOST", "PORTS", "Security", "Settings", "default_spool_path"]

Security = Literal["ssl", "starttls"]
GMAIL_HOST = "smtp.gmail.com"
PORTS: dict[str, int] = {"ssl": 465, "starttls": 587}
_SECRET_FIELDS = frozenset({"app_password", "oauth_client_secret", "oauth_refresh_token"})
_OAUTH_USER_FIELDS = ("oauth_client_id", "oauth_client_secret", "oauth_refresh_token")

# How the setting being checked is spelled where the user wrote it ("port",
# "POSTBUD_PORT", "PORT"); from_mapping() sets it so errors name the user's key.
_spelling: ContextVar[Callable[[str], str]] = ContextVar("postbud_spelling", default=str)


def _label(name: str) -> str:
    return _spelling.get()(name)


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


@dataclasses.dataclass(frozen=True, init=False)
class Settings:
    """Everything a Mailer needs to know, validated when built.

    Build it from keyword arguments, ``Settings.from_env()`` or
    ``Settings.from_mapping(...)``. Values may be strings ("465", "30"): they are
    converted here. Invalid or contradictory values raise ``ConfigurationError``.

    Attributes:
        username: The Gmail (or Workspace) address that logs in and sends.
        app_password: A Google app password (16 letters; spaces are removed).
        auth: A credentials object (``postbud.AppPassword`` or ``postbud.OAuth2``).
        host, port, security: Where to connect: ``"ssl"`` (port 465, TLS from the
            first byte; the default) or ``"starttls"`` (port 587).
        timeout: Total deadline in seconds of one delivery attempt.
        ca_file: PEM file of CA certificates to trust instead of the system's.
        spool: Path of the outbox database, or None to keep the queue in memory.
    """

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
        put(self, "username", _address("username", username, required=True))
        put(self, "app_password", _secret("app_password", app_password))
        put(self, "auth", auth)
        put(self, "oauth_token_file", _path("oauth_token_file", oauth_token_file, exists=True))
        put(self, "oauth_client_id", _text("oauth_client_id", oauth_client_id))
        put(self, "oauth_client_secret", _secret("oauth_client_secret", oauth_client_secret))
        put(self, "oauth_refresh_token", _secret("oauth_refresh_token", oauth_refresh_token))
        put(self, "oauth_token_uri", _text("oauth_token_uri", oauth_token_uri))
        put(
            self,
            "service_account_file",
            _path("service_account_file", service_account_file, exists=True),
        )
        put(self, "sender", _address("sender", sender, required=False) or None)
        put(self, "host", _host(_text("host", host)) or GMAIL_HOST)
        sec, prt = _endpoint(security, port)
        put(self, "security", sec)
        put(self, "port", prt)
        put(self, "timeout", _number("timeout", timeout, minimum=0.001))
        put(self, "ca_file", _path("ca_file", ca_file, exists=True))
        if spool is ...:
            put(self, "spool", default_spool_path())
        else:
            put(self, "spool", _path("spool", spool, exists=False))
        put(self, "daily_limit", int(_number("daily_limit", daily_limit, minimum=1, whole=True)))
        put(self, "queue_size", int(_number("queue_size", queue_size, minimum=1, whole=True)))
        put(self, "exit_timeout", _number("exit_timeout", exit_timeout, minimum=0))
        put(self, "max_age", _number("max_age", max_age, minimum=1))
        put(self, "alert_cooldown", _number("alert_cooldown", alert_cooldown, minimum=0))
        put(self, "alert_cap", int(_number("alert_cap", alert_cap, minimum=1, whole=True)))
        put(self, "alert_tag", _text("alert_tag", alert_tag))
        put(
            self,
            "alert_reserve",
            _number("alert_reserve", alert_reserve, minimum=0, maximum=0.99),
        )
        put(
            self,
            "alert_max_share",
            _number("alert_max_share", alert_max_share, minimum=0, maximum=1),
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
        values.update(overrides)
        # Errors name a value as its user wrote it: POSTBUD_PORT from the mapping,
        # port from the overrides.
        with _spelled_as(lambda n: n if n in overrides else up + n.upper()):
            return cls(**values)

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> Settings:
        """Like ``Settings(**kwargs)``, but an unknown name raises ``ConfigurationError``
        with the closest valid one instead of a bare ``TypeError``."""
        _check_names(kwargs, str)
        return cls(**kwargs)

    def replace(self, **changes: Any) -> Settings:
        """Return a copy with some settings changed (validated again).

        Changing only ``port`` (or only ``security``) lets the other follow, as when
        building: ``replace(port=587)`` gives STARTTLS.
        """
        _check_names(changes, str)
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if "port" in changes and "security" not in changes:
            values["security"] = None
        if "security" in changes and "port" not in changes:
            values["port"] = None
        values.update(changes)
        return type(self)(**values)

    def credentials(self) -> Credentials:
        """The credentials object these settings describe."""
        return credentials_from_settings(self)

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
                f"No credentials for {self.username}: set {_label('app_password')} to a "
                "Google app password (https://myaccount.google.com/apppasswords), or "
                f"{_label('oauth_token_file')} to an OAuth2 token file (see docs/oauth.md)."
            )
        if len(kinds) > 1:
            raise ConfigurationError(
                "Two kinds of credentials are set ("
                + " and ".join(_label(k) if "/" not in k else k for k in kinds)
                + "): keep exactly one."
            )
        if kinds[0].startswith("oauth_client_id"):
            missing = [_label(f) for f in _OAUTH_USER_FIELDS if not getattr(self, f)]
            if missing:
                raise ConfigurationError(
                    "OAuth2 with a refresh token needs oauth_client_id, oauth_client_secret "
                    f"and oauth_refresh_token; missing: {', '.join(missing)}."
                )

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{f.name}={getattr(self, f.name)!r}"
            for f in dataclasses.fields(self)
            if getattr(self, f.name) is not None
        )
        return f"Settings({shown})"


def _check_names(values: Mapping[str, Any], spell: Callable[[str], str]) -> None:
    names = [f.name for f in dataclasses.fields(Settings)]
    for name in values:
        if name not in names:
            close = difflib.get_close_matches(name, names, n=1)
            fix = f" Did you mean {spell(close[0])}?" if close else ""
            raise ConfigurationError(f"Unknown postbud setting {spell(name)}.{fix}")


@contextmanager
def _spelled_as(spell: Callable[[str], str]) -> Iterator[None]:
    token = _spelling.set(spell)
    try:
        yield
    finally:
        _spelling.reset(token)


def _text(name: str, value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigurationError(f"{_label(name)} must be a string, got {type(value).__name__}.")
    value = value.strip()
    if any(c in value for c in "\r\n\0"):
        raise ConfigurationError(f"{_label(name)} contains a line break or NUL character.")
    return value or None


def _host(value: str | None) -> str | None:
    # socket would raise UnicodeError from deep inside smtplib at the first send.
    try:
        if value is not None:
            value.encode("idna")
    except UnicodeError:
        raise ConfigurationError(
            f"{_label('host')} {value!r} is not a valid host name (Gmail's is smtp.gmail.com)."
        ) from None
    return value


def _secret(name: str, value: str | Secret | None) -> Secret | None:
    if isinstance(value, Secret) or value is None:
        return as_secret(value)
    if not isinstance(value, str):
        raise ConfigurationError(f"{_label(name)} must be a string, got {type(value).__name__}.")
    return as_secret(value.strip())


def _path(name: str, value: object, *, exists: bool) -> str | None:
    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)):
        raise ConfigurationError(f"{_label(name)} must be a file path, got {type(value).__name__}.")
    path = os.path.expanduser(os.fspath(value))
    if not path:
        return None
    if exists and not os.path.isfile(path):
        what = {
            "ca_file": "a PEM file of CA certificates (or leave it unset to trust the "
            "system's certificates)",
            "oauth_token_file": "the authorized-user JSON file written by "
            "google-auth-oauthlib (see docs/oauth.md)",
            "service_account_file": "the service account key JSON downloaded from the "
            "Google Cloud console",
        }[name]
        raise ConfigurationError(f"{_label(name)} {path!r} does not exist: point it at {what}.")
    return path


def _number(
    name: str,
    value: object,
    *,
    minimum: float,
    maximum: float | None = None,
    whole: bool = False,
) -> float:
    kind = "a whole number" if whole else "a number"
    try:
        if isinstance(value, bool) or value is None:
            raise TypeError
        number = float(value) if not whole else int(str(value).strip())  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigurationError(f"{_label(name)} must be {kind}, got {value!r}.") from None
    if not math.isfinite(number) or number < minimum or (maximum is not None and number > maximum):
        bound = f"between {minimum:g} and {maximum:g}" if maximum is not None else f">= {minimum:g}"
        raise ConfigurationError(f"{_label(name)} must be {bound}, got {value!r}.")
    return number


def _endpoint(security: object, port: object) -> tuple[Security, int]:
    sec = _text("security", security)
    if sec is not None:
        sec = sec.lower()
        if sec not in PORTS:
            raise ConfigurationError(
                f"{_label('security')} must be 'ssl' (TLS from the first byte, Gmail port "
                f"465) or 'starttls' (port 587), got {security!r}."
            )
    if port is None or port == "":
        resolved = PORTS[sec or "ssl"]
    else:
        resolved = int(_number("port", port, minimum=1, maximum=65535, whole=True))
    if sec is None:
        # A port alone says which mode the user means: 587 is the STARTTLS port.
        sec = "starttls" if resolved == PORTS["starttls"] else "ssl"
    other = "starttls" if sec == "ssl" else "ssl"
    if resolved == PORTS[other]:
        raise ConfigurationError(
            f"{_label('port')} {resolved} is Gmail's {other!r} port but "
            f"{_label('security')} is {sec!r}: use security='ssl' with port 465, or "
            "security='starttls' with port 587."
        )
    return sec, resolved  # type: ignore[return-value]


def _address(name: str, value: str | None, *, required: bool) -> str:
    text = _text(name, value)
    if text is None:
        if required:
            raise ConfigurationError(
                f"{_label(name)} is missing: set it to the Gmail or Workspace address "
                "you send from, such as 'me@gmail.com'."
            )
        return ""
    try:
        address = parse_address(text)
    except InvalidMessageError:
        raise ConfigurationError(
            f"{_label(name)} {text!r} is not an email address: use the full address, such "
            "as 'me@gmail.com'."
        ) from None
    # The account is a bare address; a sender may carry a display name.
    return address.addr_spec if name == "username" else str(address)
