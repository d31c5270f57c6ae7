"""``diagnose()``: walk the configuration one step at a time and say what to fix.

Settings, DNS, TCP, the TLS certificate, EHLO, the login (for OAuth2 a token refresh
first, then XOAUTH2) and the quota ledger, in the order a connection needs them, so
the first failure is the one to fix. The result is a ``CheckReport`` (steps, verdicts,
fixes) that ``postbud check`` prints and the Django and Flask commands can print too.
Nothing secret is reported: not the password, not a token, not a line of the AUTH
exchange. The checks send nothing; with ``send_to`` one test message goes out. Queued
mail is never touched (no worker starts); while the account's logins are paused for
these credentials, the login is not tried, and a refused one pauses them.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

from postbud._address import parse_address
from postbud._auth import Credentials
from postbud._config import Settings
from postbud._message import build_message
from postbud._oauth import OAuth2, refresh_error
from postbud._outbox import Outbox, credential_hash
from postbud._smtp import SMTPTransport, Stage, translate
from postbud.errors import ConfigurationError, DeliveryError, InvalidMessageError

__all__ = ["CheckReport", "CheckStep", "diagnose"]


class _Failed(Exception):
    def __init__(self, step: str, problem: str, fix: str | None, code: int = 1) -> None:
        super().__init__(problem)
        self.step, self.problem, self.fix, self.code = step, problem, fix, code


@dataclass(frozen=True)
class CheckStep:
    """One step of a check: its name ("tls"), whether it passed, what was found, the fix."""

    name: str
    ok: bool
    text: str
    fix: str | None = None


@dataclass(frozen=True)
class CheckReport:
    """What ``diagnose()`` found, step by step; it stops at the first failure.

    Attributes:
        steps: The steps run, in order; only the last one may have failed.
        exit_code: 0 all passed, 1 a delivery problem, 2 a configuration mistake.
    """

    steps: tuple[CheckStep, ...]
    exit_code: int

    @property
    def ok(self) -> bool:
        """Whether every step passed."""
        return self.exit_code == 0


class _Steps:
    def __init__(self, on_step: Callable[[CheckStep], None] | None) -> None:
        self.done: list[CheckStep] = []
        self._on_step = on_step

    def add(self, step: CheckStep) -> None:
        self.done.append(step)
        if self._on_step is not None:
            self._on_step(step)

    def ok(self, name: str, text: str) -> None:
        self.add(CheckStep(name, True, text))


def diagnose(
    settings: Settings | Callable[[], Settings],
    send_to: str | None = None,
    *,
    on_step: Callable[[CheckStep], None] | None = None,
) -> CheckReport:
    """Check a configuration step by step, as a connection needs it.

    Args:
        settings: The settings, or a function that builds them (its
            ``ConfigurationError`` becomes the failed "settings" step).
        send_to: Also send a test message to this address (counted in the quota).
        on_step: Called with each step as soon as it is known (to print progress).
    """
    steps = _Steps(on_step)
    load = settings if callable(settings) else (lambda: settings)
    try:
        _steps(steps, load, send_to)
    except _Failed as failed:
        steps.add(CheckStep(failed.step, False, failed.problem, failed.fix))
        return CheckReport(tuple(steps.done), failed.code)
    return CheckReport(tuple(steps.done), 0)


def _steps(steps: _Steps, load: Callable[[], Settings], send_to: str | None) -> None:
    try:
        settings = load()
        credentials = settings.credentials()
        if send_to:
            parse_address(send_to)
    except (ConfigurationError, InvalidMessageError) as exc:
        raise _Failed("settings", str(exc), None, code=2) from None
    steps.ok(
        "settings",
        f"{settings.username} via {settings.host}:{settings.port} ({settings.security}), "
        f"{credentials.credential}",
    )
    transport = SMTPTransport(settings, credentials)
    # The account's outbox, without a worker: check reads and records the account's
    # gates (a login pause, a backoff) and the quota, and never touches queued mail.
    outbox = Outbox.open(
        settings, transport=transport, credential=credential_hash(settings.username, credentials)
    )
    try:
        _network(steps, settings, transport)
        _tls_and_ehlo(steps, settings, transport)
        _login(steps, settings, credentials, transport, outbox)
        _quota(steps, settings, outbox)
        if send_to:
            envelope = build_message(
                mail_from=settings.username,
                sender=settings.sender,
                to=send_to,
                subject="postbud check",
                text="This test message was sent by postbud check.\n",
            )
            try:  # counted in the quota ledger like any mail
                result = outbox.send_now(envelope)
            except DeliveryError as exc:
                raise _Failed("send", exc.description, exc.hint) from None
            finally:
                transport.close()
            steps.ok("send", f"{send_to} accepted {result.message_id}")
    finally:
        outbox.close(0)


def _network(steps: _Steps, settings: Settings, transport: SMTPTransport) -> None:
    host, port = settings.host, settings.port
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        _fail("dns", transport, exc, "connect")
    steps.ok("dns", f"{host} is {', '.join(sorted({str(i[4][0]) for i in infos}))}")
    try:
        socket.create_connection((host, port), settings.timeout).close()
    except OSError as exc:
        _fail("tcp", transport, exc, "connect")
    steps.ok("tcp", f"connected to {host}:{port}")


def _fail(step: str, transport: SMTPTransport, exc: Exception, stage: Stage) -> NoReturn:
    """Stop at ``step`` with the transport's own words for ``exc`` (one mapping of
    socket, TLS and SMTP errors for sending and for checking)."""
    error = translate(exc, stage, transport.settings, transport.credentials)
    raise _Failed(step, error.description, getattr(error, "hint", None)) from None


def _login(
    steps: _Steps,
    settings: Settings,
    credentials: Credentials,
    transport: SMTPTransport,
    outbox: Outbox,
) -> None:
    pause = outbox.gates.login_pause(time.time(), refused_only=True)
    if pause is not None:  # the same credentials again: Gmail locks such accounts
        raise _Failed(
            "login",
            f"not tried: {outbox.gates.describe(pause)}",
            "Correct the password (or token), then run 'postbud outbox retry' to send what waits.",
        )
    if isinstance(credentials, OAuth2):
        try:
            credentials.token(timeout=settings.timeout)  # never printed
        except Exception as exc:
            error = refresh_error(exc, credentials.token_uri)
            if error is None:
                raise
            raise _Failed("token", error.description, error.hint) from None
        steps.ok("token", "the token endpoint gave an access token")

    try:
        transport.open()
    except DeliveryError as exc:
        outbox.gates.failed(exc, time.time(), warn=False)  # every process then knows
        raise _Failed("login", exc.description, exc.hint) from None
    finally:
        transport.close()
    outbox.gates.succeeded()
    steps.ok("login", f"logged in as {settings.username} with the {credentials.credential}")


def _quota(steps: _Steps, settings: Settings, outbox: Outbox) -> None:
    now = time.time()
    status = outbox.status()  # reads the ledger; sends nothing
    quota = f"{status.quota_used} of {settings.daily_limit} recipients used in the last 24 h"
    if status.held_until is not None:
        raise _Failed(
            "quota",
            quota + f"; held for {status.held_until - now:.0f} s after Gmail's daily-limit reply.",
            "Nothing is lost: queued mail goes out when the hold ends.",
        )
    steps.ok("quota", quota + (f" (spool {status.spool})" if status.spool else " (no spool)"))


def _tls_and_ehlo(steps: _Steps, settings: Settings, transport: SMTPTransport) -> None:
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
        steps.ok("tls", f"{sock.version()}, certificate of {_name(cert)} is trusted")
        step, stage = "ehlo", "helo"
        smtp.ehlo("localhost")
        auth = smtp.esmtp_features.get("auth", "").strip() or "none"
        greeting = (smtp.ehlo_resp or b"").decode(errors="replace").splitlines()[0]
        steps.ok("ehlo", f"{greeting}; AUTH {auth}")
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
