"""What ``postbud auth`` login, status and revoke share: files, extras and endpoints.

The token file is the authorized-user JSON that ``OAuth2.from_authorized_user_file``
reads (google-auth's format, plus ``account``: the address it was granted for). It is
found the same way by all three actions, written only at 0600 through a temporary file
and a rename, and never overwritten unless asked. The client file is checked here,
before any browser opens, so a "Web application" client or a service account key is
refused with what to do instead.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import stat
import urllib.parse
from pathlib import Path
from typing import Any

from postbud._oauth import GOOGLE_TOKEN_URI, check_token_uri, load_json
from postbud.errors import ConfigurationError

from ._common import require_extras

__all__ = [
    "TOKEN_ENV",
    "Stop",
    "default_token_file",
    "endpoint",
    "load_client",
    "read_token_file",
    "require_oauth",
    "token_file_of",
    "write_token_file",
]


class Stop(Exception):
    """An action ends without its result: one line, and an exit status (1 unless told:
    75 when Google could not be reached)."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


TOKEN_ENV = "POSTBUD_OAUTH_TOKEN_FILE"  # noqa: S105 - a variable name
_URI_ENV = "POSTBUD_OAUTH_TOKEN_URI"

#: What ``postbud auth`` imports (module: the package that brings it), all from the
#: oauth extra: checked first, so one message names every missing package.
_OAUTH = {
    "oauth": {
        "google.auth": "google-auth",
        "requests": "requests",
        "google_auth_oauthlib": "google-auth-oauthlib",
    }
}


def require_oauth() -> None:
    """Raise one ``MissingDependencyError`` naming every missing package of the oauth
    extra, with the pip command that brings them all."""
    require_extras("postbud auth", _OAUTH)


def default_token_file(environ: os._Environ[str] | dict[str, str] | None = None) -> Path:
    """``$XDG_CONFIG_HOME/postbud/token.json`` (``~/.config`` when unset): a file of
    configuration, not of cache (the spool's place), so backups keep it."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "postbud" / "token.json"


def token_file_of(args: argparse.Namespace) -> tuple[Path, str]:
    """The token file and how it was named: ``--token-file``, else
    ``POSTBUD_OAUTH_TOKEN_FILE`` (the file postbud sends with), else the default."""
    if getattr(args, "token_file", None):
        return Path(args.token_file).expanduser(), "--token-file"
    if os.environ.get(TOKEN_ENV):
        return Path(os.environ[TOKEN_ENV]).expanduser(), TOKEN_ENV
    return default_token_file(), "the default token file"


def endpoint(args: argparse.Namespace, name: str) -> str:
    """The URL of Google's ``token``, ``revoke`` or ``tokeninfo`` endpoint.

    ``--oauth-token-uri`` (or ``POSTBUD_OAUTH_TOKEN_URI``) replaces the token endpoint;
    the other two are its siblings at the same place, as Google's are
    (``https://oauth2.googleapis.com/revoke``), so one override moves all three.
    """
    given = getattr(args, "set_oauth_token_uri", None)
    spelled = "--oauth-token-uri"
    if not given:
        given, spelled = os.environ.get(_URI_ENV) or None, _URI_ENV
    token_uri = check_token_uri(given, spelled) if given else GOOGLE_TOKEN_URI
    return token_uri if name == "token" else urllib.parse.urljoin(token_uri, name)


def _load_json(path: Path, what: str, named: str) -> dict[str, Any]:
    if not path.exists() and not path.is_symlink():
        raise ConfigurationError(f"There is no {what} at {str(path)!r} ({named}).")
    return load_json(path, what)


_DESKTOP = (
    "create one in the Google Cloud console: APIs & Services, Credentials, Create "
    "credentials, OAuth client ID, application type 'Desktop app', then download its JSON"
)


def load_client(path: Path) -> dict[str, Any]:
    """The client configuration of a "Desktop app" OAuth client file, or a
    ``ConfigurationError`` saying what the file is and what to do instead."""
    data = _load_json(path, "client file", "--client-secrets")
    name = repr(str(path))
    if "installed" in data and isinstance(data["installed"], dict):
        client = data["installed"]
        missing = [
            k for k in ("client_id", "client_secret", "auth_uri", "token_uri") if not client.get(k)
        ]
        if missing:
            raise ConfigurationError(
                f"The client file {name} lacks {', '.join(missing)}: download it again "
                "from the Google Cloud console (APIs & Services, Credentials)."
            )
        return data
    if "web" in data:
        raise ConfigurationError(
            f"{name} is the client of a 'Web application', whose redirects go to a web "
            f"server: postbud auth login needs a 'Desktop app' client ({_DESKTOP})."
        )
    if data.get("type") == "service_account":
        raise ConfigurationError(
            f"{name} is a service account key, which needs no login: set "
            "POSTBUD_SERVICE_ACCOUNT_FILE to it and POSTBUD_USERNAME to the Workspace "
            "mailbox to send as (an admin must allow domain-wide delegation for "
            "https://mail.google.com/). For your own account, use a 'Desktop app' "
            f"client instead ({_DESKTOP})."
        )
    if data.get("type") == "authorized_user" or "refresh_token" in data:
        raise ConfigurationError(
            f"{name} is already a token file: set {TOKEN_ENV} to it. --client-secrets "
            f"takes the OAuth client's file ({_DESKTOP})."
        )
    raise ConfigurationError(
        f"{name} is not an OAuth client file (no 'installed' key): {_DESKTOP}."
    )


def read_token_file(path: Path, named: str) -> dict[str, Any]:
    """The authorized-user JSON at ``path``, checked for what a refresh needs."""
    info = _load_json(path, "token file", named)
    missing = [k for k in ("client_id", "client_secret", "refresh_token") if not info.get(k)]
    if missing:
        raise ConfigurationError(
            f"The token file {str(path)!r} lacks {', '.join(missing)}: it is not an "
            "authorized-user file (postbud auth login writes one)."
        )
    return info


def loose_mode(path: Path) -> int | None:
    """The file's permission bits when group or others may read or write it."""
    mode = stat.S_IMODE(path.stat().st_mode)
    return mode if mode & 0o077 else None


def write_token_file(path: Path, info: dict[str, Any], *, force: bool) -> None:
    """Write ``info`` to ``path`` at mode 0600: a temporary file in the same folder,
    then a rename. Without ``force`` the rename is a hard link, which fails if
    ``path`` appeared meanwhile: an existing file is never replaced by accident."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            if hasattr(os, "fchmod"):
                os.fchmod(fh.fileno(), 0o600)  # whatever the umask
            json.dump(info, fh, indent=2)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        if force:
            os.replace(temporary, path)
        else:
            try:
                os.link(temporary, path)
            except FileExistsError:
                raise ConfigurationError(refuse_existing(path)) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


def refuse_existing(path: Path) -> str:
    """Why ``login`` will not write over ``path``, and the two ways on."""
    return (
        f"The token file {str(path)!r} exists: --force replaces it (the token in it "
        f"stays valid at Google until revoked: 'postbud auth revoke --token-file {path}' "
        "first ends it), or --token-file names another file."
    )
