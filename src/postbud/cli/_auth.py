"""``postbud auth login``: a Gmail OAuth2 token file in two minutes, and the dispatch.

google-auth-oauthlib's installed-app flow does the OAuth work: PKCE (S256), a loopback
redirect to ``http://127.0.0.1:PORT/`` (Google blocked the copy-paste "out of band"
flow in 2023, and its device flow refuses Gmail's scope), ``access_type=offline`` and
``prompt=consent`` so a refresh token always comes back, and a deadline instead of
waiting for ever. This module adds what a person needs around it: no browser is
started where none can show (a server over ssh), the ``ssh -L`` line that lets a
laptop's browser finish a login on that server, a ``--paste`` path for the rest, a
client file checked before anything opens, a token file written at 0600 and never
over another, and the 7-day warning of apps left in "Testing", always: whether an app
is in "Testing" cannot be read from Google's answers.

``openid email`` is asked besides ``https://mail.google.com/`` so the ID token says
which address was authorised (the token file records it; ``POSTBUD_USERNAME`` must be
that address). The ID token comes straight from the token endpoint over verified TLS,
so its claims are read without checking its signature (OpenID Connect Core 3.1.3.7).
"""

from __future__ import annotations

import argparse
import json
import os
import select
import socket
import sys
import urllib.parse
from pathlib import Path
from typing import Any

from postbud._address import parse_address
from postbud._oauth import MAIL_SCOPE
from postbud.errors import ConfigurationError, DeliveryError

from ._auth_files import (
    TOKEN_ENV,
    Stop,
    load_client,
    refuse_existing,
    require_oauth,
    token_file_of,
    write_token_file,
)
from ._common import EXIT_DELIVERY, EXIT_OK, EXIT_TEMPFAIL, say

__all__ = ["AUTH_ACTIONS", "EMAIL_SCOPE", "SCOPES", "auth_command", "has_display"]

AUTH_ACTIONS = ("login", "status", "revoke")
EMAIL_SCOPE = "https://www.googleapis.com/auth/userinfo.email"
#: The long spelling of ``email``: Google answers with it, and oauthlib refuses an
#: answer whose scopes differ from those asked.
SCOPES = (MAIL_SCOPE, "openid", EMAIL_SCOPE)
SUCCESS_PAGE = "postbud: Google answered; the terminal says how it went. You may close this tab."


def auth_command(args: argparse.Namespace) -> int:
    """``postbud auth ACTION``: every missing package named at once, then the action."""
    require_oauth()
    try:
        if args.auth_action == "login":
            return login(args)
        from ._auth_status import revoke, status

        return status(args) if args.auth_action == "status" else revoke(args)
    except Stop as stop:
        say(str(stop))
        return stop.status


def has_display() -> bool:
    """Whether a browser started here can show a page: on Linux and the BSDs only with
    ``$DISPLAY`` or ``$WAYLAND_DISPLAY`` (without them Python's webbrowser falls back
    to lynx or w3m in the very terminal that waits for the answer)."""
    if sys.platform.startswith(("linux", "freebsd", "openbsd", "netbsd")):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def login(args: argparse.Namespace) -> int:
    """Run the consent in a browser and write the token file; see the module."""
    config = load_client(Path(args.client_secrets).expanduser())
    path, _ = token_file_of(args)
    if path.is_dir():
        raise ConfigurationError(f"The token file {str(path)!r} is a folder.")
    if path.exists() and not args.force:  # before the browser, not after the consent
        raise ConfigurationError(refuse_existing(path))
    if args.send_test:
        parse_address(args.send_test)
    from google_auth_oauthlib.flow import InstalledAppFlow  # type: ignore[import-untyped]

    flow = InstalledAppFlow.from_client_config(config, scopes=list(SCOPES))
    token = _translated(flow, args)
    scope = token.get("scope") or list(SCOPES)  # oauthlib makes it a list
    granted = [str(s) for s in scope] if isinstance(scope, list) else str(scope).split()
    if MAIL_SCOPE not in granted:
        raise Stop(
            "Google did not grant https://mail.google.com/ (the box 'Read, compose, send "
            "and permanently delete all your email from Gmail' was left unticked): run "
            "postbud auth login again and tick it; SMTP accepts no other scope."
        )
    if not token.get("refresh_token"):
        raise Stop("Google sent no refresh token: run postbud auth login again.")
    address = _address(token.get("id_token"))
    creds = flow.credentials
    info: dict[str, Any] = {"type": "authorized_user", **json.loads(creds.to_json())}
    info.update(scopes=granted, account=address or "")
    write_token_file(path, info, force=bool(args.force))
    _report(path, address, granted, token.get("refresh_token_expires_in"))
    if args.send_test:
        return _send_test(path, address, args.send_test)
    return EXIT_OK


