"""``postbud check``: walk the configuration one step at a time and say what to fix.

Settings, DNS, TCP, the TLS certificate, EHLO, the login (for OAuth2 a token refresh
first, then XOAUTH2) and the quota ledger, in the order a connection needs them, so
the first failure is the one to fix. Nothing secret is printed: not the password,
not a token, not a line of the AUTH exchange.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
import time
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

from postbud._address import parse_address
from postbud._auth import Credentials
from postbud._config import Settings
from postbud._mailer import Mailer
from postbud._oauth import OAuth2, refresh_error
from postbud._outbox import Outbox
from postbud._smtp import SMTPTransport, Stage, translate
from postbud.errors import ConfigurationError, DeliveryError, InvalidMessageError

__all__ = ["run_checks"]


class _Failed(Exception):
    def __init__(self, step: str, problem: str, fix: str | None, code: int = 1) -> None:
        super().__init__(problem)
        self.step, self.problem, self.fix, self.code = step, problem, fix, code


def _line(status: str, step: str, text: str) -> None:
    print(f"{status:<4} {step:<9} {text}", flush=True)


def run_checks(load: Callable[[], Settings], send_to: str | None) -> int:
    """Run every step; 0 when all passed, 1 for a delivery problem, 2 for configuration."""
    try:
        _steps(load, send_to)
    except _Failed as failed:
        _line("FAIL", failed.step, failed.problem)
        if failed.fix:
            _line("", "", f"fix: {failed.fix}")
        return failed.code
    print("All checks passed.")
    return 0


def _steps(load: Callable[[], Settings], send_to: str | None) -> None:
    try:
        settings = load()
        credentials = settings.credentials()
        if send_to:
            parse_address(send_to)
    except (ConfigurationError, InvalidMessageError) as exc:
        raise _Failed("settings", str(exc), None, code=2) from None
    _line(
        "ok",
        "settings",
        f"{settings.username} via {settings.host}:{settings.port} ({settings.security}), "
        f"{credentials.credential}",
    )
    transport = SMTPTransport(settings, credentials)
    _network(settings, transport)
    _tls_and_ehlo(settings, transport)
    _login(settings, credentials, transport)
    _quota(settings)
    if send_to:
        with Mailer(settings) as mailer:  # counted in the quota ledger like any mail
            try:
                result = mailer.send(
                    send_to, "postbud check", "This test message was sent by postbud check.\n"
                )
            except DeliveryError as exc:
                raise _Failed("send", exc.description, exc.hint) from None
        _line("ok", "send", f"{send_to} accepted {result.message_id}")


def _network(settings: Settings, transport: SMTPTransport) -> None:
    host, port = settings.host, settings.port
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        _fail("dns", transport, exc, "connect")
    _line("ok", "dns", f"{host} is {', '.join(sorted({str(i[4][0]) for i in infos}))}")
    try:
        socket.create_connection((host, port), settings.timeout).close()
    except OSError as exc:
        _fail("tcp", transport, exc, "connect")
    _line("ok", "tcp", f"connected to {host}:{port}")


def _fail(step: str, transport: SMTPTransport, exc: Exception, stage: Stage) -> NoReturn:
    """Stop at ``step`` with the transport's own words for ``exc`` (one mapping of
    socket, TLS and SMTP errors for sending and for checking)."""
    error = translate(exc, stage, transport.settings, transport.credentials.credential)
    raise _Failed(step, error.description, getattr(error, "hint", None)) from None


def _login(settings: Settings, credentials: Credentials, transport: SMTPTransport) -> None:
    if isinstance(credentials, OAuth2):
        try:
            credentials.token(timeout=settings.timeout)  # never printed
        except Exception as exc:
            error = refresh_error(exc)
            if error is None:
                raise
            raise _Failed("token", error.description, error.hint) from None
        _line("ok", "token", "the token endpoint gave an access token")

    try:
        transport.open()
    except DeliveryError as exc:
        raise _Failed("login", exc.description, exc.hint) from None
    finally:
        transport.close()
    _line("ok", "login", f"logged in as {settings.username} with the {credentials.credential}")


def _quota(settings: Settings) -> None:
    now = time.time()
    outbox = Outbox.open(settings)  # reads the ledger; sends nothing
    try:
        status = outbox.status()
    finally:
        outbox.close(0)
    quota = f"{status.quota_used} of {settings.daily_limit} recipients used in the last 24 h"
    if status.held_until is not None:
        raise _Failed(
            "quota",
            quota + f"; held for {status.held_until - now:.0f} s after Gmail's daily-limit reply.",
            "Nothing is lost: queued mail goes out when the hold ends.",
        )
    _line("ok", "quota", quota + (f" (spool {status.spool})" if status.spool else " (no spool)"))


def _tls_and_ehlo(settings: Settings, transport: SMTPTransport) -> None:
    host, port, timeout = settings.host, settings.port, settings.timeout
    context = transport.ssl_context
    step = "tls"
    stage: Stage = "connect" if settings.security == "ssl" else "starttls"
    try:
        if settings.security == "ssl":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(host, port, context=context, timeout=timeout)
        else:
            smtp = smtplib.SMTP(host, port, timeout=timeout)
            smtp.ehlo("localhost")
            if not smtp.has_extn("starttls"):
                smtp.close()
                raise _Failed(
                    "tls",
                    f"{host}:{port} does not offer STARTTLS; postbud never logs in unencrypted.",
                    "Use port 465 with security 'ssl', or check that nothing strips "
                    "STARTTLS on the way (a proxy or antivirus).",
                )
            smtp.starttls(context=context)
        sock = smtp.sock
        assert isinstance(sock, ssl.SSLSocket)
        cert = sock.getpeercert() or {}
        _line("ok", "tls", f"{sock.version()}, certificate of {_name(cert)} is trusted")
        step, stage = "ehlo", "helo"
        smtp.ehlo("localhost")
        auth = smtp.esmtp_features.get("auth", "").strip() or "none"
        greeting = (smtp.ehlo_resp or b"").decode(errors="replace").splitlines()[0]
        _line("ok", "ehlo", f"{greeting}; AUTH {auth}")
        smtp.quit()
    except (smtplib.SMTPException, OSError) as exc:  # ssl.SSLError is an OSError
        _fail(step, transport, exc, stage)


def _name(cert: Mapping[str, Any]) -> str:
    subject = cert.get("subject") or ()
    for rdn in subject:
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    alt = cert.get("subjectAltName") or ()
    return ", ".join(str(v) for _, v in alt) or "the server"
