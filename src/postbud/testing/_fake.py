"""FakeGmail: a local SMTP server that answers like smtp.gmail.com.

Real sockets, real TLS (a trustme CA that covers ``localhost`` and ``127.0.0.1``),
Gmail's greeting, EHLO lines and reply texts, app-password checks with Gmail's exact
failures, and fault injection a test can script. It is a subclass of
pytest-localserver's aiosmtpd-based ``smtp.Server`` (which brings the free-port fix),
so it runs in its own thread and any client, not just postbud, can talk to it.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import socket
import ssl
import tempfile
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import trustme
from aiosmtpd.smtp import MISSING, SMTP, AuthResult, Envelope, LoginPassword, Session
from pytest_localserver import smtp as localserver_smtp

from postbud._config import Settings
from postbud._mailer import Mailer
from postbud._message import MAX_MESSAGE_SIZE as GMAIL_SIZE
from postbud._smtp import Route, redirected

from . import replies
from ._records import ReceivedMessage

__all__ = ["FakeGmail"]

Mode = Literal["ssl", "starttls"]
_COMMANDS = ("CONNECT", "EHLO", "STARTTLS", "AUTH", "MAIL", "RCPT", "DATA", "NOOP", "RSET")
# The account password of the fake account: using it instead of the app password gets
# Gmail's "534 5.7.9 Application-specific password required".
ACCOUNT_PASSWORD = "CorrectHorse-Battery9"  # noqa: S105 - a test fixture value

# aiosmtpd's own texts -> Gmail's, for replies the handler hooks do not produce.
_STOCK: dict[str, str] = {
    "220 Ready to start TLS": replies.STARTTLS_READY,
    "354 End data with <CR><LF>.<CR><LF>": replies.DATA_GO_AHEAD,
    "530 Must issue a STARTTLS command first": replies.STARTTLS_REQUIRED,
    "552 Error: message size exceeds fixed maximum message size": replies.MESSAGE_TOO_BIG,
    "552 Error: Too much mail data": replies.MESSAGE_TOO_BIG,
    "504 5.5.4 Unrecognized authentication type": "504 5.7.4 Unrecognized authentication type."
    " {id} - gsmtp",
    "503 Already authenticated": "503 5.7.0 No identity changes permitted. {id} - gsmtp",
    "503 Error: send HELO first": "503 5.5.1 EHLO/HELO first. {id} - gsmtp",
    "503 Error: send EHLO first": "503 5.5.1 EHLO/HELO first. {id} - gsmtp",
    "503 Error: need MAIL command": "503 5.5.1 MAIL first. {id} - gsmtp",
    "503 Error: need RCPT command": "503 5.5.1 RCPT first. {id} - gsmtp",
    "501 Syntax: EHLO hostname": "501-5.5.4 Empty HELO/EHLO argument not allowed, closing "
    "connection.\r\n501 5.5.4  https://support.google.com/mail/?p=helo {id} - gsmtp",
}


@dataclass
class _Fault:
    command: str
    reply: str | None  # None: close the connection without a reply
    close: bool
    times: int


class _GmailSMTP(SMTP):
    """One connection. Gmail's texts, the session id, delays and closes."""

    # Gmail sends OAuth tokens of up to ~2 KB in one AUTH line: aiosmtpd's 512 is too
    # small. command_size_limits is a class-level dict in aiosmtpd; ours is separate.
    line_length_limit = 8192
    AuthLoginUsernameChallenge = "Username:"
    AuthLoginPasswordChallenge = "Password:"

    def __init__(self, handler: _GmailHandler, **kwargs: Any) -> None:
        self.fake = handler.fake
        self.session_id = secrets.token_hex(12) + ".fake"
        kwargs["ident"] = f"ESMTP {self.session_id} - gsmtp"
        super().__init__(handler, **kwargs)
        self.command_size_limits = _Limits(self.command_size_limit, {"AUTH": 8192})
        self.current = "CONNECT"
        self.delayed = False
        self.dropping = False
        self.fake.connections += 1
        self.fake._sessions.add(self)
        for name, method in list(self._smtp_methods.items()):
            self._smtp_methods[name] = self._tracked(name, method)

    def _tracked(self, name: str, method: Callable[[Any], Any]) -> Callable[[Any], Any]:
        async def run(arg: Any) -> Any:
            self.current = name
            self.delayed = False
            verb = name
            if name == "AUTH" and arg:
                verb = f"AUTH {str(arg).split()[0].upper()}"  # never the credentials
            self.fake.commands.append(verb)
            return await method(arg)

        return run

    def connection_lost(self, error: Exception | None) -> None:
        super().connection_lost(error)
        # A client that reset the connection leaves its error in the stream's "closed"
        # future; aiosmtpd only reads it when the protocol is collected, which may be
        # after the future at interpreter exit ("Future exception was never retrieved").
        closed = getattr(self, "_closed", None)
        if closed is not None and closed.done() and not closed.cancelled():
            closed.exception()

    def eof_received(self) -> bool | None:
        super().eof_received()
        # aiosmtpd keeps a half-closed socket open unless it started TLS itself; with
        # implicit TLS that leaks the socket of every client that hangs up mid-command.
        return False

    def _create_session(self) -> Session:
        return _Session(self.loop)

    async def push(self, status: Any) -> None:
        text = status.decode() if isinstance(status, bytes) else str(status)
        if self.current == "CONNECT" and text.startswith("220 "):
            self.current = "GREETED"
            fault = self.fake._take_fault("CONNECT")
            if fault is not None:  # a reply instead of the greeting (Gmail's 421 4.7.0...)
                if fault.reply is not None:
                    await super().push(replies.render(fault.reply, session_id=self.session_id))
                if fault.close or fault.reply is None:
                    _close(self)
                return
        text = _STOCK.get(text, text)
        text = replies.render(text, session_id=self.session_id, ts=int(time.time()))
        delay = self.fake._delay_for("CONNECT" if self.current == "GREETED" else self.current)
        if delay and not self.delayed:
            self.delayed = True  # once per reply, not per line of a multi-line reply
            await asyncio.sleep(delay)
        await super().push(text)
        if text.startswith("354") and self.fake._take_fault("DATA-BODY") is not None:
            # Drop the connection while the client is sending the message.
            self.dropping = True
            self.loop.call_soon(_close, self)

    async def smtp_STARTTLS(self, arg: str) -> None:
        fault = await self.event_handler._fault(self, "STARTTLS")
        if fault or self.fake.refuse_starttls:
            await self.push(fault or replies.TLS_NOT_AVAILABLE)
            return
        await super().smtp_STARTTLS(arg)

    async def close_now(self) -> None:
        """Close the connection and wait to be cancelled (no reply is sent)."""
        if self.transport is not None:
            self.transport.close()
        await asyncio.sleep(3600)


