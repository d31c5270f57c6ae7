"""The one config lookup of flask_postbud: ``resolve()``, ``suppressed()``, the key names.

The extension, and later its alert handler and its ``flask postbud`` commands, all read
an app's config here, so the app is read one way everywhere and every error names the
key as the app wrote it (``POSTBUD_PORT``, ``MAIL_PORT``, ``$POSTBUD_PORT`` for the
environment). The precedence and the rules shared with Django (credentials as one
group, port and security following each other) are ``postbud.Settings.from_layers``'s.

Where each setting comes from, highest first:

1. ``app.config["POSTBUD_<NAME>"]`` for every ``postbud.Settings`` field
   (``POSTBUD_USERNAME``, ``POSTBUD_APP_PASSWORD``, ``POSTBUD_PORT``...). ``init_app``
   sets each to ``None``, which means "not given here"; so does ``""``, except that
   ``POSTBUD_SPOOL = ""`` keeps the outbox in memory. An unknown ``POSTBUD_*`` key is
   an error (it is almost always a typo), with the closest valid name.
2. Flask-Mail's keys, those the app set (to something other than ``None``):

   ==========================  ==========================================================
   Flask-Mail                  postbud
   ==========================  ==========================================================
   ``MAIL_SERVER``             ``host``
   ``MAIL_PORT``               ``port``
   ``MAIL_USE_SSL = True``     ``security = "ssl"`` (port 465: TLS from the first byte)
   ``MAIL_USE_TLS = True``     ``security = "starttls"`` (port 587); both True is an error
   ``MAIL_USERNAME``           ``username``
   ``MAIL_PASSWORD``           ``app_password`` (Gmail takes no account password)
   ``MAIL_DEFAULT_SENDER``     ``sender``: a string, or Flask-Mail's ``(name, address)``
   ``MAIL_SUPPRESS_SEND``      ``POSTBUD_SUPPRESS_SEND`` (when that one is not set)
   ==========================  ==========================================================

   ``MAIL_DEBUG``, ``MAIL_MAX_EMAILS`` and ``MAIL_ASCII_ATTACHMENTS`` are not read
   (postbud logs on the ``postbud`` logger, keeps one connection and writes file
   names as RFC 2231 wants). Flask-Mail's defaults (``127.0.0.1``, port 25, no TLS)
   are not postbud's: a key the app did not set counts as not given.
3. The ``POSTBUD_*`` environment: empty means unset, except ``POSTBUD_SPOOL=""``
   (memory); an unknown ``POSTBUD_*`` variable is an error, but the adapter-only
   names below may be there (for other Flask apps of the shell) and are ignored.
4. postbud's defaults (``postbud.Settings``).

Credentials (``username``, ``app_password``, ``auth``, ``oauth_*`` but
``oauth_token_uri``, ``service_account_file``) resolve as one group: the first level
that gives any of them gives all (a ``POSTBUD_OAUTH_TOKEN_FILE`` is never combined
with a ``MAIL_PASSWORD``).

Adapter-only keys, not ``Settings`` fields: ``POSTBUD_SUPPRESS_SEND`` (read at every
send; default ``app.testing``), ``POSTBUD_ALERTS_TO`` and ``POSTBUD_ALERTS_FORCE``.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Callable, Mapping
from typing import Any

import postbud

from ._message import format_address

__all__ = [
    "ADAPTER_KEYS",
    "CONFIG_KEYS",
    "CREDENTIALS",
    "has_credentials",
    "resolve",
    "suppressed",
    "unknown_key",
]

PREFIX = "POSTBUD_"
FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(postbud.Settings))
SUPPRESS_KEY = "POSTBUD_SUPPRESS_SEND"
ADAPTER_KEYS = (SUPPRESS_KEY, "POSTBUD_ALERTS_TO", "POSTBUD_ALERTS_FORCE")
#: Every key ``init_app`` sets to ``None`` (unset).
CONFIG_KEYS: tuple[str, ...] = (*(PREFIX + name.upper() for name in FIELDS), *ADAPTER_KEYS)
CREDENTIALS = postbud.Settings.CREDENTIALS
_SECRETS = frozenset(
    {"app_password", "oauth_client_secret", "oauth_refresh_token", "state_password"}
)
# Flask-Mail key -> postbud name (the TLS flags and the sender are handled apart).
_FLASK_MAIL = {
    "MAIL_SERVER": "host",
    "MAIL_PORT": "port",
    "MAIL_USERNAME": "username",
    "MAIL_PASSWORD": "app_password",
    "MAIL_DEFAULT_SENDER": "sender",
}
_TLS_FLAGS = {"MAIL_USE_SSL": "ssl", "MAIL_USE_TLS": "starttls"}
# Used in place of credentials under suppression when the app gives none (never sent).
_STAND_IN_USER = "suppressed@postbud.invalid"
_STAND_IN_PASSWORD = "suppressed-no-mail-leaves"  # noqa: S105 - not a secret: never used

Layer = tuple[Mapping[str, Any], Callable[[str], str]]


def has_credentials(config: Mapping[str, Any]) -> bool:
    """Whether the config sets any credential (``POSTBUD_*`` or Flask-Mail's), so that
    ``init_app`` can check the whole configuration at once."""
    keys = [PREFIX + name.upper() for name in CREDENTIALS] + ["MAIL_USERNAME", "MAIL_PASSWORD"]
    return any(config.get(key) not in (None, "") for key in keys)


def unknown_key(config: Mapping[str, Any]) -> postbud.ConfigurationError | None:
    """The error for the first unknown ``POSTBUD_*`` key of the config (a typo such as
    ``POSTBUD_USERNMAE``), with the closest valid key; None when all are known.
    ``init_app`` checks this at once, whatever else the factory fills in later."""
    for key in config:
        if isinstance(key, str) and key.startswith(PREFIX) and key not in CONFIG_KEYS:
            close = difflib.get_close_matches(key, CONFIG_KEYS, n=1)
            fix = f" Did you mean {close[0]}?" if close else ""
            return postbud.ConfigurationError(f"Unknown postbud setting {key}.{fix}")
    return None


def resolve(
    config: Mapping[str, Any],
    environ: Mapping[str, str] | None = None,
    *,
    stand_in_credentials: bool = False,
) -> postbud.Settings:
    """The app's ``postbud.Settings``, looked up as the module docstring says.

    Args:
        config: The app's config (``app.config``).
        environ: The environment (default ``os.environ``).
        stand_in_credentials: Ignore the credentials the app gives, but the username,
            and use stand-ins that never log in: for building mail under suppression,
            where missing credentials are not an error. Everything else is checked.

    Raises:
        postbud.ConfigurationError: Naming the key as the app wrote it.
    """
    layers = [_config_layer(config), _flask_mail_layer(config), _env_layer(environ)]
    if stand_in_credentials:
        layers = _with_stand_ins(layers)
    # from None: the cause's frames (Settings.__init__) hold the secrets as locals.
    try:
        return postbud.Settings.from_layers(layers)
    except postbud.ConfigurationError as exc:
        raise exc.with_traceback(None) from None


def suppressed(config: Mapping[str, Any], testing: bool) -> bool:
    """Whether sending is suppressed now: ``POSTBUD_SUPPRESS_SEND``, else Flask-Mail's
    ``MAIL_SUPPRESS_SEND``, else ``app.testing`` (read at every send: tests often set
    ``TESTING`` after the app was built)."""
    for key in (SUPPRESS_KEY, "MAIL_SUPPRESS_SEND"):
        value = config.get(key)
        if value is None:
            continue
        if not isinstance(value, bool):
            raise postbud.ConfigurationError(f"{key} must be True or False, got {value!r}.")
        return value
    return testing


# -- the layers -------------------------------------------------------------------------


def _given(name: str, value: Any) -> bool:
    """None and "" mean "not given here, ask the next level"; for ``spool`` "" is a
    value: keep the queue in memory."""
    return value is not None and (value != "" or name == "spool")


def _put(values: dict[str, Any], name: str, value: Any) -> None:
    if name in _SECRETS and isinstance(value, str):
        # A Secret at once: a frame's locals and the values' reprs never show it.
        value = postbud.Secret(value)
    values[name] = value


def _config_layer(config: Mapping[str, Any]) -> Layer:
    values: dict[str, Any] = {}
    for key, value in config.items():
        if not isinstance(key, str) or not key.startswith(PREFIX) or key in ADAPTER_KEYS:
            continue
        name = key[len(PREFIX) :].lower()
        # An unknown name goes in too: from_layers refuses it with the closest one.
        if _given(name, value):
            _put(values, name, value)
    return values, lambda name: PREFIX + name.upper()


def _flask_mail_layer(config: Mapping[str, Any]) -> Layer:
    values: dict[str, Any] = {}
    spelling: dict[str, str] = {}
    for key, name in _FLASK_MAIL.items():
        value = config.get(key)
        if not _given(name, value):
            continue
        if key == "MAIL_DEFAULT_SENDER":
            try:
                value = format_address(value, key)
            except (TypeError, ValueError) as exc:
                raise postbud.ConfigurationError(str(exc)) from None
        _put(values, name, value)
        spelling[name] = key
    on = []
    for key, security in _TLS_FLAGS.items():
        value = config.get(key)
        if value is None:
            continue
        if not isinstance(value, bool):
            raise postbud.ConfigurationError(f"{key} must be True or False, got {value!r}.")
        if value:
            on.append(key)
            values["security"] = security
            spelling["security"] = key
    if len(on) > 1:
        raise postbud.ConfigurationError(
            "MAIL_USE_SSL and MAIL_USE_TLS are both True: keep one (MAIL_USE_SSL for port "
            "465, TLS from the first byte; MAIL_USE_TLS for port 587, STARTTLS)."
        )
    # A credential no key gave ("set MAIL_PASSWORD") is named by the layer of the account.
    mail_names = {name: key for key, name in _FLASK_MAIL.items()}
    return values, lambda name: spelling.get(name) or mail_names.get(name, PREFIX + name.upper())


def _env_layer(environ: Mapping[str, str] | None) -> Layer:
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for key, value in env.items():
        upper = key.upper()
        if not upper.startswith(PREFIX) or upper in ADAPTER_KEYS:
            continue
        name = upper[len(PREFIX) :].lower()
        if _given(name, value):
            _put(values, name, value)
    return values, lambda name: "$" + PREFIX + name.upper()


def _with_stand_ins(layers: list[Layer]) -> list[Layer]:
    """The layers without their credentials, and a last one with the app's username
    (spelled where the app wrote it) and a stand-in password that is never used."""
    user: Any = _STAND_IN_USER
    user_spell: Callable[[str], str] = layers[0][1]
    for values, spell in layers:
        if _given("username", values.get("username")):
            user, user_spell = values["username"], spell
            break
    stripped: list[Layer] = [
        ({n: v for n, v in values.items() if n not in CREDENTIALS}, spell)
        for values, spell in layers
    ]
    stand_in = {"username": user, "app_password": postbud.Secret(_STAND_IN_PASSWORD)}
    return [*stripped, (stand_in, user_spell)]
