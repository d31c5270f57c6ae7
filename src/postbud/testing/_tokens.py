"""FakeGoogleTokens: a local stand-in for Google's OAuth2 token endpoint.

It answers the two grants postbud uses through google-auth (``refresh_token`` for
authorized users, the JWT bearer grant for service accounts with domain-wide
delegation) with access tokens of a chosen lifetime, tells the FakeGmail servers it is
linked to which tokens are valid for which mailbox, records every request, and can
answer ``invalid_grant``, ``unauthorized_client``, ``invalid_client`` or a 500 instead.
It is pytest-localserver's WSGI server (plain HTTP on 127.0.0.1) running in a thread.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pytest_localserver.http import WSGIServer
from werkzeug.serving import WSGIRequestHandler
from werkzeug.wrappers import Request, Response

from postbud._oauth import GOOGLE_TOKEN_URI, MAIL_SCOPE

from ._fake import FakeGmail

__all__ = ["FakeGoogleTokens"]

JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"

_ERRORS: dict[str | int, tuple[int, dict[str, str]]] = {
    "invalid_grant": (
        400,
        {"error": "invalid_grant", "error_description": "Token has been expired or revoked."},
    ),
    "unauthorized_client": (
        401,
        {
            "error": "unauthorized_client",
            "error_description": "Client is unauthorized to retrieve access tokens using this "
            "method, or client not authorized for any of the scopes requested.",
        },
    ),
    "invalid_client": (
        401,
        {"error": "invalid_client", "error_description": "The OAuth client was not found."},
    ),
    500: (500, {"error": "internal_failure", "error_description": "Backend Error"}),
}


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


class FakeGoogleTokens(WSGIServer):  # type: ignore[misc]
    """Google's token endpoint on 127.0.0.1.

    Args:
        gmail: FakeGmail servers that accept the tokens this endpoint issues.
        lifetime: ``expires_in`` of issued tokens, in seconds.
        token_length: Length of issued access tokens (Google's reach ~2 KB).

    Attributes:
        token_uri: The URL to give ``oauth_token_uri`` / ``token_uri=``.
        client_id, client_secret, refresh_token, user: The authorized user it knows.
        requests: The form fields of every request received, oldest first.
        issued: Access tokens issued, oldest first.
    """

    def __init__(
        self,
        gmail: Iterable[FakeGmail] = (),
        *,
        lifetime: float = 3600,
        token_length: int = 180,
        user: str = "postbud.test@gmail.com",
    ) -> None:
        super().__init__(
            host="127.0.0.1", port=0, application=self._app, request_handler=_QuietHandler
        )
        self.daemon = True
        self.gmail = list(gmail)
        self.user = user
        self.client_id = "postbud-test.apps.googleusercontent.com"
        self.client_secret = "GOCSPX-fake-client-secret"  # noqa: S105 - a test value
        self.refresh_token = "1//fake-refresh-token"  # noqa: S105 - a test value
        self._keys: dict[str, str] = {}
        self._lock = threading.Lock()
        self._defaults = (lifetime, token_length)
        self.reset()

    @property
    def token_uri(self) -> str:
        return f"{self.url}/token"

    def __enter__(self) -> FakeGoogleTokens:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self.is_alive():  # shutdown() of a server that never served waits forever
            super().stop()
            self.join(5)
        self._server.server_close()

    def reset(self) -> None:
        """Forget requests, issued tokens and queued failures; restore the defaults."""
        with self._lock:
            self.requests: list[dict[str, str]] = []
            self.issued: list[str] = []
            self._failures: list[str | int] = []
            self.lifetime, self.token_length = self._defaults

    def fail_next(self, error: str | int, *, times: int = 1) -> None:
        """Answer the next requests with ``"invalid_grant"``, ``"unauthorized_client"``,
        ``"invalid_client"`` or ``500``."""
        if error not in _ERRORS:
            raise ValueError(f"unknown failure {error!r}; use one of {list(_ERRORS)}")
        with self._lock:
            self._failures.extend([error] * times)

    # -- files users' code reads ------------------------------------------------------

    def authorized_user_file(self, path: str | Path) -> Path:
        """Write an authorized-user JSON file (as google-auth-oauthlib does)."""
        target = Path(path)
        target.write_text(
            json.dumps(
                {
                    "type": "authorized_user",
                    "client_id": self.client_id,
                    "client_secret": self.client_secret,
                    "refresh_token": self.refresh_token,
                    "token_uri": self.token_uri,  # google-auth ignores it: pass token_uri too
                }
            )
        )
        return target

    def service_account_file(
        self, path: str | Path, client_email: str = "mailer@postbud-test.iam.gserviceaccount.com"
    ) -> Path:
        """Write a service account key file whose JWTs this endpoint accepts."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        private = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        public = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        with self._lock:
            self._keys[client_email] = public.decode()
        target = Path(path)
        target.write_text(
            json.dumps(
                {
                    "type": "service_account",
                    "project_id": "postbud-test",
                    "private_key_id": secrets.token_hex(20),
                    "private_key": private,
                    "client_email": client_email,
                    "client_id": "1" * 21,
                    "token_uri": self.token_uri,
                }
            )
        )
        return target

    # -- the endpoint -----------------------------------------------------------------

    def _app(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        form = dict(request.form.items())
        with self._lock:
            self.requests.append(form)
            failure = self._failures.pop(0) if self._failures else None
        if request.path != "/token" or request.method != "POST":
            status, body = 404, {"error": "not_found"}
        elif failure is not None:
            status, body = _ERRORS[failure]
        else:
            status, body = self._grant(form)
        response = Response(json.dumps(body), status=status, mimetype="application/json")
        return response(environ, start_response)

    def _grant(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        grant = form.get("grant_type")
        if grant == "refresh_token":
            if (form.get("client_id"), form.get("client_secret")) != (
                self.client_id,
                self.client_secret,
            ):
                return _ERRORS["invalid_client"]
            if form.get("refresh_token") != self.refresh_token:
                return _ERRORS["invalid_grant"]
            return 200, self._issue(self.user)
        if grant == JWT_GRANT:
            return self._jwt_grant(form.get("assertion", ""))
        return 400, {"error": "unsupported_grant_type", "error_description": str(grant)}

    def _jwt_grant(self, assertion: str) -> tuple[int, dict[str, Any]]:
        from google.auth import jwt

        try:
            claims = jwt.decode(assertion, verify=False)  # type: ignore[no-untyped-call]
            key = self._keys[claims["iss"]]
            claims = jwt.decode(  # type: ignore[no-untyped-call]
                assertion,
                certs=key,
                audience=GOOGLE_TOKEN_URI,  # google-auth's fixed aud
            )
        except (KeyError, ValueError) as exc:
            return 400, {"error": "invalid_grant", "error_description": f"Invalid JWT: {exc}"}
        if MAIL_SCOPE not in str(claims.get("scope", "")).split() or not claims.get("sub"):
            return _ERRORS["unauthorized_client"]
        return 200, self._issue(str(claims["sub"]))

    def _issue(self, user: str) -> dict[str, Any]:
        token = "ya29.fake-" + secrets.token_urlsafe(self.token_length)[: self.token_length]
        expires_at = time.time() + self.lifetime
        with self._lock:
            self.issued.append(token)
        for fake in self.gmail:
            fake.accept_token(token, user, expires_at)
        return {
            "access_token": token,
            "expires_in": int(self.lifetime),
            "scope": MAIL_SCOPE,
            "token_type": "Bearer",
        }
