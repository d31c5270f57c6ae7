"""SMTPTransport: one verified-TLS, authenticated, reused connection to Gmail.

The only module that opens SMTP connections. Rules it keeps: TLS is always verified
with our context (before Python 3.14 smtplib verifies nothing without one);
credentials are never sent before the connection is encrypted; ``timeout`` is the
deadline of a whole attempt (``deadline``), not of each socket call; a reused
connection that turns out dead is reopened once, and only when nothing of the
message was sent yet. Errors are translated in one place (``errors``).

About 390 lines: the connection, the transaction and the probe share the deadline
and the reconnect rule, which are clearer in one class than across modules.
"""

from __future__ import annotations

import contextlib
import re
import smtplib
import ssl
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from postbud import _fork
from postbud._auth import Credentials
from postbud._config import Settings
from postbud._message import MAX_MESSAGE_SIZE, Envelope, size_check
from postbud.errors import (
    ConfigurationError,
    DeliveryError,
    InvalidMessageError,
    TransportError,
)

from .deadline import Connection, SMTPConnection, SMTPSSLConnection
from .errors import (
    Step,
    connection_gone,
    reply_text,
    scrubbed,
    secrets_of,
    translate,
    translated,
)
from .replies import Stage
from .route import current_route

__all__ = ["Probe", "Refused", "SMTPTransport", "Transport"]

#: ``{recipient: (code, reply text)}`` for recipients the server refused.
Refused = dict[str, tuple[int, str]]

# A line of the message that starts with a dot, which SMTP's DATA doubles (RFC 5321 4.5.2).
_LEADING_DOT = re.compile(rb"(?m)^\.")

# A connection idle for longer than this is probed with NOOP before it is used.
PROBE_AFTER = 10.0


class Transport(Protocol):
    """Sends envelopes. ``SMTPTransport`` and ``postbud.testing.MemoryTransport``."""

    def send(self, envelope: Envelope) -> Refused:
        """Send one envelope (at most 100 recipients); return the refused ones.

        Raises ``DeliveryError`` when nothing was accepted.
        """
        ...

    def open(self) -> None:
        """Connect and log in now (a no-op if already connected)."""
        ...

    def close(self) -> None:
        """Close the connection, if any."""
        ...


@dataclass(frozen=True)
class Probe:
    """What ``SMTPTransport.probe()`` found on a fresh connection (nothing was sent).

    Attributes:
        tls_version: The negotiated protocol, such as ``"TLSv1.3"``.
        peer: The server certificate's common name (or its first subject alt name).
        greeting: The first line of the server's EHLO reply.
        auth: The AUTH mechanisms the server offers once encrypted.
        logged_in: Whether the login ran (``probe(login=True)``) and succeeded.
    """

    tls_version: str
    peer: str
    greeting: str
    auth: tuple[str, ...]
    logged_in: bool


