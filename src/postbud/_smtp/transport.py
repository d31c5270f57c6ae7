"""SMTPTransport: one verified-TLS, authenticated, reused connection to Gmail.

This is the only module that talks to smtplib, ssl and socket, and the only place
their exceptions are translated into ``postbud.errors`` (``_translate``). Rules it
keeps: TLS is always verified with our context (before Python 3.14 smtplib verifies
nothing without one); credentials are never sent before the connection is encrypted;
``timeout`` is the deadline of a whole attempt, not of each socket call; a reused
connection that turns out dead is reopened once, and only when nothing of the message
was sent yet.
"""

from __future__ import annotations

import contextlib
import io
import math
import smtplib
import socket
import ssl
import threading
import time
from typing import TYPE_CHECKING, Any, Protocol

from postbud import _fork
from postbud._auth import Credentials
from postbud._config import Settings
from postbud._message import MAX_MESSAGE_SIZE, Envelope, size_check
from postbud._oauth import refresh_error
from postbud.errors import (
    ConfigurationError,
    DeliveryError,
    InvalidMessageError,
    PostbudError,
    SMTPTimeoutError,
    TransportError,
)

from .replies import Stage, classify

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

__all__ = ["Refused", "SMTPTransport", "Transport"]

#: ``{recipient: (code, reply text)}`` for recipients the server refused.
Refused = dict[str, tuple[int, str]]

# A connection idle for longer than this is probed with NOOP before it is used.
PROBE_AFTER = 10.0
# EHLO name: never socket.getfqdn() (slow, and it leaks the host name into Received:).
EHLO_NAME = "localhost"


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


