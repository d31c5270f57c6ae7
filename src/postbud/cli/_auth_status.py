"""``postbud auth status`` and ``postbud auth revoke``: what a token file holds, whether
it works right now, and how to end it.

``status`` refreshes once (the only way to know a refresh token still works) and asks
``tokeninfo`` what the new access token is for; it writes nothing, so the file keeps
its old access token. ``revoke`` ends the grant at Google first and removes the file
only then: a file whose revocation could not be sent is kept, so it can be tried again.
"""

from __future__ import annotations

import argparse
import json
import os
import urllib.parse
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from postbud._oauth import MAIL_SCOPE, refresh_error

from ._auth_files import TOKEN_ENV, Stop, endpoint, loose_mode, read_token_file, token_file_of
from ._common import EXIT_DELIVERY, EXIT_OK, EXIT_TEMPFAIL, say

__all__ = ["REASONS", "revoke", "status"]

_TIMEOUT = 30.0
#: Why Google ends a refresh token (Google's OAuth 2.0 overview, "Refresh token expiration").
REASONS = (
    "the OAuth app is in 'Testing': 7 days after the consent (publish it 'In production')",
    "it was not used for 6 months",
    "the account's password changed (tokens with Gmail scopes are revoked then)",
    "access was removed at https://myaccount.google.com/permissions, or postbud auth revoke",
    "the account has more than 100 refresh tokens for this client: the oldest one ends",
    "a Workspace admin's session control policy ended it",
)


def _line(name: str, text: str) -> None:
    print(f"{name:<9} {text}", flush=True)


def _when(moment: datetime) -> str:
    utc = moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment
    left = (utc - datetime.now(timezone.utc)).total_seconds()
    state = f"in {left / 60:.0f} min" if left > 0 else "expired"
    return f"{utc:%Y-%m-%d %H:%M} UTC ({state})"


def _reasons() -> None:
    print("\nA refresh token stops working when:")
    for reason in REASONS:
        print(f"  - {reason};")
    print("then 'postbud auth login --force' gets a new one.")


def _request() -> Any:
    import google.auth.transport.requests

    return google.auth.transport.requests.Request()


def status(args: argparse.Namespace) -> int:
    """Print the account, scopes, file mode and expiry; refresh once to prove it works.

    Returns 0 when the refresh token works and carries the mail scope, 1 when Google
    refused it (or the scope is missing), 75 when the endpoint could not be reached.
    """
    import google.oauth2.credentials

    path, named = token_file_of(args)
    info = read_token_file(path, named)
    token_uri = endpoint(args, "token")
    loose = loose_mode(path)
    if loose is None:
        _line("file", f"{path} (mode 0600: only you can read it)")
    else:
        _line("file", f"{path} (mode {loose:04o})")
        say(f"warning: group or others may read {path}: chmod 600 {path}")
    _line("account", str(info.get("account") or "not recorded in the file"))
    _line("client", str(info["client_id"]))
    scopes = info.get("scopes") or []
    _line("scopes", " ".join(scopes) if isinstance(scopes, list) else str(scopes))
    creds = google.oauth2.credentials.Credentials.from_authorized_user_info(info)  # type: ignore[no-untyped-call]
    if creds.expiry is not None:
        _line("stored", f"access token {_when(creds.expiry)}")
    creds = creds.with_token_uri(token_uri)  # google-auth ignores the file's token_uri
    try:
        creds.refresh(_request())
    except Exception as exc:
        error = refresh_error(exc, token_uri)
        if error is None:
            raise
        _line("refresh", "FAILED")
        _reasons()
        say(f"the refresh token does not work: {error}")
        return EXIT_TEMPFAIL if error.retryable else EXIT_DELIVERY
    _line("refresh", "works: the token endpoint gave a new access token just now")
    if creds.expiry is not None:
        _line("access", f"new token {_when(creds.expiry)}; postbud refreshes it by itself")
    found = _tokeninfo(args, str(creds.token))
    code = EXIT_OK
    if found is not None:
        granted = str(found.get("scope", "")).split()
        email = found.get("email")
        _line(
            "google",
            f"the token is for {email or 'an address it does not say'}: {' '.join(granted)}",
        )
        if email and info.get("account") and str(email).lower() != str(info["account"]).lower():
            say(f"warning: the file says {info['account']}, Google says {email}")
        if MAIL_SCOPE not in granted:
            say(
                f"the token lacks {MAIL_SCOPE}, so Gmail refuses it: run postbud auth "
                "login --force and tick the Gmail box"
            )
            code = EXIT_DELIVERY
    _reasons()
    return code


def _tokeninfo(args: argparse.Namespace, access_token: str) -> dict[str, Any] | None:
    """What Google's tokeninfo says of ``access_token``; None (said) when it cannot."""
    import google.auth.exceptions

    uri = endpoint(args, "tokeninfo")
    query = urllib.parse.urlencode({"access_token": access_token})
    try:
        response = _request()(f"{uri}?{query}", method="GET", timeout=_TIMEOUT)
    except google.auth.exceptions.TransportError as exc:
        say(f"warning: could not ask {uri} what the token is for ({type(exc).__name__})")
        return None
    try:
        body = json.loads(response.data)
    except ValueError:
        body = None
    if response.status != 200 or not isinstance(body, dict):
        say(f"warning: {uri} answered HTTP {response.status}")
        return None
    return body


def revoke(args: argparse.Namespace) -> int:
    """Revoke the refresh token at Google, then remove the file.

    Returns 0 when the grant is gone (revoked now, or already dead), 1 when Google
    refused otherwise, 75 when it could not be reached; the file is kept unless 0.
    """
    import google.auth.exceptions

    path, named = token_file_of(args)
    info = read_token_file(path, named)
    uri = endpoint(args, "revoke")
    kept = (
        f"{path} is kept: try again, or remove postbud's access at "
        "https://myaccount.google.com/permissions and delete the file"
    )
    try:
        response = _request()(
            uri,
            method="POST",
            body=urllib.parse.urlencode({"token": info["refresh_token"]}),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            timeout=_TIMEOUT,
        )
    except google.auth.exceptions.TransportError as exc:
        raise Stop(
            f"Could not reach {uri} ({type(exc).__name__}): {kept}.", EXIT_TEMPFAIL
        ) from None
    try:
        error = str(json.loads(response.data).get("error", ""))
    except (ValueError, AttributeError):
        error = ""
    who = info.get("account") or "the account"
    if response.status == 200:
        done = f"Revoked the token of {who} at Google"
    elif response.status == 400 and error == "invalid_token":
        done = "Google no longer knew the token (expired or revoked before)"
    else:
        status = EXIT_TEMPFAIL if response.status >= 500 else EXIT_DELIVERY
        raise Stop(
            f"{uri} answered HTTP {response.status} ({error or 'no error code'}): {kept}.", status
        )
    Path(path).unlink()
    print(f"{done}; removed {path}.")
    if os.environ.get(TOKEN_ENV):
        print(f"{TOKEN_ENV} still names it: postbud cannot send with it any more.")
    return EXIT_OK
