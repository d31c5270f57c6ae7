"""Build and validate one message, before anything touches the network.

Everything a user can get wrong about a message (an address, a header, an attachment,
the size) is caught here and raised as ``InvalidMessageError`` naming the bad value.
The result is an ``Envelope``: the wire bytes plus MAIL FROM / RCPT TO, which is what
the transport sends and what the outbox will store.

Why the bytes are written here rather than by ``EmailMessage.as_bytes()``: the modern
``email`` API parses every header into a tree when it is set and refolds the tree when
it is written, about 0.3 ms per small message, which is more than the whole SMTP round
trip on a reused connection. The common case (ASCII headers that fit on a line, text
and HTML bodies) is plain string work; everything hard (RFC 2047 encoded words, RFC
2231 file names, folding long headers, SMTPUTF8) is still done by the stdlib's header
classes, and the tests parse every message back with the stdlib and require zero defects.
"""

from __future__ import annotations

import base64
import binascii
import copy
import dataclasses
import functools
import io
import mimetypes
import os
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from email import policy as email_policy
from email.errors import NonASCIILocalPartDefect
from email.generator import BytesGenerator
from email.headerregistry import Address as _StdAddress
from email.message import Message
from email.utils import format_datetime, make_msgid, parsedate_to_datetime
from typing import Union

from .errors import InvalidMessageError

__all__ = [
    "MAX_MESSAGE_SIZE",
    "MAX_RECIPIENTS",
    "Address",
    "AttachmentLike",
    "Envelope",
    "InlineLike",
    "build_message",
    "envelope_from_message",
    "parse_address",
    "parse_addresses",
]

#: Gmail's advertised SIZE: 25 MB of attachments once base64-encoded.
MAX_MESSAGE_SIZE = 35_882_577
#: Gmail takes at most 100 recipients per SMTP transaction.
MAX_RECIPIENTS = 100

AttachmentLike = Union[str, "os.PathLike[str]", tuple[str, bytes], tuple[str, bytes, str]]
InlineLike = Union[str, "os.PathLike[str]", bytes, tuple[bytes, str]]
Addresses = Union[str, Iterable[str], None]  # noqa: UP007

_MESSAGE_ID = re.compile(r"<[^<>\s@]+@[^<>\s@]+>", re.ASCII)
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
_INJECTED = re.compile(r"\r?\n(?![ \t])|\r(?!\n)|\0")
_POLICY = email_policy.SMTP
_POLICY_UTF8 = email_policy.SMTPUTF8
_MAX_LINE = 998
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


@dataclass(frozen=True)
class Address:
    """One validated mailbox. ``domain`` is always ASCII (IDNA-encoded)."""

    display_name: str
    local: str
    domain: str

    @property
    def addr_spec(self) -> str:
        """``local@domain``, as it goes into MAIL FROM / RCPT TO."""
        return _StdAddress(username=self.local, domain=self.domain).addr_spec

    @property
    def needs_smtputf8(self) -> bool:
        """True when the local part is not ASCII (the domain never needs it)."""
        return not self.local.isascii()

    def __str__(self) -> str:
        return str(_StdAddress(self.display_name, self.local, self.domain))


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


# -- addresses -----------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _shared(recipients: tuple[str, ...]) -> tuple[str, ...]:
    """One tuple per recipient list: a queue of messages to the same address then holds
    no tuple of its own per message (fewer objects for the garbage collector to scan
    in the caller's thread while a slow server lets the queue grow)."""
    return recipients


@functools.lru_cache(maxsize=4096)
def parse_addresses(text: str) -> tuple[Address, ...]:
    """Parse a comma-separated list of addresses; raise naming the first bad one.

    Cached: an alerting process writes to the same few addresses all day.
    """
    _check_no_breaks("address", text)
    try:
        header = email_policy.default.header_factory("To", text)
        groups = header.groups
    except Exception:  # the stdlib parser raises IndexError etc. on some garbage
        raise InvalidMessageError(f"{text!r} is not a valid email address.") from None
    result = []
    for group in groups:
        if group.display_name is not None:
            raise InvalidMessageError(
                f"{text!r} is a group ({group.display_name}:...;): list the addresses instead."
            )
        for std in group.addresses:
            result.append(_checked(std, text))
    if not result:
        raise InvalidMessageError(f"{text!r} holds no email address.")
    # A non-ASCII local part is legal (it needs SMTPUTF8, checked at send time).
    defects = [d for d in header.defects if not isinstance(d, NonASCIILocalPartDefect)]
    if defects:
        raise InvalidMessageError(f"{text!r} is not a valid email address ({defects[0]}).")
    return tuple(result)


