"""Converting and checking one setting's value, as the user spelled the setting.

Values arrive as strings from the environment and config files, as numbers or paths
from code; each converter returns the value ``Settings`` stores or raises a
``ConfigurationError`` that names the setting the way the user wrote it ("port",
"POSTBUD_PORT", "PORT": ``spelled_as`` sets that for a block) and says how to fix it.
"""

from __future__ import annotations

import math
import os
import re
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Literal

from ._address import parse_address
from ._oauth import check_token_uri
from ._secret import Secret, as_secret
from .errors import ConfigurationError, InvalidMessageError

__all__ = [
    "GMAIL_HOST",
    "PORTS",
    "Security",
    "label",
    "mask_url",
    "spelled_as",
    "to_address",
    "to_endpoint",
    "to_host",
    "to_number",
    "to_path",
    "to_secret",
    "to_state",
    "to_text",
    "to_token_uri",
]

Security = Literal["ssl", "starttls"]
GMAIL_HOST = "smtp.gmail.com"
PORTS: dict[str, int] = {"ssl": 465, "starttls": 587}

# How the setting being checked is spelled where the user wrote it ("port",
# "POSTBUD_PORT", "PORT"); from_mapping() sets it so errors name the user's key.
_spelling: ContextVar[Callable[[str], str]] = ContextVar("postbud_spelling", default=str)


def label(name: str) -> str:
    """``name`` as the user spelled it where the value being checked came from."""
    return _spelling.get()(name)


@contextmanager
def spelled_as(spell: Callable[[str], str]) -> Iterator[None]:
    """Within the block, errors name a setting as ``spell(name)`` ("POSTBUD_PORT")."""
    token = _spelling.set(spell)
    try:
        yield
    finally:
        _spelling.reset(token)


def to_text(name: str, value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigurationError(f"{label(name)} must be a string, got {type(value).__name__}.")
    value = value.strip()
    if any(c in value for c in "\r\n\0"):
        raise ConfigurationError(f"{label(name)} contains a line break or NUL character.")
    return value or None


def to_host(value: str | None) -> str | None:
    # socket would raise UnicodeError from deep inside smtplib at the first send.
    try:
        if value is not None:
            value.encode("idna")
    except UnicodeError:
        raise ConfigurationError(
            f"{label('host')} {value!r} is not a valid host name (Gmail's is smtp.gmail.com)."
        ) from None
    return value


def to_secret(name: str, value: str | Secret | None) -> Secret | None:
    if isinstance(value, Secret) or value is None:
        return as_secret(value)
    if not isinstance(value, str):
        raise ConfigurationError(f"{label(name)} must be a string, got {type(value).__name__}.")
    return as_secret(value.strip())


def to_path(name: str, value: object, *, exists: bool) -> str | None:
    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)):
        raise ConfigurationError(f"{label(name)} must be a file path, got {type(value).__name__}.")
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
        raise ConfigurationError(f"{label(name)} {path!r} does not exist: point it at {what}.")
    return path


