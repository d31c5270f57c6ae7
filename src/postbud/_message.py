"""Build and validate one message, before anything touches the network.

Everything a user can get wrong about a message (an address, a header, an attachment,
the size) is caught here and raised as ``InvalidMessageError`` naming the bad value.
The result is an ``Envelope``: the wire bytes plus MAIL FROM / RCPT TO, which is what
the transport sends and what the outbox will store. Addresses are parsed by
``_address``; the MIME parts are written by hand in ``_mime`` (why: see there).

A ready ``email.message.Message`` (``send_message()``) is written by ``_ready``.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import format_datetime, make_msgid, parsedate_to_datetime
from typing import Union

from postbud._address import (
    Address,
    Addresses,
    addresses,
    check_no_breaks,
    check_unicode,
    parse_address,
)
from postbud._html import html_to_text
from postbud._mime import (
    address_header,
    attachment_part,
    check_header_block,
    header,
    inline_part,
    multipart,
    text_part,
)
from postbud.errors import InvalidMessageError

__all__ = [
    "MAX_MESSAGE_SIZE",
    "MAX_RECIPIENTS",
    "Addresses",
    "AttachmentLike",
    "Attachments",
    "Envelope",
    "InlineLike",
    "build_message",
    "size_check",
]

#: Gmail's advertised SIZE: 25 MB of attachments once base64-encoded.
MAX_MESSAGE_SIZE = 35_882_577
#: Gmail takes at most 100 recipients per SMTP transaction.
MAX_RECIPIENTS = 100

AttachmentLike = Union[str, "os.PathLike[str]", tuple[str, bytes], tuple[str, bytes, str]]
#: What ``attachments=`` takes: one attachment or an iterable of them.
Attachments = Union[AttachmentLike, Iterable[AttachmentLike], None]  # noqa: UP007
InlineLike = Union[str, "os.PathLike[str]", bytes, tuple[bytes, str]]
# RFC 5322 msg-id: dot-atoms on both sides of "@" (or a domain literal on the right).
_DOT_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
_MESSAGE_ID = re.compile(rf"<{_DOT_ATOM}@(?:{_DOT_ATOM}|\[[!-Z^-~]*\])>")
# Extra headers that hold addresses: validated and rendered like To and Cc.
_ADDRESS_HEADERS = frozenset(
    {
        "sender",
        "resent-from",
        "resent-sender",
        "resent-to",
        "resent-cc",
        "disposition-notification-to",
    }
)
# Headers a send() argument owns; passing them in headers= would be ambiguous.
_OWNED_HEADERS = frozenset(
    {
        "from",
        "to",
        "cc",
        "bcc",
        "reply-to",
        "subject",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
        "content-disposition",
    }
)


@dataclass(frozen=True, slots=True)
class Envelope:
    """What goes over SMTP for one message: envelope addresses plus the bytes.

    ``data`` uses CRLF line ends and is not dot-stuffed (smtplib does that).
    ``smtputf8``: an address needs SMTPUTF8; ``eightbit``: ``data`` is not 7-bit ASCII
    (it then goes with BODY=8BITMIME).
    """

    mail_from: str
    recipients: tuple[str, ...]
    data: bytes
    message_id: str
    smtputf8: bool = False
    eightbit: bool = False

    def split(self, size: int = MAX_RECIPIENTS) -> list[Envelope]:
        """The same message in envelopes of at most ``size`` recipients each."""
        return [
            self.with_recipients(self.recipients[i : i + size])
            for i in range(0, len(self.recipients), size)
        ]

    def with_recipients(self, recipients: Sequence[str]) -> Envelope:
        """The same message for other recipients."""
        return dataclasses.replace(self, recipients=tuple(recipients))


# -- envelopes ------------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _shared(recipients: tuple[str, ...]) -> tuple[str, ...]:
    """One tuple per recipient list: a queue of messages to the same address then holds
    no tuple of its own per message (fewer objects for the garbage collector to scan
    in the caller's thread while a slow server lets the queue grow)."""
    return recipients


# -- headers --------------------------------------------------------------------------


def _extra_headers(
    headers: Mapping[str, str] | None,
) -> list[tuple[str, str, list[Address] | None]]:
    """(name, value, addresses or None) of each extra header, checked."""
    if not headers:
        return []
    result = []
    for name, given in headers.items():
        if (
            not isinstance(name, str)
            or not name
            or not all(33 <= ord(c) <= 126 and c != ":" for c in name)
        ):
            raise InvalidMessageError(
                f"headers: {name!r} is not a valid header name "
                "(printable ASCII without spaces or ':')."
            )
        if name.lower() == "resent-bcc":
            raise InvalidMessageError(
                f"headers: {name!r} would show hidden recipients to everyone: leave it out."
            )
        if name.lower() in _OWNED_HEADERS:
            raise InvalidMessageError(
                f"headers: set {name!r} with its own argument of send(), not through headers=."
            )
        if not isinstance(given, str):
            raise InvalidMessageError(f"headers: the value of {name!r} must be a string.")
        check_no_breaks(f"headers[{name!r}]", given)
        value = given
        key = name.lower()
        found = None
        if key in _ADDRESS_HEADERS:
            found = addresses(f"headers[{name!r}]", value)
        elif key in ("date", "resent-date", "orig-date"):
            # Written as given: printable ASCII only, nothing a reader would decode.
            try:
                if not value.isascii() or not value.isprintable() or "=?" in value:
                    raise ValueError(value)
                parsedate_to_datetime(value)
            except (TypeError, ValueError):
                raise InvalidMessageError(
                    f"headers: Date {value!r} is not a date such as "
                    "'Mon, 01 Jan 2024 09:00:00 +0000' (email.utils.format_datetime)."
                ) from None
        elif key == "message-id" and (not _MESSAGE_ID.fullmatch(value.strip()) or "=?" in value):
            raise InvalidMessageError(
                f"headers: Message-ID {value!r} must look like '<unique@domain>' "
                "(email.utils.make_msgid())."
            )
        result.append((name, value, found))
    return result


def size_check(size: int, limit: int = MAX_MESSAGE_SIZE) -> None:
    if size > limit:
        raise InvalidMessageError(
            f"The message is {size:,} bytes once encoded; the server accepts at most "
            f"{limit:,} (Gmail: 25 MB of attachments). Send a link instead of the file."
        )


# -- the two ways in ------------------------------------------------------------------


def build_message(
    *,
    mail_from: str,
    to: Addresses,
    subject: str,
    text: str | None = None,
    html: str | None = None,
    cc: Addresses = None,
    bcc: Addresses = None,
    reply_to: Addresses = None,
    sender: str | None = None,
    headers: Mapping[str, str] | None = None,
    attachments: Attachments = None,
    inline: Mapping[str, InlineLike] | None = None,
) -> Envelope:
    """Validate the arguments of ``send()`` and render the message.

    Args:
        mail_from: The authenticated account (MAIL FROM, and ``From`` by default).
        sender: A different ``From`` header ("Name <addr>"), if any.

    Raises:
        InvalidMessageError: naming the argument and value that is wrong.
    """
    if not isinstance(subject, str):
        raise InvalidMessageError(f"subject must be a string, got {type(subject).__name__}.")
    check_no_breaks("subject", subject)
    for name, body in (("text", text), ("html", html)):
        if body is not None and not isinstance(body, str):
            raise InvalidMessageError(f"{name} must be a string, got {type(body).__name__}.")
        if body is not None:
            check_unicode(name, body)
    if inline and html is None:
        raise InvalidMessageError(
            'inline images need an html body that refers to them as <img src="cid:NAME">.'
        )
    senders = addresses("sender", sender)
    if len(senders) > 1:
        raise InvalidMessageError(f"sender: give one address, not {len(senders)}.")
    from_addr = senders[0] if senders else parse_address(mail_from)
    rcpt = {"to": addresses("to", to), "cc": addresses("cc", cc), "bcc": addresses("bcc", bcc)}
    replies = addresses("reply_to", reply_to)
    recipients = list(dict.fromkeys(a.addr_spec for group in rcpt.values() for a in group))
    if not recipients:
        raise InvalidMessageError("No recipient: give at least one address in to, cc or bcc.")
    everyone = [from_addr, *replies, *(a for group in rcpt.values() for a in group)]
    account = parse_address(mail_from)
    extra = _extra_headers(headers)
    everyone += [a for _, _, found in extra for a in found or ()]
    utf8 = any(a.needs_smtputf8 for a in (account, *everyone))
    # headers= may fix the Message-ID (to keep one across retries) or the Date.
    chosen = {n.lower(): v.strip() for n, v, _ in extra if n.lower() in ("message-id", "date")}
    extra = [(n, v, a) for n, v, a in extra if n.lower() not in chosen]
    message_id = chosen.get("message-id") or make_msgid(domain=from_addr.domain)
    date = chosen.get("date") or format_datetime(datetime.now(timezone.utc))

    # (argument, header): what the line scan of the header block names when it fails.
    names = [("sender", "From")]
    head = [_addresses("From", [from_addr], utf8)]
    for label, key in (("To", "to"), ("Cc", "cc"), ("Reply-To", "reply_to")):
        group = replies if key == "reply_to" else rcpt[key]
        if group:
            names.append((key, label))
            head.append(_addresses(label, group, utf8))
    names += [("subject", "Subject"), ("headers", "Date"), ("headers", "Message-ID")]
    head += [header("Subject", subject, utf8), f"Date: {date}\r\n", f"Message-ID: {message_id}\r\n"]
    for name, value, found in extra:
        names.append((f"headers[{name!r}]", name))
        head.append(
            _addresses(name, found, utf8) if found is not None else header(name, value, utf8)
        )
    names.append(("headers", "MIME-Version"))
    head.append("MIME-Version: 1.0\r\n")
    block = "".join(head).encode("utf-8")
    check_header_block(block, names)
    data = block + _body(text, html, attachments, inline)
    size_check(len(data))
    return Envelope(account.addr_spec, _shared(tuple(recipients)), data, message_id, utf8)


def _addresses(name: str, found: Sequence[Address], utf8: bool) -> str:
    return address_header(name, ((a.display_name, a.addr_spec) for a in found), utf8)


def _body(
    text: str | None,
    html: str | None,
    attachments: Attachments,
    inline: Mapping[str, InlineLike] | None,
) -> bytes:
    parts: list[bytes] = []
    if text is None and html is not None:
        # An HTML-only mail still gets a text alternative: mail programs that show no
        # HTML and spam filters expect one.
        text = html_to_text(html)
    if text is not None or html is None:
        parts.append(text_part(text or "", "plain"))
    if html is not None:
        html_part = text_part(html, "html")
        if inline:
            html_part = multipart(
                "related",
                [html_part, *(inline_part(cid, item) for cid, item in inline.items())],
            )
        parts.append(html_part)
    main = parts[0] if len(parts) == 1 else multipart("alternative", parts)
    files = [attachment_part(item) for item in _attachment_items(attachments)]
    return multipart("mixed", [main, *files]) if files else main


def _attachment_items(attachments: Attachments) -> list[object]:
    """The attachments as a list: one path (``"report.pdf"``, a ``Path``) or one
    ``(filename, bytes[, mimetype])`` tuple is one attachment, not a sequence to
    iterate (a string would be read letter by letter: "cannot read 'r'")."""
    if attachments is None:
        return []
    if isinstance(attachments, (str, os.PathLike)) or _one_file(attachments):
        return [attachments]
    if isinstance(attachments, (bytes, bytearray, memoryview)):
        raise InvalidMessageError(
            "attachments: bytes need a file name: give ('name.pdf', data) instead."
        )
    try:
        return list(attachments)
    except TypeError:
        raise InvalidMessageError(
            "attachments: expected a path, a (filename, bytes[, mimetype]) tuple or a list "
            f"of them, got {type(attachments).__name__}."
        ) from None


def _one_file(value: object) -> bool:
    """``("report.csv", b"...")``: a tuple with bytes second is one file, not two."""
    return (
        isinstance(value, tuple)
        and len(value) in (2, 3)
        and isinstance(value[0], str)
        and isinstance(value[1], (bytes, bytearray, memoryview))
    )
