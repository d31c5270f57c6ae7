"""Write a ready ``email.message.Message`` (``send_message()``) into an Envelope.

The message is written by the stdlib's generator, but with a policy whose folding is
postbud's (``_CheckedFold``): the stdlib's folder of Python 3.10–3.12 writes decoded
encoded words as raw CR LF, writes an encoded group name against its colon, and can
encode the commas between addresses; compat32 splits a header at U+001C. So
unstructured text, address lists (groups too) and MIME parameters are written by
``_mime``'s rules, as ``build_message`` writes them, and every header passes the line
scan before it is written. What the ``email`` package raises on a malformed message is
translated into ``InvalidMessageError``.
"""

from __future__ import annotations

import copy
import functools
import io
import re
import types
from collections.abc import Sequence
from datetime import datetime, timezone
from email import policy as email_policy
from email.errors import NonASCIILocalPartDefect
from email.generator import BytesGenerator
from email.headerregistry import Address as StdAddress
from email.headerregistry import (
    AddressHeader,
    BaseHeader,
    ParameterizedMIMEHeader,
    UnstructuredHeader,
)
from email.message import Message
from email.policy import Policy
from email.utils import format_datetime, make_msgid

from postbud._address import (
    Address,
    Addresses,
    addresses,
    checked,
    control_character,
    parse_address,
)
from postbud._message import Envelope, size_check
from postbud._mime import (
    address_header,
    check_field,
    check_header_block,
    header,
    parameter_header,
)
from postbud.errors import InvalidMessageError

__all__ = ["envelope_from_message"]

_FOLDING = re.compile(r"\r?\n(?=[ \t])")  # unfolding: the line break goes, the blank stays
_INJECTED = re.compile(r"\r?\n(?![ \t])|\r(?!\n)|\0")


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
    if message.get_all("Resent-Bcc"):
        raise InvalidMessageError(
            "header Resent-Bcc would show hidden recipients to everyone: leave it out, "
            "and pass them in recipients=."
        )
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
    """The addresses of a header, those of its groups included; those the modern API
    parsed already are taken as parsed: str(value) does not quote a display name that
    looks like an encoded word, so parsing it again would change the name."""
    if isinstance(value, AddressHeader) and all(isinstance(a, StdAddress) for a in value.addresses):
        return [checked(field, a) for a in value.addresses]
    text = _text_of(field, str(value))  # compat32 text, or strings set as a list
    if ":" in text and ";" in text:  # perhaps a group ("undisclosed-recipients:;")
        parsed = email_policy.default.header_factory("To", text)
        if (
            isinstance(parsed, AddressHeader)
            and not getattr(parsed, "defects", ())
            and any(g.display_name is not None for g in parsed.groups)
        ):
            return [checked(field, a) for a in parsed.addresses]
    return addresses(field, text)


def _text_of(field: str, value: str) -> str:
    """A header's text as the parser left it: unfolded, and its 8-bit bytes (which the
    parser keeps as surrogates) read as UTF-8 (RFC 6532)."""
    text = _FOLDING.sub("", value)
    if text.isascii() or not any("\udc80" <= c <= "\udcff" for c in text):
        return text
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8")
    except UnicodeError:
        raise InvalidMessageError(
            f"{field} holds 8-bit bytes that are not UTF-8: {text!r}; write the value as "
            "text, or as encoded words."
        ) from None


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
        if not isinstance(value, BaseHeader) and isinstance(self, email_policy.EmailPolicy):
            # A parsed message keeps each header's source text: read it as the stdlib
            # does before it refolds one (and its folder would write decoded encoded
            # words raw), then write it by postbud's rules like any other.
            value = self.header_factory(name, _text_of(field, value))
            text = str(value)
            if _INJECTED.search(text):
                raise InvalidMessageError(
                    f"{field} decodes to a line break: it could inject headers."
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
        if value.isascii():
            return None
        text = _text_of(f"header {name}", value)
        if name.lower() not in _COMPAT32_ADDRESSES:
            return header(name, text, False)  # compat32 writes 8-bit bytes raw
        parsed = email_policy.default.header_factory(name, text)
        problems = [d for d in parsed.defects if not isinstance(d, NonASCIILocalPartDefect)]
        if problems or not isinstance(parsed, AddressHeader):
            reason = problems[0] if problems else "not an address list"
            raise InvalidMessageError(f"header {name} is malformed ({reason}): {text!r}.")
        return _groups(name, parsed, False)
    if isinstance(value, UnstructuredHeader):
        return header(name, str(value), policy.utf8)
    if isinstance(value, ParameterizedMIMEHeader):
        return _parameters(name, value)
    if not isinstance(value, AddressHeader) or not value.groups:
        return None
    if all(isinstance(a, StdAddress) for a in value.addresses):
        return _groups(name, value, policy.utf8)
    # strings set as a list (msg["To"] = ["a@x", ...]): read from the text
    found = addresses(f"header {name}", str(value))
    utf8 = policy.utf8
    _need_no_smtputf8(name, found, utf8)
    return address_header(name, ((a.display_name, a.addr_spec) for a in found), utf8)


def _need_no_smtputf8(name: str, found: Sequence[Address], utf8: bool) -> None:
    for a in found:
        if a.needs_smtputf8 and not utf8:
            raise InvalidMessageError(
                f"header {name}: {a.addr_spec!r} needs SMTPUTF8, which this message does "
                "not use (only its recipients and From decide): use an ASCII address."
            )


def _groups(name: str, value: AddressHeader, utf8: bool) -> str:
    """An address header of the modern API, groups included ("Team Zoë: a@x, b@y;"):
    the stdlib's folder writes a group's encoded name against its colon (a parse
    defect), and on 3.10-3.12 can encode the commas between addresses."""
    field = f"header {name}"
    items: list[tuple[str, str] | tuple[str, list[tuple[str, str]]]] = []
    for group in value.groups:
        found = [checked(field, a) for a in group.addresses]
        _need_no_smtputf8(name, found, utf8)
        boxes = [(a.display_name, a.addr_spec) for a in found]
        if group.display_name is None:
            items.extend(boxes)
        else:
            items.append((group.display_name, boxes))
    return address_header(name, items, utf8)


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