def to_number(
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
        raise ConfigurationError(f"{label(name)} must be {kind}, got {value!r}.") from None
    if not math.isfinite(number) or number < minimum or (maximum is not None and number > maximum):
        bound = f"between {minimum:g} and {maximum:g}" if maximum is not None else f">= {minimum:g}"
        raise ConfigurationError(f"{label(name)} must be {bound}, got {value!r}.")
    return number


def to_endpoint(security: object, port: object) -> tuple[Security, int]:
    sec = to_text("security", security)
    if sec is not None:
        sec = sec.lower()
        if sec not in PORTS:
            raise ConfigurationError(
                f"{label('security')} must be 'ssl' (TLS from the first byte, Gmail port "
                f"465) or 'starttls' (port 587), got {security!r}."
            )
    if port is None or port == "":
        resolved = PORTS[sec or "ssl"]
    else:
        resolved = int(to_number("port", port, minimum=1, maximum=65535, whole=True))
    if sec is None:
        # A port alone says which mode the user means: 587 is the STARTTLS port.
        sec = "starttls" if resolved == PORTS["starttls"] else "ssl"
    other = "starttls" if sec == "ssl" else "ssl"
    if resolved == PORTS[other]:
        raise ConfigurationError(
            f"{label('port')} {resolved} is Gmail's {other!r} port but "
            f"{label('security')} is {sec!r}: Gmail takes 'ssl' on port 465 and 'starttls' on "
            "port 587; change one of the two."
        )
    return sec, resolved  # type: ignore[return-value]


def to_address(name: str, value: str | None, *, required: bool) -> str:
    text = to_text(name, value)
    if text is None:
        if required:
            raise ConfigurationError(
                f"{label(name)} is missing: set it to the Gmail or Workspace address "
                "you send from, such as 'me@gmail.com'."
            )
        return ""
    try:
        address = parse_address(text)
    except InvalidMessageError:
        raise ConfigurationError(
            f"{label(name)} {text!r} is not an email address: use the full address, such "
            "as 'me@gmail.com'."
        ) from None
    # The account is a bare address; a sender may carry a display name.
    return address.addr_spec if name == "username" else str(address)


def to_token_uri(value: str | None) -> str | None:
    """An OAuth2 token endpoint the secrets may be posted to (see ``check_token_uri``)."""
    return None if value is None else check_token_uri(value, label("oauth_token_uri"))


# The password part of a redis:// URL (``redis://user:password@host``), wherever such a
# URL appears in a text: an error names the URL the user wrote, never its password.
# Up to the last "@" before the path, as urlsplit reads it: a password may hold "@"
# or a space, and no part of it may show.
_URL_PASSWORD = re.compile(r"(?i)(rediss?://[^\s/@:]*:)[^/]*@")
STATE_SCHEMES = ("redis", "rediss")


def mask_url(text: str) -> str:
    """``text`` with the password of every ``redis://`` URL in it replaced by ``********``."""
    return _URL_PASSWORD.sub(r"\1********@", text)


def to_state(value: object) -> tuple[str | None, Secret | None]:
    """The ``state`` setting: (the URL without its password, the URL's password).

    None or empty: the spool keeps the shared state (the default). Otherwise
    ``redis://[[user]:password@]host[:port][/db]`` or ``rediss://...`` (TLS). The
    password leaves the URL so that no repr, log line or error shows it; ``Settings``
    keeps it as ``state_password`` (the URL's wins over ``POSTBUD_STATE_PASSWORD``).
    A query string is refused: postbud sets the deadlines itself, and TLS is always
    verified (``ssl_cert_reqs=none`` must not be one option away).
    """
    text = to_text("state", value)
    if text is None:
        return None, None
    shown = mask_url(text)
    example = "such as redis://redis.internal:6379/0, or leave it empty for the spool"
    try:
        parts = urllib.parse.urlsplit(text)
        port = parts.port
        if port == 0:
            raise ValueError("port 0")
    except ValueError:
        raise ConfigurationError(
            f"{label('state')} {shown!r} is not a valid URL: the port must be a number "
            f"from 1 to 65535 ({example})."
        ) from None
    if parts.scheme.lower() not in STATE_SCHEMES:
        raise ConfigurationError(
            f"{label('state')} must be a redis:// or rediss:// URL, {example}; got {shown!r}."
        )
    if not parts.hostname:
        raise ConfigurationError(f"{label('state')} {shown!r} names no host ({example}).")
    if parts.query or parts.fragment:
        raise ConfigurationError(
            f"{label('state')} {shown!r} has a query string or fragment: postbud sets "
            "the timeouts itself and always verifies TLS; write only "
            "redis://[:password@]host:port/db."
        )
    db = parts.path.strip("/") or "0"
    if not db.isdigit():
        raise ConfigurationError(
            f"{label('state')} {shown!r}: the path must be a database number such as /0, "
            f"got {parts.path!r}."
        )
    host = parts.hostname
    if ":" in host:  # an IPv6 address keeps its brackets
        host = f"[{host}]"
    user = urllib.parse.unquote(parts.username) if parts.username else ""
    user_part = f"{urllib.parse.quote(user, safe='')}@" if user else ""
    url = f"{parts.scheme.lower()}://{user_part}{host}:{6379 if port is None else port}/{int(db)}"
    password = urllib.parse.unquote(parts.password) if parts.password else None
    return url, as_secret(password)