def _translated(flow: Any, args: argparse.Namespace) -> dict[str, Any]:
    """The token response of the login, its failures as ``Stop`` or configuration."""
    import requests
    from google_auth_oauthlib.flow import WSGITimeoutError
    from oauthlib.oauth2.rfc6749 import errors  # type: ignore[import-untyped]

    options = {"access_type": "offline", "prompt": "consent"}
    try:
        try:
            if args.paste:
                _paste(flow, args, options)
            else:
                _loopback(flow, args, options)
        except Warning as changed:  # oauthlib: the scopes granted differ from those asked
            if not hasattr(changed, "token"):
                raise
            flow.oauth2session.token = changed.token  # checked by the caller
    except WSGITimeoutError:
        raise Stop(
            f"No answer from the browser within {args.wait:g} s: nothing was written. Run "
            "postbud auth login again (--wait gives more time)."
        ) from None
    except errors.AccessDeniedError:
        raise Stop(
            "Access was refused on Google's consent page (access_denied): nothing was "
            "written. Run postbud auth login again and press Allow; if the page says the "
            "app is in testing, add your address as a test user (Google Auth Platform, "
            "Audience, Test users)."
        ) from None
    except errors.MismatchingStateError:
        raise Stop(
            "The redirect belongs to another login (its state does not match): use the "
            "URL this login printed."
        ) from None
    except errors.InsecureTransportError:
        raise ConfigurationError(
            "The client file's token_uri is not https://: download the client file again."
        ) from None
    except errors.OAuth2Error as exc:
        said = f"{exc.error}: {exc.description}" if exc.description else exc.error
        raise Stop(f"Google refused the login ({said}): run postbud auth login again.") from None
    except requests.exceptions.SSLError as exc:
        raise Stop(f"The token endpoint's certificate is not trusted ({exc}).") from None
    except requests.exceptions.RequestException as exc:
        raise Stop(
            f"Could not reach Google's token endpoint ({type(exc).__name__}): run "
            "postbud auth login again when the network is back.",
            EXIT_TEMPFAIL,
        ) from None
    except OSError as exc:
        if args.port and exc.errno in (98, 48, 10048):  # EADDRINUSE on Linux, macOS, Windows
            raise ConfigurationError(
                f"Port {args.port} is in use on this machine: choose another --port."
            ) from None
        raise
    return dict(flow.oauth2session.token)


def _instructions(args: argparse.Namespace, browser: bool) -> str:
    wait = f"Waiting up to {args.wait:g} s for Google's answer (Ctrl-C stops)."
    if browser:
        return (
            f"A browser opens Google's consent page; if none does, open:\n\n    {{url}}\n\n{wait}"
        )
    why = "--no-browser" if args.no_browser else "no display here: $DISPLAY is not set"
    text = ""
    if args.port:  # the tunnel first: the redirect must find its way back here
        user = os.environ.get("USER") or os.environ.get("LOGNAME") or "user"
        host = socket.gethostname() or "host"
        text = (
            f"A browser on another machine must reach port {args.port} here: on that "
            f"machine, first run\n\n    ssh -L {args.port}:localhost:{args.port} "
            f"{user}@{host}\n\nthen "
        )
    text += f"open this URL in a browser and allow access ({why}):\n\n    {{url}}\n\n"
    if not args.port:
        text += (
            "Browser on another machine? Stop (Ctrl-C) and run again with --port 8765, "
            "which prints the ssh -L line that forwards the redirect, or with --paste.\n\n"
        )
    return text[0].upper() + text[1:] + wait


def _loopback(flow: Any, args: argparse.Namespace, options: dict[str, str]) -> None:
    import webbrowser

    browser = not args.no_browser and has_display()
    if browser:
        try:
            webbrowser.get()
        except webbrowser.Error:
            browser = False
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:  # the URL must reach a pipe before the wait starts
        reconfigure(line_buffering=True)
    flow.run_local_server(
        host="127.0.0.1",  # Google's advice for loopback redirects, over "localhost"
        port=args.port or 0,
        open_browser=browser,
        authorization_prompt_message=_instructions(args, browser),
        success_message=SUCCESS_PAGE,
        timeout_seconds=args.wait,
        **options,
    )