class _Deadline:
    """smtplib hooks that give every socket operation the time left, not a fresh timeout."""

    deadline: float = math.inf
    sock: socket.socket | None
    file: Any

    def _left(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("deadline reached")
        return left

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        return super()._get_socket(host, port, self._left())  # type: ignore[misc,no-any-return]

    def send(self, s: ReadableBuffer | str) -> None:
        if self.sock is not None:
            self.sock.settimeout(self._left())  # sendall: one timeout for all of it
        try:
            super().send(s)  # type: ignore[misc]
        except smtplib.SMTPServerDisconnected as exc:
            _timeout_from(exc)
            raise

    def getreply(self) -> tuple[int, bytes]:
        if self.file is None and self.sock is not None:
            # smtplib would use sock.makefile(), where a server trickling one byte at a
            # time gets a fresh timeout per recv; this reader checks the deadline each time.
            self.file = io.BufferedReader(_DeadlineReader(self))
        try:
            return super().getreply()  # type: ignore[misc,no-any-return]
        except smtplib.SMTPServerDisconnected as exc:
            _timeout_from(exc)
            raise


def _timeout_from(exc: smtplib.SMTPServerDisconnected) -> None:
    # smtplib reports a socket timeout as a disconnect ("Connection unexpectedly
    # closed: timed out"); the caller should see the deadline for what it is.
    if isinstance(exc.__context__, TimeoutError):
        raise TimeoutError("timed out talking to the server") from exc


class _DeadlineReader(io.RawIOBase):
    def __init__(self, owner: _Deadline) -> None:
        self._owner = owner
        self._sock = owner.sock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        assert self._sock is not None
        self._sock.settimeout(self._owner._left())
        return self._sock.recv_into(buffer)


class _SMTP(_Deadline, smtplib.SMTP):
    def __init__(self, host: str, port: int, *, deadline: float) -> None:
        self.deadline = deadline  # before smtplib connects in __init__
        super().__init__(host, port, local_hostname=EHLO_NAME)


class _SMTPSSL(_Deadline, smtplib.SMTP_SSL):
    def __init__(self, host: str, port: int, *, deadline: float, context: ssl.SSLContext) -> None:
        self.deadline = deadline
        super().__init__(host, port, local_hostname=EHLO_NAME, context=context)


_Conn = _SMTP | _SMTPSSL


#: Set by ``postbud.testing.FakeGmail.intercept()``: while it is not None, every new
#: connection goes to this (host, port, security, context) whatever the settings say,
#: so code configured for smtp.gmail.com can be tested without touching the internet.
intercepted: tuple[str, int, str, ssl.SSLContext] | None = None


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
        elif ssl_context.verify_mode != ssl.CERT_REQUIRED or not ssl_context.check_hostname:
            raise ConfigurationError(
                "ssl_context must verify certificates and host names; postbud has no switch "
                "that turns verification off. For a test server, trust its CA instead."
            )
        self.ssl_context = ssl_context
        self._lock = threading.Lock()
        self._smtp: _Conn | None = None
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

    def close(self) -> None:
        with self._lock:
            self._drop(polite=True)

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
        s = self.settings
        host, port, security, context = intercepted or (
            s.host,
            s.port,
            s.security,
            self.ssl_context,
        )
        stage: Stage = "connect"
        smtp: _Conn | None = None
        try:
            # smtplib connects and reads the greeting in __init__ (SMTPConnectError if it
            # is not 220); the deadline is already set then.
            if security == "ssl":
                smtp = _SMTPSSL(host, port, deadline=deadline, context=context)
            else:
                smtp = _SMTP(host, port, deadline=deadline)
            stage = "helo"
            self._ehlo(smtp)
            if security == "starttls":
                stage = "starttls"
                if not smtp.has_extn("starttls"):
                    raise TransportError(
                        f"{s.host}:{s.port} does not offer STARTTLS, so postbud will not "
                        "send the credentials: they would cross the network unencrypted.",
                        hint="Check host and port (Gmail: 587 with starttls, 465 with ssl); "
                        "a network device may be stripping STARTTLS.",
                        retryable=False,
                    )
                smtp.starttls(context=context)
                stage = "helo"
                self._ehlo(smtp)
            if not isinstance(smtp.sock, ssl.SSLSocket):  # belt and braces: never in clear
                raise TransportError(
                    "The connection is not encrypted; refusing to log in.", retryable=False
                )
            stage = "auth"
            self.credentials.login(smtp, s.username)
            size = smtp.esmtp_features.get("size", "")
            self._size_limit = (
                min(MAX_MESSAGE_SIZE, int(size))
                if size.isdigit() and int(size) > 0
                else MAX_MESSAGE_SIZE
            )
        except BaseException as exc:
            if smtp is not None:
                smtp.close()
            if isinstance(exc, PostbudError):
                raise
            if isinstance(exc, Exception):
                raise self._translate(exc, stage) from _scrubbed(exc, stage)
            raise
        self._smtp = smtp

    @staticmethod
    def _ehlo(smtp: _Conn) -> None:
        code, reply = smtp.ehlo()
        if code != 250:
            raise smtplib.SMTPHeloError(code, reply)

    def _transaction(self, envelope: Envelope, deadline: float) -> Refused:
        smtp = self._smtp
        assert smtp is not None
        smtp.deadline = deadline
        if envelope.smtputf8 and not smtp.has_extn("smtputf8"):
            raise InvalidMessageError(
                "An address in this message has a non-ASCII local part, which needs the "
                "SMTPUTF8 extension, and this server does not offer it. Use an ASCII address."
            )
        size_check(len(envelope.data), self._size_limit)
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
        stage: Stage = "mail"
        refused: Refused = {}
        try:
            code, reply = smtp.mail(envelope.mail_from, options)
            if code != 250:
                raise smtplib.SMTPSenderRefused(code, reply, envelope.mail_from)
            stage = "rcpt"
            for rcpt in envelope.recipients:
                code, reply = smtp.rcpt(rcpt)
                if code == 421:
                    raise smtplib.SMTPResponseException(code, reply)
                if code not in (250, 251):
                    refused[rcpt] = (code, _text(reply))
            if len(refused) == len(envelope.recipients):
                raise smtplib.SMTPRecipientsRefused(refused)  # type: ignore[arg-type]
            stage = "data"
            code, reply = smtp.data(envelope.data)
            if code != 250:
                raise smtplib.SMTPDataError(code, reply)
        except Exception as exc:
            error = self._translate(exc, stage)
            self._reset_after(exc)
            if stage == "mail" and _connection_gone(exc):
                raise _Retryable(error, exc) from exc
            raise error from exc
        except BaseException:
            # Interrupted mid-transaction (KeyboardInterrupt...): the session is in an
            # unknown state, so the next send starts on a fresh connection.
            self._drop(polite=False)
            raise
        return refused

    # -- errors -----------------------------------------------------------------------

    def _translate(self, exc: Exception, stage: Stage) -> DeliveryError | InvalidMessageError:
        """The one place where smtplib, ssl and socket errors become postbud errors."""
        s = self.settings
        where = f"{s.host}:{s.port}"
        token_error = refresh_error(exc)  # google-auth, raised by OAuth2.login
        if token_error is not None:
            return token_error
        if isinstance(exc, smtplib.SMTPRecipientsRefused):
            refused = {r: (c, _text(m)) for r, (c, m) in exc.recipients.items()}
            code, text = next(iter(refused.values()))
            return classify(
                code,
                text,
                stage="rcpt",
                username=s.username,
                credential=self.credentials.credential,
                refused=refused,
            )
        if isinstance(exc, smtplib.SMTPResponseException):
            return classify(
                exc.smtp_code,
                _text(exc.smtp_error),
                stage=stage,
                username=s.username,
                credential=self.credentials.credential,
            )
        if isinstance(exc, smtplib.SMTPServerDisconnected):
            return TransportError(
                f"{where} closed the connection during {stage}.",
                hint="postbud reconnects on the next attempt.",
            )
        if isinstance(exc, ssl.SSLCertVerificationError):
            return TransportError(
                f"The TLS certificate of {where} is not trusted: {exc.verify_message}.",
                hint="If a proxy or antivirus intercepts TLS on this network, set ca_file to "
                "its CA certificate; postbud never turns verification off.",
                retryable=False,
            )
        if isinstance(exc, (TimeoutError, socket.timeout)):
            hint = "The server or the network is slow or blocked; raise timeout if needed."
            if stage == "connect" and s.security == "starttls":
                hint += (
                    " A server that speaks TLS from the first byte (port 465) waits "
                    "silently for a STARTTLS client: check security='ssl'."
                )
            return SMTPTimeoutError(
                f"No answer from {where} within the {s.timeout:g} s deadline (during {stage}).",
                hint=hint,
            )
        if isinstance(exc, ssl.SSLError):
            # A handshake that fails outright (not a reset) is a set-up mistake, such as
            # security='ssl' against a STARTTLS port: retrying cannot fix it.
            return TransportError(
                f"TLS failed with {where}: {exc.reason or exc}.",
                hint="Check security and port: 'ssl' is port 465, 'starttls' is port 587.",
                retryable=stage != "connect",
            )
        if isinstance(exc, socket.gaierror):
            return TransportError(
                f"Cannot resolve {s.host!r}: {exc.strerror}.",
                hint="Check host and this machine's DNS.",
            )
        if isinstance(exc, ConnectionRefusedError):
            return TransportError(
                f"{where} refused the connection.",
                hint="Check host and port, and that outgoing SMTP is "
                "allowed here (some networks block ports 465 and 587).",
            )
        if isinstance(exc, OSError):
            return TransportError(
                f"Network error with {where} during {stage}: {exc.strerror or exc}."
            )
        if isinstance(exc, smtplib.SMTPException):
            return TransportError(f"SMTP error with {where} during {stage}: {exc}.")
        raise exc

    # -- connection state ---------------------------------------------------------------

    def _reset_after(self, exc: Exception) -> None:
        smtp = self._smtp
        if smtp is None:
            return
        # smtplib's exceptions subclass OSError; only a real socket error or a closing
        # reply means the connection is gone. After a refusal, RSET and keep it.
        socket_error = isinstance(exc, OSError) and not isinstance(exc, smtplib.SMTPException)
        if socket_error or _connection_gone(exc):
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


def _connection_gone(exc: Exception) -> bool:
    if isinstance(exc, (smtplib.SMTPServerDisconnected, ConnectionError, ssl.SSLError)):
        return True
    if isinstance(exc, smtplib.SMTPResponseException):
        return exc.smtp_code == 421 or (exc.smtp_code == 451 and b"4.4.2" in exc.smtp_error[:8])
    return False


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)


def _scrubbed(exc: Exception, stage: Stage) -> Exception:
    # smtplib's auth() frames hold the encoded credentials in locals, google-auth's and
    # requests' the refresh token and client secret, ours the access token; a traceback
    # printer that shows locals (Sentry, rich) walks the whole chain, so every link
    # loses its frames. The exceptions themselves (reply codes, error texts) stay.
    if stage == "auth":
        seen: set[int] = set()
        link: BaseException | None = exc
        while link is not None and id(link) not in seen:
            seen.add(id(link))
            link.__traceback__ = None
            link = link.__cause__ or link.__context__
    return exc
