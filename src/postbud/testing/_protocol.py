"""The fake's SMTP protocol: one aiosmtpd connection that talks like Gmail.

Gmail's texts for aiosmtpd's stock replies, the session id in every reply, the
delays and the connection drops the tests script (``FakeGmail.delay``,
``disconnect_next``...), and the commands seen (never the credentials). What Gmail
answers to each command is decided by the hooks (``_hooks``).
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiosmtpd.smtp import SMTP, Session

from . import replies

if TYPE_CHECKING:
    from ._hooks import GmailHandler

__all__ = ["GmailSMTP", "close_transport", "gmail_reply", "hide_credentials_in_logs"]

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


# "AUTH PLAIN <base64>" in any case: aiosmtpd masks its own log lines only when the
# client wrote "AUTH" in capitals (and not at all before 1.4.6).
_AUTH_LINE = re.compile(rb"(?i)^(\s*AUTH\s+\S+\s+)\S.*?(\r?\n)?$", re.S)


class _HideCredentials(logging.Filter):
    """Masks the credentials of AUTH lines in aiosmtpd's log (logger ``mail.log``), so
    a user's test suite that captures logs never records a password or a token."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            if "can't decode base64" in str(record.msg):
                # The answer to a login challenge that was not base64: a password typed
                # in clear, as like as not.
                record.args = (*record.args[:1], "********")
            else:
                record.args = tuple(_hidden(a) for a in record.args)
        return True


def _hidden(value: object) -> object:
    if isinstance(value, (bytes, str)):
        raw = value.encode("utf-8", "replace") if isinstance(value, str) else value
        match = _AUTH_LINE.match(raw)
        if match:
            hidden = match.group(1) + b"********" + (match.group(2) or b"")
            return hidden.decode("utf-8", "replace") if isinstance(value, str) else hidden
    return value


_filter = _HideCredentials()


def hide_credentials_in_logs() -> None:
    """Install the filter on ``mail.log`` (once; FakeGmail does it when it starts)."""
    log = logging.getLogger("mail.log")
    if _filter not in log.filters:
        log.addFilter(_filter)


class GmailSMTP(SMTP):
    """One connection. Gmail's texts, the session id, delays and closes."""

    # Gmail sends OAuth tokens of up to ~2 KB in one AUTH line: aiosmtpd's 512 is too
    # small. command_size_limits is a class-level dict in aiosmtpd; ours is separate.
    line_length_limit = 8192
    AuthLoginUsernameChallenge = "Username:"
    AuthLoginPasswordChallenge = "Password:"

    def __init__(self, handler: GmailHandler, **kwargs: Any) -> None:
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
            if self._more_waiting():
                self.fake.pipelined.append(verb)
            return await method(arg)

        return run

    def _more_waiting(self) -> bool:
        """Whether the client's next command is here before this one is answered
        (asyncio's StreamReader keeps what it received in ``_buffer``)."""
        return bool(getattr(self._reader, "_buffer", b""))

    def connection_lost(self, error: Exception | None) -> None:
        # aiosmtpd closes its transport only on the paths it chose (QUIT, a cancelled
        # command loop); a client that hangs up while the greeting is pending (a delayed
        # CONNECT) leaves it open. A TLS transport (implicit TLS, or after STARTTLS) is
        # then never marked closed on Python 3.10 and warns when it is collected
        # ("unclosed transport <_SSLProtocolTransport>", a ResourceWarning).
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
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
                    close_transport(self)
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
            self.loop.call_soon(close_transport, self)

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


def close_transport(server: SMTP) -> None:
    if server.transport is not None:
        server.transport.close()


def gmail_reply(server: SMTP, reply: str) -> str:
    return replies.render(reply, session_id=getattr(server, "session_id", "fake"))