class SMTPTransport:
    """A thread-safe, reused SMTP connection with verified TLS and one login.

    Args:
        settings: Host, port, security, timeout, ca_file and username.
        credentials: What logs in (defaults to ``settings.credentials()``).
        ssl_context: A client context to use instead of one built from ``ca_file``
            (for tests: ``FakeGmail.ssl_context()``). It must verify certificates.
    """

    def __init__(
        self,
        settings: Settings,
        credentials: Credentials | None = None,
        *,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.settings = settings
        self.credentials = credentials or settings.credentials()
        if ssl_context is None:
            ssl_context = ssl.create_default_context(cafile=settings.ca_file)
        self._check_context(ssl_context)
        self.ssl_context = ssl_context
        self._lock = threading.Lock()
        self._smtp: Connection | None = None
        self.probe_after = PROBE_AFTER
        self._last_used = 0.0
        self._size_limit = MAX_MESSAGE_SIZE
        _fork.register(self)

    def __repr__(self) -> str:
        s = self.settings
        state = "open" if self._smtp is not None else "closed"
        return f"<SMTPTransport {s.username} via {s.host}:{s.port} ({s.security}, {state})>"

    # -- public -----------------------------------------------------------------------

    def open(self) -> None:
        with self._lock:
            if self._smtp is None:
                self._attempt(None)

    def send(self, envelope: Envelope) -> Refused:
        with self._lock:
            return self._attempt(envelope)

    def close(self, *, polite: bool = True) -> None:
        """Close the connection, with a QUIT (``polite``) or without a word."""
        with self._lock:
            self._drop(polite=polite)

    # -- one attempt ------------------------------------------------------------------

    def _attempt(self, envelope: Envelope | None) -> Refused:
        deadline = time.monotonic() + self.settings.timeout
        reused = self._smtp is not None
        idle = time.monotonic() - self._last_used
        if reused and idle > self.probe_after and not self._probe(deadline):
            reused = False
        try:
            if self._smtp is None:
                self._connect(deadline)
            if envelope is None:
                return {}
            try:
                return self._transaction(envelope, deadline)
            except _Retryable as dead:
                if not reused:
                    raise dead.error from dead.cause
            # The reused connection was gone before the message went out: one fresh
            # connection, same deadline, then report whatever happens.
            self._connect(deadline)
            try:
                return self._transaction(envelope, deadline)
            except _Retryable as again:
                raise again.error from again.cause
        finally:
            self._last_used = time.monotonic()

    def _probe(self, deadline: float) -> bool:
        smtp = self._smtp
        assert smtp is not None
        smtp.deadline = deadline
        try:
            if smtp.noop()[0] == 250:
                return True
        except (smtplib.SMTPException, OSError):
            pass
        self._drop(polite=False)
        return False

    def _connect(self, deadline: float) -> None:
        smtp = self._open_connection(deadline, login=True)
        size = smtp.esmtp_features.get("size", "")
        self._size_limit = (
            min(MAX_MESSAGE_SIZE, int(size))
            if size.isdigit() and int(size) > 0
            else MAX_MESSAGE_SIZE
        )
        self._smtp = smtp

    def _open_connection(self, deadline: float, *, login: bool) -> Connection:
        """A new encrypted connection that has seen EHLO (and logged in, if ``login``)."""
        s = self.settings
        route = current_route()
        host, port, security, context = (
            (route.host, route.port, route.security, route.context)
            if route is not None
            else (s.host, s.port, s.security, self.ssl_context)
        )
        self._check_context(context)  # it may have been loosened since it was given
        smtp: Connection | None = None
        try:
            with translated(s, self.credentials, Step()) as step:
                # smtplib connects and reads the greeting in __init__ (SMTPConnectError
                # if it is not 220); the deadline is already set then.
                if security == "ssl":
                    smtp = SMTPSSLConnection(host, port, deadline=deadline, context=context)
                else:
                    smtp = SMTPConnection(host, port, deadline=deadline)
                step.stage = "helo"
                self._ehlo(smtp)
                if security == "starttls":
                    step.stage = "starttls"
                    if not smtp.has_extn("starttls"):
                        raise TransportError(
                            f"{s.host}:{s.port} does not offer STARTTLS, so postbud will not "
                            "send the credentials: they would cross the network unencrypted.",
                            hint="Check host and port (Gmail: 587 with starttls, 465 with "
                            "ssl); a network device may be stripping STARTTLS.",
                            retryable=False,
                        )
                    smtp.starttls(context=context)
                    step.stage = "helo"
                    self._ehlo(smtp)
                if not isinstance(smtp.sock, ssl.SSLSocket):  # belt and braces: never in clear
                    raise TransportError(
                        "The connection is not encrypted; refusing to log in.", retryable=False
                    )
                if login:
                    step.stage = "auth"
                    self.credentials.login(smtp, s.username)
        except BaseException:
            if smtp is not None:
                smtp.close()
            raise
        return smtp

    def probe(self, *, login: bool = True) -> Probe:
        """Connect afresh (TLS, EHLO and, with ``login``, the login), report, hang up.

        Sends no mail and leaves the reused connection alone; raises the same
        ``DeliveryError`` a send would. Meant for diagnostics (the framework checks, and
        ``postbud check`` once it moves onto it from its own steps).
        """
        deadline = time.monotonic() + self.settings.timeout
        smtp = self._open_connection(deadline, login=login)
        try:
            sock = smtp.sock
            assert isinstance(sock, ssl.SSLSocket)
            greeting = (smtp.ehlo_resp or b"").decode("utf-8", "replace").splitlines()
            return Probe(
                tls_version=sock.version() or "",
                peer=_peer_name(sock.getpeercert() or {}),
                greeting=greeting[0] if greeting else "",
                auth=tuple(smtp.esmtp_features.get("auth", "").split()),
                logged_in=login,
            )
        finally:
            smtp.deadline = time.monotonic() + min(self.settings.timeout, 1.0)
            with contextlib.suppress(smtplib.SMTPException, OSError):
                smtp.quit()
            smtp.close()

    @staticmethod
    def _check_context(context: ssl.SSLContext) -> None:
        if context.verify_mode != ssl.CERT_REQUIRED or not context.check_hostname:
            raise ConfigurationError(
                "ssl_context must verify certificates and host names; postbud has no switch "
                "that turns verification off. For a test server, trust its CA instead."
            )

    @staticmethod
    def _ehlo(smtp: Connection) -> None:
        code, reply = smtp.ehlo()
        if code != 250:
            raise smtplib.SMTPHeloError(code, reply)

    def _transaction(self, envelope: Envelope, deadline: float) -> Refused:
        smtp = self._smtp
        assert smtp is not None
        smtp.deadline = deadline
        size_check(len(envelope.data), self._size_limit)
        options = self._mail_options(smtp, envelope)
        stage: Stage = "mail"
        refused: Refused = {}
        recipients = envelope.recipients
        # PIPELINING (Gmail offers it): MAIL, every RCPT and DATA in one write, then
        # their replies in order; the message follows the 354. Two round trips a
        # message instead of 2 + recipients. Without it, one command at a time.
        pipelined = smtp.has_extn("pipelining")
        try:
            if pipelined:
                self._pipeline(smtp, envelope, options)
                code, reply = smtp.getreply()
            else:
                code, reply = smtp.mail(envelope.mail_from, options)
            if code != 250:
                if pipelined and code != 421:
                    # The server answers the RCPTs and DATA that follow (503): read
                    # them, so the next command's reply is its own.
                    self._drain(smtp, len(recipients) + 1)
                raise smtplib.SMTPSenderRefused(code, reply, envelope.mail_from)
            stage = "rcpt"
            for rcpt in recipients:
                code, reply = smtp.getreply() if pipelined else smtp.rcpt(rcpt)
                if code == 421:
                    raise smtplib.SMTPResponseException(code, reply)
                if code not in (250, 251):
                    refused[rcpt] = (code, reply_text(reply))
            if len(refused) == len(recipients):
                if pipelined:
                    self._drain(smtp, 1)  # DATA's refusal (503: no valid recipients)
                raise smtplib.SMTPRecipientsRefused(refused)  # type: ignore[arg-type]
            stage = "data"
            if pipelined:
                code, reply = smtp.getreply()
                if code != 354:
                    raise smtplib.SMTPDataError(code, reply)
                code, reply = self._message(smtp, envelope.data)
            else:
                code, reply = smtp.data(envelope.data)
            if code != 250:
                raise smtplib.SMTPDataError(code, reply)
        except Exception as exc:
            error = translate(exc, stage, self.settings, self.credentials)
            self._reset_after(exc)
            cause = scrubbed(exc, stage, secrets_of(self.credentials, self.settings.username))
            if stage == "mail" and connection_gone(exc):
                raise _Retryable(error, cause) from cause
            raise error from cause
        except BaseException:
            # Interrupted mid-transaction (KeyboardInterrupt...): the session is in an
            # unknown state, so the next send starts on a fresh connection.
            self._drop(polite=False)
            raise
        return refused

    @staticmethod
    def _mail_options(smtp: Connection, envelope: Envelope) -> list[str]:
        """MAIL's parameters; InvalidMessageError when the server lacks an extension
        the message needs."""
        if envelope.smtputf8 and not smtp.has_extn("smtputf8"):
            raise InvalidMessageError(
                "An address in this message has a non-ASCII local part, which needs the "
                "SMTPUTF8 extension, and this server does not offer it. Use an ASCII address."
            )
        options = [f"SIZE={len(envelope.data)}"] if smtp.has_extn("size") else []
        if envelope.smtputf8:
            options += ["SMTPUTF8", "BODY=8BITMIME"]
        elif envelope.eightbit:
            if not smtp.has_extn("8bitmime"):
                raise InvalidMessageError(
                    "The message has 8-bit data and this server does not offer 8BITMIME; "
                    "build it with a 7-bit transfer encoding (quoted-printable or base64)."
                )
            options.append("BODY=8BITMIME")
        return options

    @staticmethod
    def _pipeline(smtp: Connection, envelope: Envelope, options: list[str]) -> None:
        """MAIL, every RCPT and DATA in one write, as smtplib would word each."""
        if envelope.smtputf8:
            smtp.command_encoding = "utf-8"  # what smtplib's mail() does
        with smtp.corked():
            mail_options = "".join(f" {option}" for option in options)
            smtp.putcmd("mail", f"FROM:{smtplib.quoteaddr(envelope.mail_from)}{mail_options}")
            for rcpt in envelope.recipients:
                smtp.putcmd("rcpt", f"TO:{smtplib.quoteaddr(rcpt)}")
            smtp.putcmd("data")

    @staticmethod
    def _message(smtp: Connection, data: bytes) -> tuple[int, bytes]:
        """After DATA's 354: the message, as ``smtplib.SMTP.data`` sends it (leading
        dots doubled, ended by CRLF . CRLF), and the server's reply."""
        body = _LEADING_DOT.sub(b"..", data)
        if not body.endswith(b"\r\n"):
            body += b"\r\n"
        smtp.send(body + b".\r\n")
        return smtp.getreply()

    @staticmethod
    def _drain(smtp: Connection, count: int) -> None:
        """Read the replies to ``count`` pipelined commands after a refusal. A DATA
        the server accepted all the same (354: a server out of step) gets an empty
        message's end, which it refuses without recipients, so the session stays in step.
        A failure here is not the error to report: the refusal is (the RSET that follows
        finds out whether the connection survived)."""
        with contextlib.suppress(smtplib.SMTPException, OSError):
            for _ in range(count):
                code, _reply = smtp.getreply()
                if code == 354:
                    smtp.send(b".\r\n")
                    smtp.getreply()

    # -- errors -----------------------------------------------------------------------

    def _reset_after(self, exc: Exception) -> None:
        smtp = self._smtp
        if smtp is None:
            return
        # smtplib's exceptions subclass OSError; only a real socket error or a closing
        # reply means the connection is gone. After a refusal, RSET and keep it.
        socket_error = isinstance(exc, OSError) and not isinstance(exc, smtplib.SMTPException)
        if socket_error or connection_gone(exc):
            self._drop(polite=False)
            return
        try:
            smtp.rset()
        except (smtplib.SMTPException, OSError):
            self._drop(polite=False)

    def _drop(self, *, polite: bool) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is None:
            return
        if polite:
            smtp.deadline = time.monotonic() + min(self.settings.timeout, 1.0)  # a courtesy
            with contextlib.suppress(smtplib.SMTPException, OSError):
                smtp.quit()
        smtp.close()

    def _after_fork(self) -> None:
        # In a child process: a fresh lock, and our copy of the parent's connection
        # closed without a word (no QUIT, no TLS close_notify), so the parent's session
        # goes on undisturbed and the child opens its own.
        self._lock = threading.Lock()
        self._drop(polite=False)


class _Retryable(Exception):
    """Internal: the connection was found dead before anything was sent."""

    def __init__(self, error: DeliveryError | InvalidMessageError, cause: Exception) -> None:
        super().__init__(str(error))
        self.error = error
        self.cause = cause


def _peer_name(cert: Mapping[str, Any]) -> str:
    for rdn in cert.get("subject") or ():
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    alt = cert.get("subjectAltName") or ()
    return ", ".join(str(v) for _, v in alt) or "the server"