class _Session(Session):
    # aiosmtpd logs a deprecation warning whenever it sets login_data after AUTH; the
    # fake's users should not see that noise in their test logs.
    @property
    def login_data(self) -> Any:
        return self._login_data

    @login_data.setter
    def login_data(self, value: Any) -> None:
        self._login_data = value


class _Limits(dict[str, int]):
    def __init__(self, default: int, values: dict[str, int]) -> None:
        super().__init__(values)
        self.default = default

    def __missing__(self, key: str) -> int:
        return self.default


class _GmailHandler:
    """aiosmtpd hooks: Gmail's EHLO lines, AUTH checks, faults, recording."""

    def __init__(self, fake: FakeGmail) -> None:
        self.fake = fake

    # aiosmtpd calls this as the ``authenticator``
    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        fake = self.fake
        if not isinstance(data, LoginPassword):
            return AuthResult(
                success=False, handled=False, message=_r(server, replies.BAD_CREDENTIALS)
            )
        user = data.login.decode("utf-8", "replace")
        password = data.password.decode("utf-8", "replace")
        # Gmail accepts an app password with or without the spaces it displays.
        if user.lower() == fake.username.lower() and "".join(password.split()) == fake._password:
            fake.logins.append(user)
            return AuthResult(success=True, auth_data=user, message=replies.AUTH_ACCEPTED)
        reply = replies.BAD_CREDENTIALS
        if user.lower() == fake.username.lower() and password == ACCOUNT_PASSWORD:
            reply = replies.APP_PASSWORD_REQUIRED
        fake.failed_logins.append(user)
        return AuthResult(success=False, handled=False, message=_r(server, reply))

    async def auth_XOAUTH2(self, server: _GmailSMTP, args: list[str]) -> AuthResult:
        """SASL XOAUTH2 with Gmail's failure dance: 334 + base64 JSON, empty line, 535."""
        fake = self.fake
        if len(args) == 1:
            blob = await server.challenge_auth("")
            if blob is MISSING:
                return AuthResult(success=False, handled=True)
        else:
            try:
                blob = base64.b64decode(args[1], validate=True)
            except ValueError:
                await server.push(_r(server, replies.CANNOT_DECODE))
                return AuthResult(success=False, handled=True)
        assert isinstance(blob, bytes)
        fields = dict(
            p.split("=", 1) for p in blob.decode("utf-8", "replace").split("\x01") if "=" in p
        )
        user, bearer = fields.get("user", ""), fields.get("auth", "")
        token = bearer[7:] if bearer.startswith("Bearer ") else ""
        if fake._token_ok(user, token):
            fake.logins.append(user)
            return AuthResult(success=True, auth_data=user, message=replies.AUTH_ACCEPTED)
        answer = await server.challenge_auth(replies.XOAUTH2_ERROR_JSON)
        fake.xoauth2_error_answers.append(answer if isinstance(answer, bytes) else None)
        fake.failed_logins.append(user)
        if answer is MISSING:
            return AuthResult(success=False, handled=True)
        return AuthResult(success=False, handled=False, message=_r(server, replies.BAD_CREDENTIALS))

    async def handle_EHLO(
        self,
        server: _GmailSMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        if fault := await self._fault(server, "EHLO"):
            return [fault]
        session.host_name = hostname
        fake = self.fake
        encrypted = fake.mode == "ssl" or server._tls_protocol is not None
        peer = session.peer[0] if isinstance(session.peer, tuple) else "127.0.0.1"
        lines = [f"smtp.gmail.com at your service, [{peer}]", f"SIZE {GMAIL_SIZE}", "8BITMIME"]
        if not encrypted and not fake.strip_starttls:
            lines.append("STARTTLS")
        if encrypted or fake.strip_starttls:
            lines.append(fake.auth_line)
        lines += ["ENHANCEDSTATUSCODES", "PIPELINING", "CHUNKING"]
        if fake.smtputf8:
            lines.append("SMTPUTF8")
        return [f"250-{line}" for line in lines[:-1]] + [f"250 {lines[-1]}"]

    async def handle_AUTH(
        self, server: _GmailSMTP, session: Session, envelope: Envelope, args: list[str]
    ) -> Any:
        return await self._fault(server, "AUTH") or MISSING

    async def handle_MAIL(
        self,
        server: _GmailSMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        options: list[str],
    ) -> str:
        fake = self.fake
        if fault := await self._fault(server, "MAIL"):
            return fault
        if not session.authenticated:
            return replies.AUTH_REQUIRED
        if fake._over_quota():
            return replies.DAILY_LIMIT_EXCEEDED
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return replies.MAIL_OK

    async def handle_RCPT(
        self,
        server: _GmailSMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        options: list[str],
    ) -> str:
        if fault := await self._fault(server, "RCPT"):
            return replies.render(fault, session_id=server.session_id, address=address)
        if self.fake.max_recipients and len(envelope.rcpt_tos) >= self.fake.max_recipients:
            return replies.TOO_MANY_RECIPIENTS
        if address.lower() in {a.lower() for a in self.fake.bad_recipients}:
            return replies.render(
                replies.BAD_RECIPIENT, session_id=server.session_id, address=address
            )
        envelope.rcpt_tos.append(address)
        return replies.RCPT_OK

    async def handle_DATA(self, server: _GmailSMTP, session: Session, envelope: Envelope) -> str:
        fake = self.fake
        if server.dropping:
            await server.close_now()
        if fault := await self._fault(server, "DATA"):
            return fault
        if fake._over_quota():
            return replies.DAILY_LIMIT_EXCEEDED
        content = envelope.original_content or b""
        fake.messages.append(
            ReceivedMessage(
                mail_from=envelope.mail_from or "",
                recipients=tuple(envelope.rcpt_tos),
                data=content,
                mail_options=tuple(envelope.mail_options),
                smtputf8=bool(envelope.smtp_utf8),
                authenticated_as=str(session.auth_data) if session.auth_data else None,
            )
        )
        return replies.DATA_ACCEPTED

    async def handle_NOOP(
        self, server: _GmailSMTP, session: Session, envelope: Envelope, arg: str
    ) -> str:
        return await self._fault(server, "NOOP") or replies.NOOP_OK

    async def handle_RSET(self, server: _GmailSMTP, session: Session, envelope: Envelope) -> str:
        return await self._fault(server, "RSET") or replies.RSET_OK

    async def handle_QUIT(self, server: _GmailSMTP, session: Session, envelope: Envelope) -> str:
        return replies.CLOSING

    async def _fault(self, server: _GmailSMTP, command: str) -> str | None:
        fault = self.fake._take_fault(command)
        if fault is None:
            return None
        if fault.reply is None:
            await server.close_now()
        if fault.close:
            # The reply goes out first, then the connection closes (like Gmail's 421).
            server.loop.call_soon(_close, server)
        return fault.reply


def _close(server: SMTP) -> None:
    if server.transport is not None:
        server.transport.close()


def _r(server: SMTP, reply: str) -> str:
    return replies.render(reply, session_id=getattr(server, "session_id", "fake"))


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
        self.handler = _GmailHandler(self)
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
        self._sessions: weakref.WeakSet[_GmailSMTP] = weakref.WeakSet()
        self._untrusted = False
        self.reset()

    # -- lifecycle --------------------------------------------------------------------

    def factory(self) -> SMTP:
        return _GmailSMTP(self.handler, **self.SMTP_kwargs)

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
            self.close_connections()
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
                session.loop.call_soon_threadsafe(_close, session)
        time.sleep(0.05)  # let the loop thread run the closes

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
