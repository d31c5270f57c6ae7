"""Write a ready ``email.message.Message`` (``send_message()``) into an Envelope.

The message is written by the stdlib's generator, but with a policy whose folding is
postbud's (``_CheckedFold``): the stdlib's folder of Python 3.10–3.12 writes decoded
encoded words as raw CR LF, writes an encoded group name against its colon, and can
encode the commas between addresses; compat32 splits a header at U+001C. So
unstructured text, address lists (groups too) and MIME parameters are written by
``_mime``'s rules, as ``build_message`` writes them, and every header passes the line
scan before it is written. What the ``email`` package raises on a malformed message is
translated into ``InvalidMessageError``.

Most headers of an ordinary message (Django's, the stdlib's) are printable ASCII and fit
on a line: ``_plain_field`` writes those as "Name: value" directly, byte for byte what
the checked path writes (the tests compare both), skipping compat32's ``Header``, the
modern folder and a second parse of Content-Type, which were most of the cost; anything
else (non-ASCII, control characters, line breaks, "=?", long values, address lists of
the modern API, defects) goes the checked way.
"""

from __future__ import annotations

import copy
import functools
import io
import re
import types
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from email import policy as email_policy
from email.errors import NonASCIILocalPartDefect
from email.generator import BytesGenerator
from email.headerregistry import Address as StdAddress
from email.headerregistry import (
    AddressHeader,
    BaseHeader,
    ContentTransferEncodingHeader,
    DateHeader,
    MessageIDHeader,
    MIMEVersionHeader,
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
    # A line break is only legal as folding (followed by a space or tab). One search over
    # all values ("\x01" between them: no line break is followed by it and then legal).
    items = message.items()
    if _INJECTED.search("\x01".join([str(value) for _, value in items])):
        for name, value in items:
            if _INJECTED.search(str(value)):
                raise InvalidMessageError(
                    f"header {name} contains a line break that is not folding: "
                    "it could inject headers."
                )
    if recipients is not None:
        chosen = list(dict.fromkeys(_spec(a) for a in addresses("recipients", recipients)))
    else:
        chosen = list(
            dict.fromkeys(
                _spec(a)
                for field in ("To", "Cc", "Bcc")
                for value in message.get_all(field, [])
                for a in _addresses_of(field.lower(), value)
            )
        )
    if not chosen:
        raise InvalidMessageError("The message has no To, Cc or Bcc recipient.")
    account = parse_address(mail_from)
    present = {name.lower() for name, _ in items}  # one pass, not one per look-up
    if "resent-bcc" in present:
        raise InvalidMessageError(
            "header Resent-Bcc would show hidden recipients to everyone: leave it out, "
            "and pass them in recipients=."
        )
    msg = copy.copy(message)
    # __delitem__ rebinds the copy's header list, so the caller's message keeps its Bcc
    # and the headers added below stay on the copy.
    del msg["Bcc"]
    from_addr = account
    if "from" in present:
        from_addr = (_addresses_of("From", msg["From"]) or [account])[0]
    else:
        msg["From"] = str(account)
    if "date" not in present:
        msg["Date"] = format_datetime(datetime.now(timezone.utc))
    if "message-id" not in present:
        msg["Message-ID"] = make_msgid(domain=from_addr.domain)
    utf8 = any(not r.isascii() for r in chosen) or from_addr.needs_smtputf8
    policy = message.policy
    if utf8 and not isinstance(policy, email_policy.EmailPolicy):
        needs = [r for r in chosen if not r.isascii()] or [from_addr.addr_spec]
        raise InvalidMessageError(
            f"send_message(): the address {needs[0]!r} needs SMTPUTF8, which compat32 "
            "messages cannot carry; build the message with email.message.EmailMessage "
            "(policy=email.policy.SMTP)."
        )
    # Raw UTF-8 headers only with SMTPUTF8, whatever the message's policy says.
    changes = {"utf8": utf8} if isinstance(policy, email_policy.EmailPolicy) else {}
    buffer = io.BytesIO()
    generator = _Generator(buffer, mangle_from_=False, policy=_checked(policy, **changes))
    generator.flatten(msg)  # the policy's linesep is CR LF
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
        return [_valid(field, a) for a in value.addresses]
    text = _text_of(field, str(value))  # compat32 text, or strings set as a list
    if ":" in text and ";" in text:  # perhaps a group ("undisclosed-recipients:;")
        parsed = email_policy.default.header_factory("To", text)
        if (
            isinstance(parsed, AddressHeader)
            and not getattr(parsed, "defects", ())
            and any(g.display_name is not None for g in parsed.groups)
        ):
            return [_valid(field, a) for a in parsed.addresses]
    return addresses(field, text)


# The addresses of the modern API's headers, checked: a header object is new with every
# message, but an application writes to and from the same few addresses. Only what
# passed is kept (an error names the field), and at most a few thousand.
_VALID: dict[tuple[str, str, str], Address] = {}


def _valid(field: str, std: StdAddress) -> Address:
    """``checked(field, std)``, which depends on nothing but these three parts."""
    key = (std.display_name, std.username, std.domain)
    found = _VALID.get(key)
    if found is None:
        found = checked(field, std)
        if len(_VALID) >= 4096:
            _VALID.clear()
        _VALID[key] = found
    return found


@functools.lru_cache(maxsize=4096)
def _spec(address: Address) -> str:
    """``address.addr_spec`` (which builds an ``email.headerregistry.Address``), cached."""
    return address.addr_spec


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
_LINE = 78  # RFC 5322's recommended line length, the policies' default max_line_length


class _CheckedFold(Policy):
    """Mixed into the message's own policy class (``_checked``) for one flatten: writes
    unstructured text and address lists of the modern API as ``build_message`` does,
    leaves the rest to the policy, and scans every header before it is written."""

    _stdlib_fold = False  # set by _checked_class: the policy folds as the stdlib's does

    def fold_binary(self, name: str, value: str) -> bytes:
        if self._stdlib_fold:
            fast = _plain_field(self, name, value)
            if fast is not None:
                return fast
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


# The fast path (``_plain_field``): a value of printable ASCII (no control character, no
# TAB, CR or LF) that neither starts nor ends with a blank and holds no "=?".
_PLAIN = re.compile(r"[!-~](?:[ -~]*[!-~])?")
# Content-Type / Content-Disposition as Django and the stdlib write them: a type (or a
# disposition) and parameters whose names hold no "*" (RFC 2231) and whose values are
# tokens or quoted strings without backslashes or blanks at either end.
_MIME_WORD = r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*"
_SIMPLE_PARAMETER = (
    r"; ?([A-Za-z0-9._-]+)=(?:\"([!#-\[\]-~](?:[ !#-\[\]-~]*[!#-\[\]-~])?)\"|([A-Za-z0-9._+-]+))"
)
_SIMPLE_MIME = {
    "content-type": re.compile(f"({_MIME_WORD}/{_MIME_WORD})((?:{_SIMPLE_PARAMETER})*)"),
    "content-disposition": re.compile(f"({_MIME_WORD})((?:{_SIMPLE_PARAMETER})*)"),
}
_PARAMETER = re.compile(_SIMPLE_PARAMETER)
# The modern API's headers written as "Name: text" when that fits on a line: unstructured
# text (``header`` writes it so), and those the policy itself folds (``_rendered`` gives
# None; its folder writes the header's text, which is its parse tree's, when it fits).
_ONE_LINE = (
    UnstructuredHeader,
    DateHeader,
    MIMEVersionHeader,
    ContentTransferEncodingHeader,
    MessageIDHeader,
)


def _plain_field(policy: Policy, name: str, value: object) -> bytes | None:
    """The header as one line, "Name: value", when that is provably what the checked
    path writes; None sends it there (anything not ASCII, with a control character or a
    line break, "=?", blanks at either end, too long for a line, an address list, a
    modern header with defects, a header object of another kind, ...).

    Most headers of an ordinary message take this path: it skips compat32's ``Header``
    and the modern folder, and reads a simple Content-Type with one regex rather than
    through ``email.policy.default``. Its line needs no ``check_field``: the name is a
    field name, the value printable ASCII, and the line at most 78 characters.
    """
    if type(name) is not str or not _FIELD_NAME.fullmatch(name) or policy.linesep != "\r\n":
        return None
    if isinstance(policy, email_policy.EmailPolicy):
        if not isinstance(value, BaseHeader) or value.name != name or value.defects:
            return None
        text = str(value)
        kind: object = value  # a BaseHeader, and one of the registry's mixins
        if isinstance(kind, _ONE_LINE):
            if type(value).fold is not BaseHeader.fold:
                return None
        elif isinstance(kind, ParameterizedMIMEHeader):
            # Parsed already; its text read again by a regex, not by the parser, and
            # written only if the regex reads it whole (then as the parser did).
            simple = _SIMPLE_MIME.get(name.lower())
            return None if simple is None else _plain_parameters(name, text, simple)
        else:
            return None
    elif type(value) is not str:
        return None
    else:
        text = value
        simple = _SIMPLE_MIME.get(name.lower())
        if simple is not None:
            return _plain_parameters(name, text, simple)
    if (
        len(name) + 2 + len(text) > min(_LINE, policy.max_line_length or _LINE)
        or "=?" in text
        or not _PLAIN.fullmatch(text)
    ):
        return None
    return f"{name}: {text}\r\n".encode("ascii")


def _plain_parameters(name: str, text: str, simple: re.Pattern[str]) -> bytes | None:
    """A compat32 Content-Type or Content-Disposition of the simple form, written as
    ``_parameters`` writes what ``email.policy.default`` parses from it (type and
    parameter names lowercased, values unquoted), without that parse."""
    found = simple.fullmatch(text)
    if found is None or "=?" in text:  # a reader may decode an encoded word in a value
        return None
    matches = [m.groups() for m in _PARAMETER.finditer(found.group(2))]
    params = {key.lower(): token if quoted is None else quoted for key, quoted, token in matches}
    if len(params) != len(matches):  # a repeated name: a defect, for the parser
        return None
    main = found.group(1).lower()
    # Each value is plain, so parameter_header quotes it; on one line (78 characters at
    # most) that is this, which needs no check_field: printable ASCII, no line break.
    line = "".join([f"{name}: {main}", *[f'; {key}="{text}"' for key, text in params.items()]])
    if len(line) <= _LINE:
        return f"{line}\r\n".encode("ascii")
    data = parameter_header(name, main, params.items()).encode("ascii")
    check_field(f"header {name}", name, data)
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
    return address_header(name, ((a.display_name, _spec(a)) for a in found), utf8)


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
        found = [_valid(field, a) for a in group.addresses]
        _need_no_smtputf8(name, found, utf8)
        boxes = [(a.display_name, _spec(a)) for a in found]
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
    # The fast path writes what the stdlib's own folding would: only for a policy class
    # that folds as compat32 or the modern default does (not a subclass's override).
    stdlib = any(
        issubclass(cls, base)
        and cls.fold_binary is base.fold_binary
        and getattr(cls, "_fold", None) is getattr(base, "_fold", None)
        for base in (email_policy.EmailPolicy, email_policy.Compat32)
    )
    return types.new_class(
        f"Checked{cls.__name__}",
        (_CheckedFold, cls),
        exec_body=lambda ns: ns.update(_stdlib_fold=stdlib),
    )


def _checked(policy: Policy, **changes: object) -> Policy:
    """``policy`` with ``_CheckedFold``'s folding, CR LF line ends and ``changes`` (the
    way ``Policy.clone`` copies: one copy, not one per change)."""
    cls = _checked_class(type(policy))
    checked = cls.__new__(cls)
    for attr, value in {**vars(policy), "linesep": "\r\n", **changes}.items():
        object.__setattr__(checked, attr, value)
    return checked


class _Generator(BytesGenerator):
    """The stdlib's generator, but a new boundary is tested against the parts with a
    substring search before the stdlib's regex (compiled anew for every random boundary,
    about a fifth of writing a small multipart message): where "--" and the boundary
    occur nowhere in the text, that regex cannot match, and the boundary is the same."""

    @classmethod
    def _make_boundary(cls, text: bytes | None = None) -> str:
        make: Callable[[bytes | None], str] = super()._make_boundary  # type: ignore[misc]
        boundary = make(None)
        if text is not None and ("--" + boundary).encode("ascii") in text:
            return make(text)
        return boundary
