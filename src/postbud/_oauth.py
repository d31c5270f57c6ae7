"""OAuth2 credentials: SASL XOAUTH2 with access tokens from google-auth.

google-auth does the OAuth work (refresh grants, service-account JWTs); this module
adds what SMTP needs on top: the token is cached and refreshed only when it is stale
(google-auth's own threshold, 3 min 45 s before expiry), refreshes are serialised by
our lock (google-auth's are not thread-safe) and re-checked inside it, the XOAUTH2
exchange follows Gmail's failure dance, and a rejected token is refreshed and tried
exactly once more. google-auth is imported only when an OAuth2 object is built.
"""

from __future__ import annotations

import json
import os
import smtplib
import threading
import time
from typing import Any, ClassVar

from . import _fork
from ._sasl import Cancel, authenticate
from .errors import ConfigurationError, MissingDependencyError, TokenRefreshError

__all__ = ["MAIL_SCOPE", "OAuth2", "check_token_uri", "load_json", "refresh_error"]

#: The only scope that works for SMTP (and IMAP/POP).
MAIL_SCOPE = "https://mail.google.com/"
#: Google's token endpoint (what google-auth uses unless told otherwise).
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"  # noqa: S105 - a URL
_MAX_REQUEST_TIMEOUT = 30.0
# Answers google-auth would retry after sleeping (1 s, then 2 s) inside send().
_RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})


def check_token_uri(value: str, name: str = "token_uri") -> str:
    """``value`` if the refresh token and client secret may be posted to it: an
    ``https://`` URL, or ``http://`` to a loopback address (a local test endpoint such
    as FakeGoogleTokens). Anything else is a ``ConfigurationError`` naming ``name``."""
    import ipaddress
    import urllib.parse

    parts = urllib.parse.urlsplit(value)
    host = parts.hostname or ""
    if parts.scheme == "https" and host:
        return value
    if parts.scheme == "http" and host:
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if loopback:
            return value
    raise ConfigurationError(
        f"{name} {value!r} must be an https:// URL (http:// only to a loopback address "
        "such as 127.0.0.1, for a local test endpoint): the refresh token and the client "
        "secret are sent to it."
    )


def _google() -> Any:
    try:
        import google.auth.exceptions
        import google.auth.transport.requests
        import google.oauth2.credentials
        import google.oauth2.service_account
    except ImportError as exc:
        raise MissingDependencyError(
            "OAuth2 needs google-auth and requests: pip install 'postbud[oauth]'",
            package=exc.name,
        ) from exc
    return google


