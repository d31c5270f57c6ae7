"""Flask-Mail's ``Message`` and ``Attachment``, translated into ``Mailer.send``'s arguments.

So that a Flask-Mail app changes its import line (``from flask_postbud import Mail,
Message``) and keeps working. A Message here only holds what the app gave; postbud
builds and validates the mail (``_compose.send_kwargs``). What Flask-Mail offers that postbud
does not do is refused by name when sending, not dropped in silence: ``alts`` other than
``html``, ``mail_options`` and ``rcpt_options`` (ESMTP options Gmail ignores).
``charset`` is accepted and ignored (postbud writes UTF-8 where it is needed).
"""

from __future__ import annotations

import email
import os
from collections.abc import Iterable, Mapping
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from flask import Flask

    import postbud

__all__ = [
    "AddressLike",
    "Attachment",
    "Attachments",
    "Connection",
    "InlineLike",
    "Message",
    "Recipients",
    "format_address",
]

#: An address as Flask-Mail takes it: ``"Name <a@b.com>"`` or ``("Name", "a@b.com")``.
AddressLike = str | tuple[str, str]
#: One address or a list of them.
Recipients = AddressLike | Iterable[AddressLike] | None
# The same types as postbud.Mailer.send's attachments= and inline=.
AttachmentLike = str | os.PathLike[str] | tuple[str, bytes] | tuple[str, bytes, str]
Attachments = AttachmentLike | Iterable[AttachmentLike] | None
InlineLike = str | os.PathLike[str] | bytes | tuple[bytes, str]


class Attachment:
    """A file attached to a ``Message`` (Flask-Mail's ``Attachment``).

    Args:
        filename: The file name the recipient sees (required by postbud).
        content_type: Its MIME type; None lets postbud guess it from the name.
        data: The content (``str`` is sent as UTF-8).
        disposition: ``"attachment"`` (the default) or ``"inline"``; an inline part
            needs a ``Content-ID`` in ``headers`` and an HTML body that shows it
            (``<img src="cid:...">``).
        headers: Only ``Content-ID``, for an inline part.
    """

    def __init__(
        self,
        filename: str | None = None,
        content_type: str | None = None,
        data: str | bytes | None = None,
        disposition: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if data is None:
            raise ValueError("The 'data' argument is required.")
        self.filename = filename
        self.content_type = content_type
        self.data = data
        self.disposition = disposition or "attachment"
        self.headers = dict(headers or {})

    def __repr__(self) -> str:
        return f"<Attachment {self.filename!r} {self.content_type or '(guessed)'}>"


class Message:
    """A mail as Flask-Mail's ``Message`` describes it; send it with ``mail.send(msg)``.

    The arguments are Flask-Mail's. Addresses are strings or ``(name, address)``
    tuples. ``sender=None`` means ``POSTBUD_SENDER`` / ``MAIL_DEFAULT_SENDER``, else
    the account, decided when it is sent (not when it is made, so a Message can be
    made outside an app context). After sending, ``msgId`` holds its Message-ID.
    """

    def __init__(
        self,
        subject: str = "",
        recipients: list[AddressLike] | None = None,
        body: str | None = None,
        html: str | None = None,
        alts: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        sender: AddressLike | None = None,
        cc: list[AddressLike] | None = None,
        bcc: list[AddressLike] | None = None,
        attachments: list[Attachment] | None = None,
        reply_to: AddressLike | None = None,
        date: float | None = None,
        charset: str | None = None,
        extra_headers: Mapping[str, str] | None = None,
        mail_options: list[str] | None = None,
        rcpt_options: list[str] | None = None,
    ) -> None:
        if isinstance(sender, tuple):
            sender = format_address(sender, "sender")  # as Flask-Mail does
        self.subject = subject
        self.recipients: list[AddressLike] = recipients or []
        self.body = body
        self.alts: dict[str, str] = dict(alts or {})
        if html is not None:
            self.alts["html"] = html
        self.sender = sender
        self.cc: list[AddressLike] = cc or []
        self.bcc: list[AddressLike] = bcc or []
        self.attachments: list[Attachment] = attachments or []
        self.reply_to = reply_to
        self.date = date
        self.charset = charset
        self.extra_headers: dict[str, str] | None = dict(extra_headers) if extra_headers else None
        self.mail_options: list[str] = mail_options or []
        self.rcpt_options: list[str] = rcpt_options or []
        self.msgId: str | None = None  # Flask-Mail's name
        #: The bytes that were sent (or, under suppression, would have been); set on the
        #: copies ``record_messages()`` collects.
        self.data: bytes | None = None

    @property
    def html(self) -> str | None:
        """The HTML body (Flask-Mail keeps it in ``alts["html"]``)."""
        return self.alts.get("html")

    @html.setter
    def html(self, value: str | None) -> None:
        if value is None:
            self.alts.pop("html", None)
        else:
            self.alts["html"] = value

    @property
    def message_id(self) -> str | None:
        """``msgId`` under postbud's name."""
        return self.msgId

    @property
    def send_to(self) -> set[AddressLike]:
        """Every recipient: To, Cc and Bcc."""
        return {*self.recipients, *self.cc, *self.bcc}

    @property
    def message(self) -> EmailMessage:
        """What was sent, parsed (on the copies ``record_messages()`` collects)."""
        if self.data is None:
            raise ValueError("This message was not sent: it has no bytes to parse yet.")
        parsed = email.message_from_bytes(self.data, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed

    def add_recipient(self, recipient: AddressLike) -> None:
        """Add one To address."""
        self.recipients.append(recipient)

    def attach(
        self,
        filename: str | None = None,
        content_type: str | None = None,
        data: str | bytes | None = None,
        disposition: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Attach a file (arguments as ``Attachment``)."""
        self.attachments.append(Attachment(filename, content_type, data, disposition, headers))

    def send(self, connection: Any) -> None:
        """Send through a connection of ``mail.connect()`` (Flask-Mail's spelling)."""
        connection.send(self)

    def __repr__(self) -> str:
        return f"<flask_postbud.Message {self.subject!r} to {len(self.send_to)}>"


def format_address(value: object, where: str) -> str:
    """A Flask-Mail address: a string as is, a ``(name, address)`` tuple as
    ``"name" <address>`` (quoted as needed). Anything else raises ``TypeError``."""
    if isinstance(value, str):
        return value
    if (
        isinstance(value, tuple)
        and len(value) == 2
        and all(isinstance(part, str) for part in value)
    ):
        name, address = value
        try:
            return str(Address(display_name=name, addr_spec=address))
        except ValueError:
            raise ValueError(f"{where}: {address!r} is not a valid email address.") from None
    raise TypeError(f"{where} must be an address string or a (name, address) tuple, got {value!r}.")


class _Sender(Protocol):
    """What a Connection sends through (``Postbud``)."""

    def send(self, to: Message, /, *, app: Flask | None = None) -> postbud.SendResult: ...


class Connection:
    """What ``with mail.connect() as conn:`` gives (Flask-Mail's ``Connection``)."""

    def __init__(self, extension: _Sender, app: Flask) -> None:
        self._extension = extension
        self._app = app
        self.num_emails = 0

    def send(self, message: Message) -> postbud.SendResult:
        """Send ``message`` on this connection."""
        result = self._extension.send(message, app=self._app)
        self.num_emails += 1
        return result

    def send_message(self, *args: Any, **kwargs: Any) -> postbud.SendResult:
        """``send(Message(*args, **kwargs))``."""
        return self.send(Message(*args, **kwargs))