def parse_address(text: str) -> Address:
    """Parse exactly one address (``"me@x.com"`` or ``"Me <me@x.com>"``)."""
    found = parse_addresses(text)
    if len(found) != 1:
        raise InvalidMessageError(f"{text!r} holds {len(found)} addresses where one is expected.")
    return found[0]


def _checked(std: _StdAddress, source: str) -> Address:
    local, domain = std.username, std.domain
    shown = std.addr_spec if local or domain else source
    if not local or not domain:
        fix = ""
        if "," in source and "@" in source:
            fix = " If a display name has a comma, quote it: '\"Doe, Jane\" <jane@example.com>'."
        raise InvalidMessageError(
            f"{shown!r} is not a valid email address (missing "
            f"{'domain' if local else 'local part'}).{fix}"
        )
    if domain.startswith("["):
        raise InvalidMessageError(
            f"{shown!r}: address literals like [1.2.3.4] are not "
            "accepted by Gmail; use a domain name."
        )
    try:
        ascii_domain = domain.encode("idna").decode("ascii") if not domain.isascii() else domain
    except UnicodeError:
        raise InvalidMessageError(
            f"{shown!r}: the domain {domain!r} is not a valid internationalised domain name."
        ) from None
    labels = ascii_domain.split(".")
    if len(labels) < 2 or any(
        not lab
        or len(lab) > 63
        or lab[0] == "-"
        or lab[-1] == "-"
        or not lab.replace("-", "").isalnum()
        or not lab.isascii()
        for lab in labels
    ):
        raise InvalidMessageError(
            f"{shown!r}: {domain!r} is not a valid domain name "
            "(it needs a dot, and letters, digits or hyphens)."
        )
    if len(local.encode()) > 64 or len(local.encode()) + len(ascii_domain) > 253:
        raise InvalidMessageError(f"{shown!r} is too long for an email address.")
    return Address(std.display_name, local, ascii_domain)


def _addresses(field: str, value: Addresses) -> list[Address]:
    if value is None:
        return []
    items = [value] if isinstance(value, str) else list(value)
    result: list[Address] = []
    for item in items:
        if not isinstance(item, str):
            raise InvalidMessageError(
                f"{field}: expected an address string, got {type(item).__name__} {item!r}."
            )
        if item.strip():
            try:
                result.extend(parse_addresses(item.strip()))
            except InvalidMessageError as exc:
                raise InvalidMessageError(f"{field}: {exc.description}") from None
    return result


def _check_no_breaks(field: str, value: str) -> None:
    if "\r" in value or "\n" in value or "\0" in value:
        raise InvalidMessageError(
            f"{field} contains a line break (CR/LF) or NUL: {value[:60]!r}. Header values "
            "must be one line; a line break could inject headers."
        )
    _check_unicode(field, value)