def _paste(flow: Any, args: argparse.Namespace, options: dict[str, str]) -> None:
    """No listener: the browser's redirect fails to load, and its address is pasted."""
    port = args.port or _free_port()
    flow.redirect_uri = f"http://127.0.0.1:{port}/"
    url, _ = flow.authorization_url(**options)
    print(
        f"Open this URL in any browser and allow access:\n\n    {url}\n\nThe browser then "
        f"fails to load a page at http://127.0.0.1:{port}/: that is expected. Copy the "
        "whole address from its address bar and paste it here, then press Enter:",
        flush=True,
    )
    from google_auth_oauthlib.flow import WSGITimeoutError

    if os.name == "posix":
        ready, _, _ = select.select([sys.stdin], [], [], args.wait)
        if not ready:
            raise WSGITimeoutError("no address was pasted")
    pasted = sys.stdin.readline().strip()
    parts = urllib.parse.urlsplit(pasted)
    query = urllib.parse.parse_qs(parts.query)
    if (
        parts.scheme != "http"
        or parts.hostname not in ("127.0.0.1", "localhost")
        or parts.port != port
        or not ({"code", "error"} & set(query))
    ):
        raise Stop(
            f"That is not the address Google sent the browser to (it starts with "
            f"http://127.0.0.1:{port}/?state=): nothing was written. Run postbud auth "
            "login --paste again and copy the whole address bar."
        )
    # oauthlib parses only https:// answers; this one never crossed a network.
    flow.fetch_token(authorization_response="https" + pasted[len("http") :])


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _address(id_token: object) -> str | None:
    if not isinstance(id_token, str):
        return None
    from google.auth import jwt

    try:
        claims = jwt.decode(id_token, verify=False)  # type: ignore[no-untyped-call]
    except ValueError:
        return None
    email = claims.get("email")
    return str(email) if email and claims.get("email_verified", True) else None


def _report(path: Path, address: str | None, granted: list[str], expires_in: object) -> None:
    who = address or "your account (Google did not say which address: no ID token)"
    print(f"\nAuthorised {who} for {' '.join(granted)}.")
    print(f"Token file: {path} (mode 0600; keep it as secret as a password).\n")
    print(
        "7 days: while the OAuth app's publishing status is 'Testing', Google expires "
        "its refresh tokens after 7 days; postbud cannot tell from here."
    )
    if isinstance(expires_in, (int, float)) or str(expires_in or "").isdigit():
        seconds = float(str(expires_in))
        print(
            f"  Google's answer carries refresh_token_expires_in={seconds:.0f} "
            f"(this token ends in {seconds / 86400:.1f} days)."
        )
    print(
        "  Check: Google Cloud console, Google Auth Platform, Audience (or APIs & Services, "
        "OAuth consent screen): 'Publishing status'.\n"
        "  'Publish app' makes it 'In production', whose tokens last; then run postbud auth "
        "login --force again. An unverified app shows 'Google hasn't verified this app' "
        "at consent: for your own account, Advanced, then continue. An 'Internal' "
        "(Workspace) app is not affected.\n"
    )
    print("Add to postbud's settings (the env file, or the environment):")
    print(f"  {TOKEN_ENV}={path}")
    print(f"  POSTBUD_USERNAME={address or '<the address you signed in with>'}")


def _send_test(path: Path, address: str | None, to: str) -> int:
    from postbud._config import Settings
    from postbud._mailer import Mailer

    environ = {
        key[len("POSTBUD_") :].lower(): value
        for key, value in os.environ.items()
        if key.startswith("POSTBUD_") and value
    }
    account = {"oauth_token_file": str(path), "spool": "", "username": address}
    if not address:
        account["username"] = environ.get("username")
    settings = Settings.from_layers(
        [
            (account, lambda n: f"--{n.replace('_', '-')}"),
            (environ, lambda n: f"POSTBUD_{n.upper()}"),
        ]
    )
    try:
        with Mailer(settings) as mailer:
            result = mailer.send(
                to,
                "postbud auth login",
                f"This test message was sent by postbud auth login with {path}.\n",
            )
    except DeliveryError as exc:
        say(f"the token file is written, but the test message failed: {exc}")
        return EXIT_DELIVERY
    print(f"\nSent a test message to {to} ({result.message_id}).")
    return EXIT_OK
