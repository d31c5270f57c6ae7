"""Build and validate one message, before anything touches the network.

Everything a user can get wrong about a message (an address, a header, an attachment,
the size) is caught here and raised as ``InvalidMessageError`` naming the bad value.
The result is an ``Envelope``: the wire bytes plus MAIL FROM / RCPT TO, which is what
the transport sends and what the outbox will store. Addresses are parsed by
``_address``; the MIME parts are written by hand in ``_mime`` (why: see there).

A ready ``email.message.Message`` (``send_message()``) is written by the stdlib's
generator, but with a policy whose folding is postbud's (``_CheckedFold``): the stdlib's
folder of Python 3.10–3.12 writes decoded encoded words as raw CR LF, and compat32 splits
a header at U+001C. This module is longer than ~350 lines for that half; it would be
its own module (it needs a place in tools/check_layers.py's LAYERS).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import io
import os
import re
import types
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from email import policy as email_policy
from email.errors import NonASCIILocalPartDefect
from email.generator import BytesGenerator
from email.headerregistry import Address as StdAddress
from email.headerregistry import AddressHeader, ParameterizedMIMEHeader, UnstructuredHeader
from email.message import Message
from email.policy import Policy
from email.utils import format_datetime, make_msgid, parsedate_to_datetime
from typing import Union

from postbud._address import (
    Address,
    Addresses,
    addresses,
    check_no_breaks,
    check_unicode,
    checked,
    control_character,
    parse_address,
    parse_addresses,
)
from postbud._mime import (
    address_header,
    attachment_part,
    check_field,
    check_header_block,
    header,
    inline_part,
    multipart,
    parameter_header,
    text_part,
)
from postbud.errors import InvalidMessageError

__all__ = [
    "MAX_MESSAGE_SIZE",
    "MAX_RECIPIENTS",
    "Addresses",
    "AttachmentLike",
    "Envelope",
    "InlineLike",
    "build_message",
    "envelope_from_message",
    "size_check",
]

#: Gmail's advertised SIZE: 25 MB of attachments once base64-encoded.
MAX_MESSAGE_SIZE = 35_882_577
#: Gmail takes at most 100 recipients per SMTP transaction.
MAX_RECIPIENTS = 100

AttachmentLike = Union[str, "os.PathLike[str]", tuple[str, bytes], tuple[str, bytes, str]]
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
_INJECTED = re.compile(r"\r?\n(?![ \t])|\r(?!\n)|\0")
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
    attachments: Iterable[AttachmentLike] | None,
    inline: Mapping[str, InlineLike] | None,
) -> bytes:
    parts: list[bytes] = []
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
    files = [attachment_part(item) for item in (attachments or ())]
    return multipart("mixed", [main, *files]) if files else main


def envelope_from_message(
    message: Message, *, mail_from: str, recipients: Addresses = None
) -> Envelope:
    """Turn a ready ``email.message.Message`` (any policy) into an Envelope.

    Recipients come from To, Cc and Bcc, unless ``recipients`` names the envelope's
    own (Django's ``message.recipients()``); Bcc is removed from the data; a missing
    ``From``, ``Date`` or ``Message-ID`` is added. The caller's object is not changed.

    Every header of every part is written through ``_CheckedFold``: unstructured text and
    address lists of the modern API as ``build_message`` writes them, the rest by the
    message's policy, and each result passes the line scan before it is written.

    Raises:
        InvalidMessageError: for any message that cannot be written as it is (what
            the ``email`` package raises on a malformed message is translated).
    """
    if not isinstance(message, Message):
        raise InvalidMessageError(
            f"send_message() takes an email.message.Message, got {type(message).__name__}."
        )
    try:
        return _envelope(message, mail_from, recipients)
    except InvalidMessageError:
        raise
    except UnicodeError as exc:
        raise InvalidMessageError(
            f"send_message(): the message holds text it cannot write ({exc}); a str payload "
            "that is not ASCII needs a charset: MIMEText(text, 'plain', 'utf-8'), or "
            "EmailMessage.set_content(text)."
        ) from exc
    except Exception as exc:  # the email package raises many kinds on malformed messages
        raise InvalidMessageError(
            f"send_message(): the message cannot be written ({type(exc).__name__}: {exc}); "
            "build it with email.message.EmailMessage, or send it with send()."
        ) from exc


def _envelope(message: Message, mail_from: str, recipients: Addresses) -> Envelope:
    for name, value in message.items():
        # A line break is only legal as folding (followed by a space or tab).
        if _INJECTED.search(str(value)):
            raise InvalidMessageError(
                f"header {name} contains a line break that is not folding: it could inject headers."
            )
    if recipients is not None:
        chosen = list(dict.fromkeys(a.addr_spec for a in addresses("recipients", recipients)))
    else:
        chosen = list(
            dict.fromkeys(
                a.addr_spec
                for field in ("To", "Cc", "Bcc")
                for value in message.get_all(field, [])
                for a in _addresses_of(field.lower(), value)
            )
        )
    if not chosen:
        raise InvalidMessageError("The message has no To, Cc or Bcc recipient.")
    account = parse_address(mail_from)
    msg = copy.copy(message)
    # __delitem__ rebinds the copy's header list, so the caller's message keeps its Bcc
    # and the headers added below stay on the copy.
    del msg["Bcc"]
    from_values = msg.get_all("From", [])
    from_addr = account
    if from_values:
        from_addr = (_addresses_of("From", from_values[0]) or [account])[0]
    else:
        msg["From"] = str(account)
    if msg["Date"] is None:
        msg["Date"] = format_datetime(datetime.now(timezone.utc))
    if msg["Message-ID"] is None:
        msg["Message-ID"] = make_msgid(domain=from_addr.domain)
    utf8 = any(not r.isascii() for r in chosen) or from_addr.needs_smtputf8
    policy = message.policy.clone(linesep="\r\n")
    if utf8 and not isinstance(policy, email_policy.EmailPolicy):
        needs = [r for r in chosen if not r.isascii()] or [from_addr.addr_spec]
        raise InvalidMessageError(
            f"send_message(): the address {needs[0]!r} needs SMTPUTF8, which compat32 "
            "messages cannot carry; build the message with email.message.EmailMessage "
            "(policy=email.policy.SMTP)."
        )
    if isinstance(policy, email_policy.EmailPolicy):
        # Raw UTF-8 headers only with SMTPUTF8, whatever the message's policy says.
        policy = policy.clone(utf8=utf8)
    buffer = io.BytesIO()
    generator = BytesGenerator(buffer, mangle_from_=False, policy=_checked(policy))
    generator.flatten(msg, linesep="\r\n")
    data = buffer.getvalue()
    check_header_block(data[: data.find(b"\r\n\r\n") + 2], [(f"header {n}", n) for n in msg])
    size_check(len(data))
    message_id = str(msg["Message-ID"]).strip()
    return Envelope(
        account.addr_spec, tuple(chosen), data, message_id, utf8, eightbit=not data.isascii()
    )


def _addresses_of(field: str, value: object) -> list[Address]:
    """The addresses of a header; those the modern API parsed already are taken as
    parsed: str(value) does not quote a display name that looks like an encoded word,
    so parsing it again would change the name."""
    if isinstance(value, AddressHeader) and all(isinstance(a, StdAddress) for a in value.addresses):
        return [checked(field, a) for a in value.addresses]
    return addresses(field, str(value))  # compat32 text, or strings set as a list


# -- writing a ready message ------------------------------------------------------------

# Not for a header the policy writes: ASCII control characters but TAB (CR and LF are
# checked as folding), and what str.splitlines() breaks at: compat32's folder splits a
# value there, and what follows becomes a header of its own, or the body.
_UNSAFE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\x85\u2028\u2029]")
_FIELD_NAME = re.compile(r"[!-9;-~]+")
_COMPAT32_ADDRESSES = frozenset(
    {
        "from",
        "to",
        "cc",
        "reply-to",
        "sender",
        "resent-from",
        "resent-sender",
        "resent-to",
        "resent-cc",
    }
)
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 2045 token


class _CheckedFold(Policy):
    """Mixed into the message's own policy class (``_checked``) for one flatten: writes
    unstructured text and address lists of the modern API as ``build_message`` does,
    leaves the rest to the policy, and scans every header before it is written."""

    def fold_binary(self, name: str, value: str) -> bytes:
        field = f"header {name}"
        if not isinstance(name, str) or not _FIELD_NAME.fullmatch(name):
            raise InvalidMessageError(
                f"{name!r} is not a valid header name (printable ASCII without spaces or ':')."
            )
        text = str(value)
        if _INJECTED.search(text):
            raise InvalidMessageError(
                f"{field} contains a line break that is not folding: it could inject headers."
            )
        defects = [
            d for d in getattr(value, "defects", ()) if not isinstance(d, NonASCIILocalPartDefect)
        ]
        if defects:  # a parsed header of the modern API that the stdlib found malformed
            raise InvalidMessageError(f"{field} is malformed ({defects[0]}): {text!r}.")
        rendered = _rendered(self, name, value)
        if rendered is not None:
            data = rendered.encode("utf-8")
        else:
            bad = _UNSAFE.search(text)
            if bad:
                raise InvalidMessageError(
                    f"{field} holds the control character {bad.group()!r}, which would "
                    "break the header apart or change it: remove it."
                )
            data = super().fold_binary(name, value)
        check_field(field, name, data)
        return data


def _rendered(policy: Policy, name: str, value: object) -> str | None:
    """postbud's rendering of a header, or None for the policy's own.

    postbud writes unstructured text, address lists and MIME parameters of the modern
    API, and non-ASCII address lists of compat32; the rest is the policy's.
    """
    if not isinstance(policy, email_policy.EmailPolicy):
        # compat32 writes an ASCII value as the header's text, and encodes any other
        # value whole: an address list then loses its addresses. postbud writes those,
        # and the MIME parameters (compat32 writes a parameter without a value).
        if not isinstance(value, str):
            return None
        if name.lower() in ("content-type", "content-disposition"):
            parsed = email_policy.default.header_factory(name, value)
            if parsed.defects or not isinstance(parsed, ParameterizedMIMEHeader):
                reason = parsed.defects[0] if parsed.defects else "not a MIME header"
                raise InvalidMessageError(f"header {name} is malformed ({reason}): {value!r}.")
            return _parameters(name, parsed)
        if name.lower() not in _COMPAT32_ADDRESSES or value.isascii():
            return None
        found: Sequence[Address]
        try:
            found = parse_addresses(value)
        except InvalidMessageError as exc:
            raise InvalidMessageError(f"header {name}: {exc.description}") from None
        utf8 = False
    elif isinstance(value, UnstructuredHeader):
        return header(name, str(value), policy.utf8)
    elif isinstance(value, ParameterizedMIMEHeader):
        return _parameters(name, value)
    elif not isinstance(value, AddressHeader):
        return None
    else:
        if any(group.display_name is not None for group in value.groups):
            return None  # a group ("undisclosed-recipients:;"): the policy writes it
        found = _addresses_of(f"header {name}", value)
        if not found:
            return None
        utf8 = policy.utf8
    for a in found:
        if a.needs_smtputf8 and not utf8:
            raise InvalidMessageError(
                f"header {name}: {a.addr_spec!r} needs SMTPUTF8, which this message does "
                "not use (only its recipients and From decide): use an ASCII address."
            )
    return _addresses(name, found, utf8)


def _parameters(name: str, value: ParameterizedMIMEHeader) -> str | None:
    # Content-Type and Content-Disposition: a file name is written by postbud's rules
    # (the old folders decode encoded words there too, or write "filename" with no value).
    main = str(value).partition(";")[0].strip().lower()
    params = dict(value.params)
    if not all(_TOKEN.fullmatch(key) for key in [main.replace("/", "", 1), *params]):
        return None
    for key, text in params.items():
        bad = control_character(text)
        if bad:
            raise InvalidMessageError(
                f"header {name}: the {key} {text!r} holds the control character {bad!r}: remove it."
            )
    return parameter_header(name, main, params.items())


@functools.lru_cache(maxsize=16)
def _checked_class(cls: type[Policy]) -> type[Policy]:
    return types.new_class(f"Checked{cls.__name__}", (_CheckedFold, cls))


def _checked(policy: Policy) -> Policy:
    """``policy`` with ``_CheckedFold``'s folding (the way ``Policy.clone`` copies)."""
    cls = _checked_class(type(policy))
    checked = cls.__new__(cls)
    for attr, value in vars(policy).items():
        object.__setattr__(checked, attr, value)
    return checked
