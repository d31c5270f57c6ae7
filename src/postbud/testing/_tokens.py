"""FakeGoogleTokens: a local stand-in for Google's OAuth2 endpoints.

It answers the grants postbud uses through google-auth (``refresh_token`` for
authorized users, the JWT bearer grant for service accounts with domain-wide
delegation) with access tokens of a chosen lifetime, tells the FakeGmail servers it is
linked to which tokens are valid for which mailbox, records every request, and can
answer ``invalid_grant``, ``unauthorized_client``, ``invalid_client`` or a 500 instead.

For ``postbud auth login`` it also plays the rest of Google: the authorization page
(``/o/oauth2/auth``, whose consent a test gives or refuses with ``consent()``, the way
a browser would post the form), the ``authorization_code`` grant with PKCE checked,
the revocation endpoint (``/revoke``) and ``/tokeninfo``. oauthlib refuses a token
endpoint over plain HTTP, so ``https=True`` serves all of it over TLS with a trustme
certificate whose CA is ``ca_file``. It is pytest-localserver's WSGI server on
127.0.0.1, running in a thread.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import ssl
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
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
#: What Google answers for the short scope ``email`` (and grants for ``openid email``).
EMAIL_SCOPE = "https://www.googleapis.com/auth/userinfo.email"
AUTH_PATH, CONSENT_PATH = "/o/oauth2/auth", "/o/oauth2/consent"

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


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _loopback_redirect(uri: str) -> bool:
    """Google's rule for a Desktop app client: http to a loopback address, any port."""
    parts = urllib.parse.urlsplit(uri)
    return parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1")