def load_json(path: str | os.PathLike[str], what: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except OSError as exc:
        raise ConfigurationError(
            f"Cannot read the {what} {os.fspath(path)!r}: {exc.strerror or exc}."
        ) from None
    except ValueError:
        raise ConfigurationError(f"The {what} {os.fspath(path)!r} is not JSON.") from None
    if not isinstance(data, dict):
        raise ConfigurationError(f"The {what} {os.fspath(path)!r} is not a JSON object.")
    return data


class OAuth2:
    """XOAUTH2 credentials backed by a google-auth ``Credentials`` object.

    Build one with a constructor; ``Settings`` does it for you from ``oauth_token_file``,
    ``oauth_client_id``/``_secret``/``_refresh_token`` or ``service_account_file``.

    Attributes:
        refreshes: How many times a token was fetched (for tests and ``postbud check``).
    """

    credential: ClassVar[str] = "OAuth2 token"

    def __init__(self, credentials: Any, *, user: str | None = None, source: str = "") -> None:
        if not hasattr(credentials, "refresh") or not hasattr(credentials, "token"):
            raise ConfigurationError(
                "OAuth2.from_credentials() needs a google-auth Credentials object, got "
                f"{type(credentials).__name__}."
            )
        self._credentials = credentials
        self._user = user
        self._source = source or type(credentials).__name__
        self._lock = threading.Lock()
        self._request: Any = None
        self.refreshes = 0
        _fork.register(self)

    def _after_fork(self) -> None:
        # The parent may have been refreshing (holding the lock) at fork time, and its
        # HTTP session's pooled connections are not ours to use.
        self._lock = threading.Lock()
        self._request = None

    def __repr__(self) -> str:
        user = f", user={self._user!r}" if self._user else ""
        return f"OAuth2({self._source}{user})"

    # -- constructors -------------------------------------------------------------------

    @classmethod
    def from_authorized_user_file(
        cls, path: str | os.PathLike[str], token_uri: str | None = None
    ) -> OAuth2:
        """An authorized-user JSON file, as google-auth-oauthlib writes (``token.json``).

        google-auth always replaces the ``token_uri`` in the file with Google's; pass
        ``token_uri`` to use another endpoint (tests, the demo).
        """
        google = _google()
        info = load_json(path, "OAuth2 token file")
        missing = [k for k in ("client_id", "client_secret", "refresh_token") if not info.get(k)]
        if missing:
            raise ConfigurationError(
                f"The OAuth2 token file {os.fspath(path)!r} lacks {', '.join(missing)}: it "
                "must be an authorized-user file from google-auth-oauthlib (see docs/oauth.md)."
            )
        creds = google.oauth2.credentials.Credentials.from_authorized_user_info(info)
        if token_uri:
            creds = creds.with_token_uri(check_token_uri(token_uri))
        return cls(creds, source=f"authorized user file {os.path.basename(os.fspath(path))!r}")

    @classmethod
    def from_refresh_token(
        cls,
        *,
        client_id: str,
        client_secret: str,
        refresh_token: str,
        token_uri: str | None = None,
    ) -> OAuth2:
        """An OAuth client id and secret plus a refresh token obtained for the mail scope."""
        google = _google()
        creds = google.oauth2.credentials.Credentials(
            token=None,
            refresh_token=refresh_token,
            client_id=client_id,
            client_secret=client_secret,
            token_uri=check_token_uri(token_uri) if token_uri else GOOGLE_TOKEN_URI,
        )
        return cls(creds, source=f"refresh token of client {client_id!r}")

    @classmethod
    def from_service_account_file(
        cls, path: str | os.PathLike[str], *, subject: str, token_uri: str | None = None
    ) -> OAuth2:
        """A Workspace service account with domain-wide delegation, sending as ``subject``."""
        google = _google()
        info = load_json(path, "service account file")
        if info.get("type") != "service_account" or "private_key" not in info:
            raise ConfigurationError(
                f"{os.fspath(path)!r} is not a service account key file (type "
                "'service_account' with a private_key): download one in the Google Cloud "
                "console under IAM & Admin, Service accounts, Keys."
            )
        if token_uri:
            info = {**info, "token_uri": check_token_uri(token_uri)}
        creds = google.oauth2.service_account.Credentials.from_service_account_info(
            info, scopes=[MAIL_SCOPE], subject=subject
        )
        return cls(creds, user=subject, source=f"service account {info.get('client_email')!r}")

    @classmethod
    def from_credentials(cls, credentials: Any, *, user: str | None = None) -> OAuth2:
        """Any google-auth ``Credentials`` that can produce a token with the mail scope.

        ``user`` is the mailbox to log in as; by default the Mailer's ``username``.
        """
        _google()
        return cls(credentials, user=user)

    # -- tokens ---------------------------------------------------------------------------

    def token(self, *, timeout: float = _MAX_REQUEST_TIMEOUT, rejected: str | None = None) -> str:
        """A fresh access token, refreshed through google-auth only when needed.

        Args:
            timeout: Seconds the token request may take.
            rejected: A token the server refused: refresh unless another thread
                already replaced it.
        """
        google = _google()
        fresh = google.auth.credentials.TokenState.FRESH
        if not self._lock.acquire(timeout=max(0.0, timeout)):
            raise TokenRefreshError(
                "Gave up waiting for another thread's OAuth2 token refresh within the deadline.",
                retryable=True,
            )
        try:
            creds = self._credentials
            stale = creds.token_state != fresh
            if stale or (rejected is not None and creds.token == rejected):
                creds.refresh(self._http(timeout))
                self.refreshes += 1
            token = creds.token
        finally:
            self._lock.release()
        if not token:
            raise TokenRefreshError("google-auth returned no access token.", retryable=True)
        return str(token)

    def _http(self, timeout: float) -> Any:
        google = _google()
        if self._request is None:
            self._request = google.auth.transport.requests.Request()
        base = self._request

        def request(*args: Any, **kwargs: Any) -> Any:
            kwargs["timeout"] = max(0.1, min(timeout, _MAX_REQUEST_TIMEOUT))
            response = base(*args, **kwargs)
            if response.status in _RETRYABLE_STATUS:
                # Raised here, google-auth passes it on at once instead of sleeping and
                # retrying inside send(); the next delivery attempt refreshes again.
                raise google.auth.exceptions.TransportError(
                    f"the token endpoint answered HTTP {response.status} "
                    f"({_error_code(response.data)})"
                )
            return response

        return request

    @property
    def token_uri(self) -> str:
        """Where tokens are refreshed (Google's endpoint unless told otherwise)."""
        return str(getattr(self._credentials, "token_uri", None) or GOOGLE_TOKEN_URI)

    def secret_values(self) -> tuple[str, ...]:
        """What must never be shown: the refresh token, the client secret and the
        current access token (postbud masks them in alert mails and reply texts)."""
        creds = self._credentials
        found = [getattr(creds, name, None) for name in ("refresh_token", "client_secret")]
        found.append(getattr(creds, "token", None))
        return tuple(str(value) for value in found if isinstance(value, str) and value)

    def identity(self) -> str:
        """What changes with the long-lived credential: the refresh token, client id
        and secret, or a service account's key id (the outbox hashes it; never stored)."""
        creds = self._credentials
        parts = [
            getattr(creds, name, None)
            for name in (
                "refresh_token",
                "client_id",
                "client_secret",
                "service_account_email",
                "private_key_id",
            )
        ]
        key = getattr(getattr(creds, "signer", None), "key_id", None)
        return "\0".join(str(p) for p in [*parts, key, self._user] if p)

    # -- the SMTP side ----------------------------------------------------------------------

    def login(self, smtp: smtplib.SMTP, username: str) -> None:
        """XOAUTH2 as ``user`` (or ``username``); one refresh and retry if rejected."""
        user = self._user or username
        deadline = getattr(smtp, "deadline", time.monotonic() + _MAX_REQUEST_TIMEOUT)
        token = self.token(timeout=deadline - time.monotonic())
        try:
            _xoauth2(smtp, user, token)
        except smtplib.SMTPAuthenticationError as exc:
            if exc.smtp_code != 535:
                raise
            # The token may have been revoked or expired early: one refresh, one retry.
            token = self.token(timeout=deadline - time.monotonic(), rejected=token)
            _xoauth2(smtp, user, token)


def _xoauth2(smtp: smtplib.SMTP, user: str, token: str) -> None:
    steps = {"token": False, "error": False}

    def answer(challenge: bytes | None = None) -> str:
        if not challenge:  # the initial response (or an empty "334 " prompt)
            if steps["token"]:  # asked again for the token it was sent: cancel
                raise Cancel
            steps["token"] = True
            return f"user={user}\x01auth=Bearer {token}\x01\x01"
        if steps["error"]:  # Gmail sends one error challenge, then 535
            raise Cancel
        steps["error"] = True
        return ""  # Gmail's error challenge (base64 JSON) wants an empty line

    authenticate(smtp, "XOAUTH2", answer)


def _error_code(body: Any) -> str:
    try:
        return str(json.loads(body).get("error", "no error code"))
    except (ValueError, TypeError, AttributeError):
        return "no JSON body"


def refresh_error(exc: Exception, token_uri: str | None = None) -> TokenRefreshError | None:
    """Translate a google-auth error into ``TokenRefreshError`` (None if not one).

    ``token_uri``: the endpoint that answered, when it is not Google's (the texts then
    name it instead of Google).
    """
    module = type(exc).__module__
    if not module.startswith("google."):
        return None
    details = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], dict) else {}
    first = str(exc.args[0]) if exc.args else type(exc).__name__
    error = str(details.get("error") or first.split(":", 1)[0]).strip()
    description = str(details.get("error_description") or "").strip()
    said = f"{error}: {description}" if description else first
    google = not token_uri or token_uri == GOOGLE_TOKEN_URI
    who = "Google" if google else f"The token endpoint {token_uri}"
    where = "Google's token endpoint" if google else f"The token endpoint {token_uri}"
    if error == "invalid_grant":
        return TokenRefreshError(
            f"{who} refused to refresh the OAuth2 token ({said}).",
            message=said,
            retryable=False,
            hint="The refresh token is no longer valid: it was revoked, the account's "
            "password changed, or the OAuth app is in 'Testing' publishing status, whose "
            "refresh tokens expire after 7 days (publish the app to 'In production' in the "
            "Google Cloud console). Authorise again to get a new token file.",
        )
    if error == "unauthorized_client":
        return TokenRefreshError(
            f"{who} refused the service account's token request ({said}).",
            message=said,
            retryable=False,
            hint="Domain-wide delegation is not set up for this service account: in the "
            "Google Admin console, Security, Access and data control, API controls, "
            "Domain-wide delegation, add its client ID with the scope "
            f"{MAIL_SCOPE} (changes can take minutes to apply).",
        )
    if error in ("invalid_client", "unauthorized", "access_denied", "invalid_scope"):
        return TokenRefreshError(
            f"{who} refused the OAuth2 client ({said}).",
            message=said,
            retryable=False,
            hint=f"Check the client id and secret, and that the token was granted the "
            f"{MAIL_SCOPE} scope.",
        )
    return TokenRefreshError(
        f"The OAuth2 token could not be refreshed ({said}).",
        message=said,
        retryable=True,
        hint=f"{where} was unreachable or failing; the next attempt refreshes again.",
    )
