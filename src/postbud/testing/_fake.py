"""FakeGmail: a local SMTP server that answers like smtp.gmail.com.

Real sockets, real TLS (a trustme CA that covers ``localhost`` and ``127.0.0.1``),
Gmail's greeting, EHLO lines and reply texts, app-password checks with Gmail's exact
failures, and fault injection a test can script. It is a subclass of
pytest-localserver's aiosmtpd-based ``smtp.Server`` (which brings the free-port fix),
so it runs in its own thread and any client, not just postbud, can talk to it.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import tempfile
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import trustme
from aiosmtpd.smtp import SMTP
from pytest_localserver import smtp as localserver_smtp

from postbud._config import Settings
from postbud._mailer import Mailer
from postbud._message import MAX_MESSAGE_SIZE as GMAIL_SIZE
from postbud._smtp import Route, redirected

from . import replies
from ._hooks import ACCOUNT_PASSWORD, GmailHandler
from ._protocol import GmailSMTP, close_transport, hide_credentials_in_logs
from ._records import ReceivedMessage

__all__ = ["ACCOUNT_PASSWORD", "FakeGmail"]

Mode = Literal["ssl", "starttls"]
_COMMANDS = ("CONNECT", "EHLO", "STARTTLS", "AUTH", "MAIL", "RCPT", "DATA", "NOOP", "RSET")


@dataclass
class _Fault:
    command: str
    reply: str | None  # None: close the connection without a reply
    close: bool
    times: int


class FakeGmail(localserver_smtp.Server):  # type: ignore[misc]
    """A faithful local stand-in for smtp.gmail.com.

    Args:
        mode: ``"ssl"`` (TLS from the first byte, like port 465) or ``"starttls"``
            (like port 587: STARTTLS required before AUTH).
        username: The one account it knows.
        app_password: That account's app password (spaces are ignored, as by Gmail).

    Attributes (all reset by ``reset()``):
        messages: ``ReceivedMessage`` records of accepted mail, oldest first.
        commands: SMTP verbs received, in order (``"AUTH PLAIN"``, never credentials).
        connections: Client connections accepted.
        logins, failed_logins: User names that logged in, or failed to.
        bad_recipients: Addresses answered with ``553 5.1.3``.
        max_recipients: RCPTs per transaction before ``452 4.5.3`` (Gmail: 100).
        refuse_starttls: Answer STARTTLS with ``454 4.7.0``.
        strip_starttls: Do not offer STARTTLS; offer AUTH in clear (a downgrade attack).
        smtputf8: Advertise SMTPUTF8.
        pipelining: Advertise PIPELINING (RFC 2920), as Gmail does.
        pipelined: Verbs that arrived with more commands already behind them (the
            client pipelined them), in order.
        auth_line: The EHLO AUTH line (Gmail's by default).

    Use it as a context manager, or through the pytest fixtures ``fake_gmail`` and
    ``fake_gmail_starttls`` of ``postbud.testing.plugin``. Clients trust it through
    ``ca_file``, ``ssl_context()``, ``settings()`` or ``mailer()``.
    """

    def __init__(
        self,
        mode: Mode = "ssl",
        *,
        username: str = "postbud.test@gmail.com",
        app_password: str = "abcd efgh ijkl mnop",  # noqa: S107 - a test fixture value
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if mode not in ("ssl", "starttls"):
            raise ValueError("mode must be 'ssl' or 'starttls'")
        super().__init__(host=host, port=port)
        self.mode: Mode = mode
        self.username = username
        self.app_password = app_password
        self._password = "".join(app_password.split())
        self.handler = GmailHandler(self)
        self._ca = trustme.CA()
        self._leaf = self._ca.issue_cert("localhost", "127.0.0.1", "::1")
        self._rogue = trustme.CA().issue_cert("localhost", "127.0.0.1", "::1")
        self._server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._leaf.configure_cert(self._server_context)
        fd, self.ca_file = tempfile.mkstemp(prefix="postbud-fake-gmail-", suffix=".pem")
        with os.fdopen(fd, "wb") as fh:
            fh.write(self._ca.cert_pem.bytes())
        self.SMTP_kwargs.update(
            hostname="smtp.gmail.com",
            data_size_limit=GMAIL_SIZE,
            enable_SMTPUTF8=True,
            authenticator=self.handler.authenticate,
            auth_required=False,  # enforced at MAIL with Gmail's own 530 text
        )
        # aiosmtpd keeps the listener's context in ``self.ssl_context``; ours is a method
        # for clients (as documented), so the listener's lives in ``_listener_context``.
        del self.ssl_context
        self._listener_context: ssl.SSLContext | None = None
        if mode == "ssl":
            self._listener_context = self._server_context
            # aiosmtpd cannot see TLS it did not start; AUTH is only offered over it anyway.
            self.SMTP_kwargs["auth_require_tls"] = False
        else:
            self.SMTP_kwargs.update(tls_context=self._server_context, require_starttls=True)
        self._lock = threading.Lock()
        self._sessions: weakref.WeakSet[GmailSMTP] = weakref.WeakSet()
        self._untrusted = False
        self.reset()

    # -- lifecycle --------------------------------------------------------------------

    def factory(self) -> SMTP:
        return GmailSMTP(self.handler, **self.SMTP_kwargs)

    def _create_server(self) -> Any:
        return self.loop.create_server(
            self._factory_invoker, host=self.hostname, port=self.port, ssl=self._listener_context
        )

    def _trigger_server(self) -> None:
        # aiosmtpd builds its instance lazily on the first connection: make one (with a
        # client that verifies our certificate, which also checks the TLS set-up).
        self._set_server_socket_attributes()
        with socket.create_connection((self.hostname, self.port), 5.0) as raw:
            if self._listener_context is None:
                raw.recv(1024)
                return
            with self.ssl_context().wrap_socket(raw, server_hostname=self.hostname) as tls:
                tls.recv(1024)

    def start(self) -> None:
        hide_credentials_in_logs()
        super().start()
        # aiosmtpd's start-up probe connected once; a user's count starts at zero.
        self.connections = 0
        self.commands.clear()

    def __enter__(self) -> FakeGmail:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self, timeout: float | None = None) -> None:
        # Clients still connected (a Mailer nobody closed) would leave transports for
        # the garbage collector, which warns about them (ResourceWarning) at exit.
        if getattr(self, "loop", None) is not None and self.loop.is_running():
            self._abort_connections(5.0 if timeout is None else timeout)
        super().stop(timeout)
        if os.path.exists(self.ca_file):
            os.unlink(self.ca_file)

    def __repr__(self) -> str:
        return f"<FakeGmail {self.mode} 127.0.0.1:{getattr(self, 'port', '?')} {self.username}>"

    def reset(self) -> None:
        """Forget messages, commands and faults; trust the normal certificate again."""
        with self._lock:
            self.messages: list[ReceivedMessage] = []
            self.connections = 0
            self.commands: list[str] = []
            self.logins: list[str] = []
            self.failed_logins: list[str] = []
            self.bad_recipients: set[str] = set()
            self.max_recipients = 100
            self.refuse_starttls = False
            self.smtputf8 = True
            self.pipelining = True
            self.pipelined: list[str] = []
            self.auth_line = replies.EHLO_AUTH
            self.strip_starttls = False
            self._faults: deque[_Fault] = deque()
            self._delays: dict[str | None, float] = {}
            self._quota_after: int | None = None
            self._tokens: dict[str, tuple[str, float]] = {}
            self.xoauth2_error_answers: list[bytes | None] = []
        self.untrusted = False

    # -- for clients ------------------------------------------------------------------

    def ssl_context(self) -> ssl.SSLContext:
        """A verifying client context that trusts this server's CA."""
        context = ssl.create_default_context()
        self._ca.configure_trust(context)
        return context

    def settings(self, **overrides: Any) -> Settings:
        """Settings that reach this server with its account (override any of them)."""
        return Settings(**self.settings_values(**overrides))

    def settings_values(self, **overrides: Any) -> dict[str, Any]:
        """The same as plain keyword values: for a logging config, a subprocess (as
        JSON or ``POSTBUD_*`` variables) or ``Mailer(**values)``."""
        values: dict[str, Any] = {
            "username": self.username,
            "app_password": self.app_password,
            "host": "127.0.0.1",
            "port": self.port,
            "security": self.mode,
            "ca_file": self.ca_file,
            "timeout": 10,
        }
        values.update(overrides)
        return values

    def mailer(self, **overrides: Any) -> Mailer:
        """A ``postbud.Mailer`` for this server."""
        return Mailer(self.settings(**overrides))

    @contextmanager
    def intercept(self) -> Iterator[FakeGmail]:
        """Route every postbud connection to this server while the block runs.

        Code configured for smtp.gmail.com (a Django settings file, a script) then
        talks to this fake, over verified TLS, without changing its configuration. The
        credentials it uses must be this fake's ``username`` and ``app_password``.
        """
        with redirected(Route("127.0.0.1", self.port, self.mode, self.ssl_context())):
            yield self

    # -- fault injection --------------------------------------------------------------

    def fail_next(self, command: str, reply: str, *, times: int = 1, close: bool = False) -> None:
        """Answer the next ``times`` uses of ``command`` with ``reply``.

        ``command`` is one of CONNECT (the greeting), EHLO, STARTTLS, AUTH, MAIL, RCPT,
        DATA, NOOP or RSET.

        ``reply`` is a full reply such as ``replies.TRY_AGAIN_LATER``. With
        ``close=True`` the connection is closed right after the reply.
        """
        self._add_fault(command, reply, close, times)

    def disconnect_next(self, command: str, *, times: int = 1) -> None:
        """Close the connection instead of answering the next ``command``.

        ``"DATA"`` closes it mid-DATA: after the 354, while the client sends the message.
        """
        if command.upper() == "DATA":
            self._add_fault("DATA-BODY", None, True, times)
        else:
            self._add_fault(command, None, True, times)

    def close_connections(self) -> None:
        """Close every open client connection now, without a reply (Gmail retiring them)."""
        for session in list(self._sessions):
            if session.transport is not None:
                session.loop.call_soon_threadsafe(close_transport, session)
        time.sleep(0.05)  # let the loop thread run the closes

    def _abort_connections(self, wait: float) -> None:
        """Drop every client connection at once and wait (up to ``wait``) until each is
        gone. Not close(): a TLS close waits for the client's close_notify, which an idle
        client never sends, so its socket would outlive the loop (and, from Python 3.12,
        the loop's ``wait_closed()`` would wait out the 30 s TLS shutdown timeout)."""

        def abort_all() -> None:
            for session in list(self._sessions):
                for transport in (session.transport, session._original_transport):
                    if isinstance(transport, asyncio.WriteTransport):
                        transport.abort()
                    elif transport is not None:
                        transport.close()

        self.loop.call_soon_threadsafe(abort_all)
        deadline = time.monotonic() + wait
        while any(s.transport is not None for s in list(self._sessions)):
            if time.monotonic() > deadline:
                break
            time.sleep(0.005)

    def delay(self, seconds: float, command: str | None = None) -> None:
        """Delay every reply (or the replies to ``command``; ``"CONNECT"`` is the greeting)."""
        with self._lock:
            self._delays[command.upper() if command else None] = seconds

    def quota_after(self, messages: int) -> None:
        """Answer ``550 5.4.5`` (daily limit) at MAIL and DATA after ``messages`` more."""
        with self._lock:
            self._quota_after = len(self.messages) + messages

    @property
    def untrusted(self) -> bool:
        """Serve a certificate from a CA that clients do not trust (for new connections)."""
        return self._untrusted

    @untrusted.setter
    def untrusted(self, value: bool) -> None:
        self._untrusted = value
        (self._rogue if value else self._leaf).configure_cert(self._server_context)

    # -- OAuth2 --------------------------------------------------------------------------

    def accept_token(self, token: str, user: str, expires_at: float | None = None) -> None:
        """Accept ``token`` for XOAUTH2 as ``user`` until ``expires_at`` (Unix time).

        ``FakeGoogleTokens`` calls this for every token it issues.
        """
        with self._lock:
            self._tokens[token] = (user.lower(), expires_at or time.time() + 3600)

    def revoke_tokens(self) -> None:
        """Stop accepting every token issued so far (as when a user revokes access)."""
        with self._lock:
            self._tokens.clear()

    def _token_ok(self, user: str, token: str) -> bool:
        with self._lock:
            known = self._tokens.get(token)
        return known is not None and known[0] == user.lower() and time.time() < known[1]

    # -- used by the protocol ---------------------------------------------------------

    def _add_fault(self, command: str, reply: str | None, close: bool, times: int) -> None:
        name = command.upper()
        if name not in (*_COMMANDS, "DATA-BODY"):
            raise ValueError(f"cannot inject a fault at {command!r}; use one of {_COMMANDS}")
        with self._lock:
            self._faults.append(_Fault(name, reply, close, times))

    def _take_fault(self, command: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.command == command:
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def _delay_for(self, command: str) -> float:
        delays = self._delays
        return delays.get(command, delays.get(None, 0.0))

    def _over_quota(self) -> bool:
        return self._quota_after is not None and len(self.messages) >= self._quota_after