class FakeGoogleTokens(WSGIServer):  # type: ignore[misc]
    """Google's OAuth2 endpoints on 127.0.0.1.

    Args:
        gmail: FakeGmail servers that accept the tokens this endpoint issues.
        lifetime: ``expires_in`` of issued tokens, in seconds.
        token_length: Length of issued access tokens (Google's reach ~2 KB).
        user: The Google account that signs in on the consent page.
        https: Serve over TLS (needed by google-auth-oauthlib's login flow); clients
            trust ``ca_file`` (for ``requests``: ``REQUESTS_CA_BUNDLE``).

    Attributes:
        token_uri, auth_uri, revoke_uri, tokeninfo_uri: The endpoints' URLs.
        ca_file: The PEM file of the CA to trust (``https=True`` only, else None).
        client_id, client_secret, refresh_token, user: The authorized user it knows.
        requests: The form fields of every token request received, oldest first.
        issued: Access tokens issued, oldest first.
        authorizations: The query of every authorization page request, oldest first.
        revoked: Tokens revoked at ``revoke_uri``, oldest first.
        refresh_token_lifetime: When set, code grants carry ``refresh_token_expires_in``
            (as Google's answers do for an app in "Testing": 604799).
    """

    def __init__(
        self,
        gmail: Iterable[FakeGmail] = (),
        *,
        lifetime: float = 3600,
        token_length: int = 180,
        user: str = "postbud.test@gmail.com",
        https: bool = False,
    ) -> None:
        self.ca_file: str | None = None
        context = self._tls() if https else None
        super().__init__(
            host="127.0.0.1",
            port=0,
            application=self._app,
            request_handler=_QuietHandler,
            ssl_context=context,
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

    def _tls(self) -> ssl.SSLContext:
        import trustme

        ca = trustme.CA()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
        self._ca = ca
        fd, self.ca_file = tempfile.mkstemp(prefix="postbud-fake-google-", suffix=".pem")
        with os.fdopen(fd, "wb") as fh:
            fh.write(ca.cert_pem.bytes())
        return context

    @property
    def token_uri(self) -> str:
        return f"{self.url}/token"

    @property
    def auth_uri(self) -> str:
        return f"{self.url}{AUTH_PATH}"

    @property
    def revoke_uri(self) -> str:
        return f"{self.url}/revoke"

    @property
    def tokeninfo_uri(self) -> str:
        return f"{self.url}/tokeninfo"

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
        if self.ca_file and os.path.exists(self.ca_file):
            os.unlink(self.ca_file)

    def reset(self) -> None:
        """Forget requests, issued tokens, grants and queued failures; restore the
        defaults. The refresh token of ``authorized_user_file`` stays valid."""
        with self._lock:
            self.requests: list[dict[str, str]] = []
            self.issued: list[str] = []
            self.authorizations: list[dict[str, str]] = []
            self.revoked: list[str] = []
            self._failures: list[str | int] = []
            self.lifetime, self.token_length = self._defaults
            self.refresh_token_lifetime: float | None = None
            # refresh token -> (user, scopes); the fixed one is always there
            self._grants: dict[str, tuple[str, str]] = {self.refresh_token: (self.user, MAIL_SCOPE)}
            self._access: dict[str, tuple[str, str, float, str]] = {}  # -> user, scope, exp, grant
            self._pending: dict[str, dict[str, str]] = {}  # consent page id -> query
            self._codes: dict[str, dict[str, str]] = {}  # code -> query + granted scope

    def fail_next(self, error: str | int, *, times: int = 1) -> None:
        """Answer the next token requests with ``"invalid_grant"``,
        ``"unauthorized_client"``, ``"invalid_client"`` or ``500``."""
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

    def client_secrets_file(self, path: str | Path, kind: str = "installed") -> Path:
        """Write the ``client_secret.json`` of an OAuth client whose endpoints are this
        fake: ``kind`` ``"installed"`` (a "Desktop app" client) or ``"web"``."""
        client: dict[str, Any] = {
            "client_id": self.client_id,
            "project_id": "postbud-test",
            "auth_uri": self.auth_uri,
            "token_uri": self.token_uri,
            "auth_provider_x509_cert_url": f"{self.url}/oauth2/v1/certs",
            "client_secret": self.client_secret,
        }
        if kind == "installed":
            client["redirect_uris"] = ["http://localhost"]
        elif kind == "web":
            client["redirect_uris"] = ["https://example.com/oauth2callback"]
            client["javascript_origins"] = ["https://example.com"]
        else:
            raise ValueError("kind must be 'installed' or 'web'")
        target = Path(path)
        target.write_text(json.dumps({kind: client}))
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

    # -- the browser's part -------------------------------------------------------------

    def consent(self, url: str, *, allow: bool = True, grant: Iterable[str] | None = None) -> str:
        """Be the browser on the consent page: open ``url`` (an authorization URL of
        this fake), press "Allow" (or "Cancel" with ``allow=False``) and return the
        redirect Google would send the browser to; following it is up to the caller.

        ``grant``: the scopes the user leaves ticked (all that were asked by default).
        Raises ``ValueError`` with the page's text when the URL is refused.
        """
        context = ssl.create_default_context(cafile=self.ca_file) if self.ca_file else None
        opener = urllib.request.build_opener(
            urllib.request.HTTPSHandler(context=context), _NoRedirect()
        )
        try:
            with opener.open(url, timeout=10) as page:
                html = page.read().decode()
        except urllib.error.HTTPError as exc:
            raise ValueError(exc.read().decode()) from None
        consent_id = html.split('name="consent" value="', 1)[1].split('"', 1)[0]
        form = {"consent": consent_id, "decision": "allow" if allow else "deny"}
        if grant is not None:
            form["grant"] = " ".join(grant)
        body = urllib.parse.urlencode(form).encode()
        try:
            opener.open(f"{self.url}{CONSENT_PATH}", data=body, timeout=10)
        except urllib.error.HTTPError as exc:
            if exc.code == 302:
                return str(exc.headers["Location"])
            raise ValueError(exc.read().decode()) from None
        raise ValueError("the consent page did not redirect")

    # -- the endpoints ------------------------------------------------------------------

    def _app(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        route = (request.method, request.path)
        if route == ("GET", AUTH_PATH):
            response = self._authorize(dict(request.args.items()))
        elif route == ("POST", CONSENT_PATH):
            response = self._decide(dict(request.form.items()))
        elif route == ("POST", "/revoke"):
            response = self._json(*self._revoke(request.form.get("token", "")))
        elif request.path == "/tokeninfo":
            fields = request.values
            response = self._json(*self._tokeninfo(fields.get("access_token", "")))
        elif route == ("POST", "/token"):
            form = dict(request.form.items())
            if request.authorization is not None:  # HTTP Basic, as requests-oauthlib sends
                form.setdefault("client_id", request.authorization.username or "")
                form.setdefault("client_secret", request.authorization.password or "")
            with self._lock:
                self.requests.append(form)
                failure = self._failures.pop(0) if self._failures else None
            response = self._json(*(_ERRORS[failure] if failure is not None else self._grant(form)))
        else:
            response = self._json(404, {"error": "not_found"})
        return response(environ, start_response)

    @staticmethod
    def _json(status: int, body: dict[str, Any]) -> Response:
        return Response(json.dumps(body), status=status, mimetype="application/json")

    def _authorize(self, query: dict[str, str]) -> Response:
        """The consent page, or Google's "Error 400" page (which never redirects)."""
        with self._lock:
            self.authorizations.append(query)
        problem = None
        if query.get("client_id") != self.client_id:
            problem = "invalid_client: The OAuth client was not found."
        elif not _loopback_redirect(query.get("redirect_uri", "")):
            problem = "redirect_uri_mismatch: a Desktop app client redirects to a loopback address."
        elif query.get("response_type") != "code" or not query.get("scope"):
            problem = "invalid_request: response_type=code and a scope are required."
        elif query.get("code_challenge_method") != "S256" or not query.get("code_challenge"):
            problem = "invalid_request: this fake wants PKCE with S256."
        if problem:
            return Response(f"Error 400: {problem}", status=400, mimetype="text/plain")
        consent_id = secrets.token_urlsafe(16)
        with self._lock:
            self._pending[consent_id] = query
        page = (
            f"<html><body><p>postbud-test wants to access your Google Account {self.user}: "
            f"{query['scope']}</p><form method='post' action='{CONSENT_PATH}'>"
            f'<input type="hidden" name="consent" value="{consent_id}">'
            "<button name='decision' value='deny'>Cancel</button>"
            "<button name='decision' value='allow'>Allow</button></form></body></html>"
        )
        return Response(page, mimetype="text/html")

    def _decide(self, form: dict[str, str]) -> Response:
        with self._lock:
            query = self._pending.pop(form.get("consent", ""), None)
        if query is None:
            return Response("Error 400: unknown consent", status=400, mimetype="text/plain")
        answer = {"state": query.get("state", "")}
        if form.get("decision") == "allow":
            asked = [EMAIL_SCOPE if s == "email" else s for s in query["scope"].split()]
            kept = form.get("grant")
            granted = [s for s in asked if kept is None or s in kept.split()]
            code = "4/0fake-" + secrets.token_urlsafe(24)
            with self._lock:
                self._codes[code] = {**query, "granted": " ".join(granted), "at": str(time.time())}
            answer.update(code=code, scope=" ".join(granted), authuser="0", prompt="consent")
        else:
            answer["error"] = "access_denied"
        location = f"{query['redirect_uri']}?{urllib.parse.urlencode(answer)}"
        return Response("", status=302, headers={"Location": location})

    def _grant(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        grant = form.get("grant_type")
        if grant in ("refresh_token", "authorization_code") and (
            form.get("client_id"),
            form.get("client_secret"),
        ) != (self.client_id, self.client_secret):
            return _ERRORS["invalid_client"]
        if grant == "refresh_token":
            with self._lock:
                known = self._grants.get(form.get("refresh_token", ""))
            if known is None:
                return _ERRORS["invalid_grant"]
            return 200, self._issue(known[0], known[1], form.get("refresh_token", ""))
        if grant == "authorization_code":
            return self._exchange(form)
        if grant == JWT_GRANT:
            return self._jwt_grant(form.get("assertion", ""))
        return 400, {"error": "unsupported_grant_type", "error_description": str(grant)}

    def _exchange(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """The code grant: single use, 10 minutes, same redirect_uri, PKCE verified."""
        with self._lock:
            asked = self._codes.pop(form.get("code", ""), None)
        bad = {"error": "invalid_grant", "error_description": "Bad Request"}
        if asked is None or time.time() - float(asked["at"]) > 600:
            return 400, bad
        if form.get("redirect_uri") != asked["redirect_uri"]:
            return 400, {"error": "redirect_uri_mismatch", "error_description": "Bad Request"}
        verifier = form.get("code_verifier", "")
        if _b64(hashlib.sha256(verifier.encode()).digest()) != asked["code_challenge"]:
            return 400, {"error": "invalid_grant", "error_description": "Invalid code verifier."}
        refresh = "1//fake-" + secrets.token_urlsafe(32)
        scope = asked["granted"]
        with self._lock:
            self._grants[refresh] = (self.user, scope)
        body = self._issue(self.user, scope, refresh)
        body["refresh_token"] = refresh
        if self.refresh_token_lifetime is not None:
            body["refresh_token_expires_in"] = int(self.refresh_token_lifetime)
        if "openid" in scope.split():
            body["id_token"] = self._id_token(scope)
        return 200, body

    def _id_token(self, scope: str) -> str:
        """An OpenID Connect ID token, unsigned: a client that got it straight from the
        token endpoint over TLS may trust it without checking the signature."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": "https://accounts.google.com",
            "azp": self.client_id,
            "aud": self.client_id,
            "sub": "1" * 21,
            "iat": now,
            "exp": now + 3600,
        }
        if EMAIL_SCOPE in scope.split():
            claims.update(email=self.user, email_verified=True)
        header = {"alg": "RS256", "kid": "fake", "typ": "JWT"}
        parts = (json.dumps(header).encode(), json.dumps(claims).encode(), b"fake-signature")
        return ".".join(_b64(part) for part in parts)

    def _revoke(self, token: str) -> tuple[int, dict[str, Any]]:
        """Google's /revoke: a refresh token or one of its access tokens ends the grant."""
        with self._lock:
            access = self._access.get(token)
            grant = access[3] if access else token
            if grant not in self._grants:
                return 400, {
                    "error": "invalid_token",
                    "error_description": "Token expired or revoked",
                }
            del self._grants[grant]
            self.revoked.append(token)
            ended = [t for t, (_, _, _, g) in self._access.items() if g == grant]
            for issued in ended:
                user = self._access.pop(issued)[0]
                for fake in self.gmail:
                    fake.accept_token(issued, user, time.time() - 1)  # expired: refused
        return 200, {}

    def _tokeninfo(self, token: str) -> tuple[int, dict[str, Any]]:
        with self._lock:
            known = self._access.get(token)
        if known is None or known[2] <= time.time():
            return 400, {"error": "invalid_token", "error_description": "Invalid Value"}
        user, scope, expires_at, _ = known
        info = {
            "azp": self.client_id,
            "aud": self.client_id,
            "sub": "1" * 21,
            "scope": scope,
            "exp": str(int(expires_at)),
            "expires_in": str(int(expires_at - time.time())),
            "access_type": "offline",
        }
        if EMAIL_SCOPE in scope.split():
            info.update(email=user, email_verified="true")
        return 200, info

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

    def _issue(self, user: str, scope: str = MAIL_SCOPE, grant: str = "") -> dict[str, Any]:
        token = "ya29.fake-" + secrets.token_urlsafe(self.token_length)[: self.token_length]
        expires_at = time.time() + self.lifetime
        with self._lock:
            self.issued.append(token)
            self._access[token] = (user, scope, expires_at, grant)
        # Gmail takes a token for SMTP only with the mail scope.
        if MAIL_SCOPE in scope.split():
            for fake in self.gmail:
                fake.accept_token(token, user, expires_at)
        return {
            "access_token": token,
            "expires_in": int(self.lifetime),
            "scope": scope,
            "token_type": "Bearer",
        }


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Hands a redirect back to ``consent()`` instead of following it."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None