def _check_unicode(field: str, value: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidMessageError(
            f"{field} holds characters that are not valid Unicode (lone surrogates, often "
            "bytes decoded with errors='surrogateescape'); decode the text properly first."
        ) from None


# -- headers and bodies --------------------------------------------------------------


def _header(name: str, value: str, utf8: bool) -> str:
    if value.isascii() and len(name) + len(value) < 77:
        return f"{name}: {value}\r\n"
    policy = _POLICY_UTF8 if utf8 else _POLICY
    # header_factory(...).fold() encodes (RFC 2047/2231) and folds; policy.fold()
    # alone would pass short non-ASCII values through raw.
    folded = str(policy.header_factory(name, value).fold(policy=policy))
    # The stdlib starts a value that fits one line on the next ("Subject:\r\n Hello"),
    # which parsers then read with a leading space: keep its first part on the name's line.
    empty_first = f"{name}:\r\n "
    if folded.startswith(empty_first):
        folded = f"{name}: " + folded[len(empty_first) :]
    return folded


def _text_part(content: str, subtype: str) -> bytes:
    text = content.replace("\r\n", "\n").replace("\r", "\n")
    if text and not text.endswith("\n"):
        text += "\n"
    if text.isascii() and max(map(len, text.split("\n"))) <= _MAX_LINE:
        cte, body = "7bit", text.encode("ascii")
    else:
        cte, body = "quoted-printable", binascii.b2a_qp(text.encode("utf-8"), istext=True)
    return (
        f'Content-Type: text/{subtype}; charset="utf-8"\r\nContent-Transfer-Encoding: {cte}\r\n\r\n'
    ).encode("ascii") + body.replace(b"\n", b"\r\n")


def _binary_part(
    data: bytes,
    mimetype: str,
    disposition: str,
    filename: str | None,
    content_id: str | None,
    utf8: bool,
) -> bytes:
    head = _header("Content-Type", mimetype, utf8)
    if filename is not None:
        quoted = filename.replace("\\", "\\\\").replace('"', '\\"')
        head += _header("Content-Disposition", f'{disposition}; filename="{quoted}"', utf8)
    else:
        head += f"Content-Disposition: {disposition}\r\n"
    if content_id is not None:
        head += f"Content-ID: <{content_id}>\r\n"
    body = base64.encodebytes(data).replace(b"\n", b"\r\n")
    return (head + "Content-Transfer-Encoding: base64\r\n\r\n").encode("utf-8") + body


def _multipart(subtype: str, parts: Sequence[bytes]) -> bytes:
    # "=_" cannot occur in quoted-printable or base64 output; the random part makes a
    # collision with 7bit text practically impossible.
    boundary = "=_" + secrets.token_hex(12)
    out = [f'Content-Type: multipart/{subtype}; boundary="{boundary}"\r\n\r\n'.encode()]
    for part in parts:
        # The CRLF before a delimiter belongs to the delimiter: each part keeps its own.
        out += [f"--{boundary}\r\n".encode(), part, b"\r\n"]
    out.append(f"--{boundary}--\r\n".encode())
    return b"".join(out)


def _guess_type(filename: str, data: bytes | None = None) -> str:
    guessed = mimetypes.guess_type(filename, strict=False)[0]
    if guessed is None and data is not None:
        guessed = _sniff_image(data)
    return guessed or "application/octet-stream"


def _sniff_image(data: bytes) -> str | None:
    for magic, kind in (
        (b"\x89PNG\r\n\x1a\n", "image/png"),
        (b"\xff\xd8\xff", "image/jpeg"),
        (b"GIF87a", "image/gif"),
        (b"GIF89a", "image/gif"),
    ):
        if data.startswith(magic):
            return kind
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if b"<svg" in data[:512]:
        return "image/svg+xml"
    return None


def _check_mimetype(field: str, mimetype: str) -> str:
    maintype, _, subtype = mimetype.partition("/")
    token_ok = all(c.isalnum() or c in "!#$&^_.+-" for c in maintype + subtype)
    if not maintype or not subtype or not token_ok or not mimetype.isascii():
        raise InvalidMessageError(
            f"{field}: {mimetype!r} is not a MIME type such as 'application/pdf' or 'image/png'."
        )
    return mimetype.lower()


def _read(field: str, path: str | os.PathLike[str]) -> tuple[str, bytes]:
    # A file name from a non-UTF-8 file system may hold surrogates: show what can be shown.
    name = os.path.basename(os.fspath(path)).encode("utf-8", "surrogateescape")
    try:
        with open(path, "rb") as fh:
            return name.decode("utf-8", "replace"), fh.read()
    except OSError as exc:
        raise InvalidMessageError(
            f"{field}: cannot read {os.fspath(path)!r} ({exc.strerror or exc})."
        ) from None


def _attachment(item: object, utf8: bool) -> bytes:
    if isinstance(item, (str, os.PathLike)):
        filename, data = _read("attachments", item)
        mimetype = _guess_type(filename)
    elif (
        isinstance(item, tuple)
        and len(item) in (2, 3)
        and isinstance(item[0], str)
        and isinstance(item[1], (bytes, bytearray, memoryview))
    ):
        filename, data = item[0], bytes(item[1])
        if len(item) == 3:
            if not isinstance(item[2], str):
                raise InvalidMessageError(
                    f"attachments: the MIME type of {filename!r} must be "
                    f"a string such as 'application/pdf'."
                )
            mimetype = _check_mimetype("attachments", item[2])
        else:
            mimetype = _guess_type(filename)
    else:
        raise InvalidMessageError(
            "attachments: each item must be a path or a (filename, bytes[, mimetype]) "
            f"tuple, got {type(item).__name__}."
        )
    _check_no_breaks("attachments: file name", filename)
    if not filename.strip():
        raise InvalidMessageError("attachments: a file name is empty.")
    return _binary_part(data, mimetype, "attachment", filename, None, utf8)


def _inline(cid: object, item: object, utf8: bool) -> bytes:
    if (
        not isinstance(cid, str)
        or not cid
        or any(c in cid for c in "<> \t\r\n\0")
        or not cid.isascii()
    ):
        raise InvalidMessageError(
            f"inline: {cid!r} is not a usable Content-ID: use a short "
            "ASCII name without spaces or angle brackets, such as 'logo'."
        )
    mimetype: str | None = None
    if isinstance(item, (str, os.PathLike)):
        filename, data = _read(f"inline[{cid!r}]", item)
        mimetype = _guess_type(filename, data)
    elif isinstance(item, (bytes, bytearray, memoryview)):
        filename, data = cid, bytes(item)
        mimetype = _sniff_image(data) or "application/octet-stream"
    elif (
        isinstance(item, tuple)
        and len(item) == 2
        and isinstance(item[0], bytes)
        and isinstance(item[1], str)
    ):
        filename, data = cid, item[0]
        mimetype = _check_mimetype(f"inline[{cid!r}]", item[1])
    else:
        raise InvalidMessageError(
            f"inline[{cid!r}]: expected a path or bytes, got {type(item).__name__}."
        )
    return _binary_part(data, mimetype, "inline", filename, cid, utf8)


def _extra_headers(headers: Mapping[str, str] | None) -> list[tuple[str, str]]:
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
        if name.lower() in _OWNED_HEADERS:
            raise InvalidMessageError(
                f"headers: set {name!r} with its own argument of send(), not through headers=."
            )
        if not isinstance(given, str):
            raise InvalidMessageError(f"headers: the value of {name!r} must be a string.")
        _check_no_breaks(f"headers[{name!r}]", given)
        value = given
        key = name.lower()
        if key in _ADDRESS_HEADERS:
            value = ", ".join(map(str, _addresses(f"headers[{name!r}]", value)))
        elif key == "date":
            try:
                parsedate_to_datetime(value)
            except (TypeError, ValueError):
                raise InvalidMessageError(
                    f"headers: Date {value!r} is not a date such as "
                    "'Mon, 01 Jan 2024 09:00:00 +0000' (email.utils.format_datetime)."
                ) from None
        elif key == "message-id" and not _MESSAGE_ID.fullmatch(value.strip()):
            raise InvalidMessageError(
                f"headers: Message-ID {value!r} must look like '<unique@domain>' "
                "(email.utils.make_msgid())."
            )
        result.append((name, value))
    return result


def _size_check(size: int, limit: int = MAX_MESSAGE_SIZE) -> None:
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
    attachments: Iterable[AttachmentLike] | None = None,
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
    _check_no_breaks("subject", subject)
    for name, body in (("text", text), ("html", html)):
        if body is not None and not isinstance(body, str):
            raise InvalidMessageError(f"{name} must be a string, got {type(body).__name__}.")
        if body is not None:
            _check_unicode(name, body)
    if inline and html is None:
        raise InvalidMessageError(
            'inline images need an html body that refers to them as <img src="cid:NAME">.'
        )
    senders = _addresses("sender", sender)
    if len(senders) > 1:
        raise InvalidMessageError(f"sender: give one address, not {len(senders)}.")
    from_addr = senders[0] if senders else parse_address(mail_from)
    rcpt = {"to": _addresses("to", to), "cc": _addresses("cc", cc), "bcc": _addresses("bcc", bcc)}
    replies = _addresses("reply_to", reply_to)
    recipients = list(dict.fromkeys(a.addr_spec for group in rcpt.values() for a in group))
    if not recipients:
        raise InvalidMessageError("No recipient: give at least one address in to, cc or bcc.")
    everyone = [from_addr, *replies, *(a for group in rcpt.values() for a in group)]
    account = parse_address(mail_from)
    utf8 = any(a.needs_smtputf8 for a in (account, *everyone))
    extra = _extra_headers(headers)
    # headers= may fix the Message-ID (to keep one across retries) or the Date.
    chosen = {n.lower(): v.strip() for n, v in extra if n.lower() in ("message-id", "date")}
    extra = [(n, v) for n, v in extra if n.lower() not in chosen]
    message_id = chosen.get("message-id") or make_msgid(domain=from_addr.domain)
    date = chosen.get("date") or format_datetime(datetime.now(timezone.utc))

    head = [
        _header("From", str(from_addr), utf8),
        *(
            _header(label, ", ".join(map(str, rcpt[key])), utf8)
            for label, key in (("To", "to"), ("Cc", "cc"))
            if rcpt[key]
        ),
        *([_header("Reply-To", ", ".join(map(str, replies)), utf8)] if replies else []),
        _header("Subject", subject, utf8),
        _header("Date", date, utf8),
        f"Message-ID: {message_id}\r\n",
        *(_header(name, value, utf8) for name, value in extra),
        "MIME-Version: 1.0\r\n",
    ]
    data = "".join(head).encode("utf-8") + _body(text, html, attachments, inline, utf8)
    _size_check(len(data))
    return Envelope(account.addr_spec, _shared(tuple(recipients)), data, message_id, utf8)


def _body(
    text: str | None,
    html: str | None,
    attachments: Iterable[AttachmentLike] | None,
    inline: Mapping[str, InlineLike] | None,
    utf8: bool,
) -> bytes:
    parts: list[bytes] = []
    if text is not None or html is None:
        parts.append(_text_part(text or "", "plain"))
    if html is not None:
        html_part = _text_part(html, "html")
        if inline:
            html_part = _multipart(
                "related", [html_part, *(_inline(cid, item, utf8) for cid, item in inline.items())]
            )
        parts.append(html_part)
    main = parts[0] if len(parts) == 1 else _multipart("alternative", parts)
    files = [_attachment(item, utf8) for item in (attachments or ())]
    return _multipart("mixed", [main, *files]) if files else main


def envelope_from_message(message: Message, *, mail_from: str) -> Envelope:
    """Turn a ready ``email.message.Message`` (any policy) into an Envelope.

    Recipients come from To, Cc and Bcc; Bcc is removed from the data; a missing
    ``From``, ``Date`` or ``Message-ID`` is added. The caller's object is not changed.
    """
    if not isinstance(message, Message):
        raise InvalidMessageError(
            f"send_message() takes an email.message.Message, got {type(message).__name__}."
        )
    for name, value in message.items():
        # A line break is only legal as folding (followed by a space or tab).
        if _INJECTED.search(str(value)):
            raise InvalidMessageError(
                f"header {name} contains a line break that is not folding: it could inject headers."
            )
    recipients = list(
        dict.fromkeys(
            a.addr_spec
            for field in ("To", "Cc", "Bcc")
            for value in message.get_all(field, [])
            for a in _addresses(field.lower(), str(value))
        )
    )
    if not recipients:
        raise InvalidMessageError("The message has no To, Cc or Bcc recipient.")
    account = parse_address(mail_from)
    msg = copy.copy(message)
    # __delitem__ rebinds the copy's header list, so the caller's message keeps its Bcc
    # and the headers added below stay on the copy.
    del msg["Bcc"]
    from_values = msg.get_all("From", [])
    from_addr = _addresses("From", str(from_values[0]))[0] if from_values else account
    if not from_values:
        msg["From"] = str(account)
    if msg["Date"] is None:
        msg["Date"] = format_datetime(datetime.now(timezone.utc))
    if msg["Message-ID"] is None:
        msg["Message-ID"] = make_msgid(domain=from_addr.domain)
    utf8 = any(not r.isascii() for r in recipients) or from_addr.needs_smtputf8
    policy = message.policy.clone(linesep="\r\n")
    if utf8:
        if not isinstance(policy, email_policy.EmailPolicy):
            raise InvalidMessageError(
                "An address needs SMTPUTF8; build the message with "
                "email.message.EmailMessage (policy=email.policy.SMTP)."
            )
        policy = policy.clone(utf8=True)
    buffer = io.BytesIO()
    BytesGenerator(buffer, mangle_from_=False, policy=policy).flatten(msg, linesep="\r\n")
    data = buffer.getvalue()
    _size_check(len(data))
    message_id = str(msg["Message-ID"]).strip()
    return Envelope(
        account.addr_spec, tuple(recipients), data, message_id, utf8, eightbit=not data.isascii()
    )
