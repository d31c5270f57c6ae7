"""The fake's Gmail: what it answers at EHLO, AUTH (app passwords and XOAUTH2), MAIL,
RCPT and DATA, with Gmail's exact texts, and the faults a test injected."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

from aiosmtpd.smtp import MISSING, SMTP, AuthResult, Envelope, LoginPassword, Session

from postbud._message import MAX_MESSAGE_SIZE as GMAIL_SIZE

from . import replies
from ._protocol import GmailSMTP, close_transport, gmail_reply
from ._records import ReceivedMessage

if TYPE_CHECKING:
    from ._fake import FakeGmail

__all__ = ["ACCOUNT_PASSWORD", "GmailHandler"]

# The account password of the fake account: using it instead of the app password gets
# Gmail's "534 5.7.9 Application-specific password required".
ACCOUNT_PASSWORD = "CorrectHorse-Battery9"  # noqa: S105 - a test fixture value


class GmailHandler:
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
                success=False, handled=False, message=gmail_reply(server, replies.BAD_CREDENTIALS)
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
        return AuthResult(success=False, handled=False, message=gmail_reply(server, reply))

    async def auth_XOAUTH2(self, server: GmailSMTP, args: list[str]) -> AuthResult:
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
                await server.push(gmail_reply(server, replies.CANNOT_DECODE))
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
        return AuthResult(
            success=False, handled=False, message=gmail_reply(server, replies.BAD_CREDENTIALS)
        )

    async def handle_EHLO(
        self,
        server: GmailSMTP,
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
        lines.append("ENHANCEDSTATUSCODES")
        if fake.pipelining:
            lines.append("PIPELINING")
        lines.append("CHUNKING")
        if fake.smtputf8:
            lines.append("SMTPUTF8")
        return [f"250-{line}" for line in lines[:-1]] + [f"250 {lines[-1]}"]

    async def handle_AUTH(
        self, server: GmailSMTP, session: Session, envelope: Envelope, args: list[str]
    ) -> Any:
        return await self._fault(server, "AUTH") or MISSING

    async def handle_MAIL(
        self,
        server: GmailSMTP,
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
        server: GmailSMTP,
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

    async def handle_DATA(self, server: GmailSMTP, session: Session, envelope: Envelope) -> str:
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
        self, server: GmailSMTP, session: Session, envelope: Envelope, arg: str
    ) -> str:
        return await self._fault(server, "NOOP") or replies.NOOP_OK

    async def handle_RSET(self, server: GmailSMTP, session: Session, envelope: Envelope) -> str:
        return await self._fault(server, "RSET") or replies.RSET_OK

    async def handle_QUIT(self, server: GmailSMTP, session: Session, envelope: Envelope) -> str:
        return replies.CLOSING

    async def _fault(self, server: GmailSMTP, command: str) -> str | None:
        fault = self.fake._take_fault(command)
        if fault is None:
            return None
        if fault.reply is None:
            await server.close_now()
        if fault.close:
            # The reply goes out first, then the connection closes (like Gmail's 421).
            server.loop.call_soon(close_transport, server)
        return fault.reply
