"""What a fake server or ``MemoryTransport`` received: one record per delivered message."""

from __future__ import annotations

import email
import functools
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage

__all__ = ["ReceivedMessage"]


@dataclass(frozen=True)
class ReceivedMessage:
    """One accepted message.

    Attributes:
        mail_from: The envelope sender (MAIL FROM).
        recipients: The accepted envelope recipients (RCPT TO), Bcc included.
        data: The message bytes as received.
        mail_options: MAIL FROM parameters (``SIZE=...``, ``SMTPUTF8``...).
        smtputf8: Whether the client asked for SMTPUTF8.
        authenticated_as: The login name of the session, if any.
    """

    mail_from: str
    recipients: tuple[str, ...]
    data: bytes
    mail_options: tuple[str, ...] = ()
    smtputf8: bool = False
    authenticated_as: str | None = None

    @functools.cached_property
    def message(self) -> EmailMessage:
        """The parsed message (``email.policy.default``), parsed on first access."""
        parsed = email.message_from_bytes(self.data, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed

    def __getitem__(self, header: str) -> str | None:
        """A header of the parsed message, as a string (``record["Subject"]``)."""
        value = self.message[header]
        return None if value is None else str(value)

    @property
    def text(self) -> str | None:
        """The text/plain body, if any, with ``\n`` line ends."""
        return _body(self.message, "plain")

    @property
    def html(self) -> str | None:
        """The text/html body, if any, with ``\n`` line ends."""
        return _body(self.message, "html")


def _body(message: EmailMessage, subtype: str) -> str | None:
    part = message.get_body(preferencelist=(subtype,))
    if part is None or part.get_content_subtype() != subtype:
        return None
    content = part.get_content()
    # The wire uses CRLF; Python code compares with "\n".
    return content.replace("\r\n", "\n") if isinstance(content, str) else None
