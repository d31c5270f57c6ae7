"""Email addresses: parse, validate and normalise them before anything is built.

A bad address is the mistake users make most, so every check names the argument and
the value (``to: 'bob@' is not a valid email address (missing domain)``). Parsing is
cached: an alerting process writes to the same few addresses all day.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from email import policy as email_policy
from email.errors import NonASCIILocalPartDefect
from email.headerregistry import Address as _StdAddress
from typing import Union

from postbud.errors import InvalidMessageError

__all__ = [
    "Address",
    "Addresses",
    "addresses",
    "check_no_breaks",
    "check_unicode",
    "checked",
    "control_character",
    "parse_address",
    "parse_addresses",
]

Addresses = Union[str, Iterable[str], None]  # noqa: UP007
# ASCII control characters but TAB (and DEL): they cannot be encoded in every field.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# Quoted strings and (non-nested) comments, where ';' and ':' are ordinary characters.
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"|\((?:[^()\\]|\\.)*\)')


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


@functools.lru_cache(maxsize=4096)
def parse_addresses(text: str) -> tuple[Address, ...]:
    """Parse a comma-separated list of addresses; raise naming the first bad one.

    Cached: an alerting process writes to the same few addresses all day.
    """
    check_no_breaks("address", text)
    bad = control_character(text)
    if bad:
        raise InvalidMessageError(f"{text!r} holds the control character {bad!r}: remove it.")
    if _semicolon_list(text):
        raise InvalidMessageError(
            f"{text!r} holds a ';' between addresses: separate addresses with commas."
        )
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


def _semicolon_list(text: str) -> bool:
    """True for ``a@example.com; b@example.com`` (Outlook's separator), which the
    standard reads as garbage: a ';' outside quotes and comments, with no ':' that
    would make it the end of a group (groups get their own message)."""
    bare = _QUOTED.sub("", text)
    return ";" in bare and ":" not in bare


def parse_address(text: str) -> Address:
    """Parse exactly one address (``"me@x.com"`` or ``"Me <me@x.com>"``)."""
    found = parse_addresses(text)
    if len(found) != 1:
        raise InvalidMessageError(f"{text!r} holds {len(found)} addresses where one is expected.")
    return found[0]


def checked(field: str, std: _StdAddress) -> Address:
    """One address the stdlib parsed already (a header of an ``EmailMessage``), checked
    as ``parse_addresses`` checks; ``field`` names it in the error."""
    try:
        check_no_breaks("address", std.display_name)
        bad = control_character(std.display_name)
        if bad:
            raise InvalidMessageError(
                f"the display name {std.display_name!r} holds the control character {bad!r}."
            )
        return _checked(std, std.addr_spec)
    except InvalidMessageError as exc:
        raise InvalidMessageError(f"{field}: {exc.description}") from None


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


def addresses(field: str, value: Addresses) -> list[Address]:
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


def check_no_breaks(field: str, value: str) -> None:
    if "\r" in value or "\n" in value or "\0" in value:
        raise InvalidMessageError(
            f"{field} contains a line break (CR/LF) or NUL: {value[:60]!r}. Header values "
            "must be one line; a line break could inject headers."
        )
    check_unicode(field, value)


def control_character(value: str) -> str | None:
    """The first ASCII control character of ``value`` other than TAB (DEL included)."""
    found = _CONTROL.search(value)
    return found.group() if found else None


def check_unicode(field: str, value: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidMessageError(
            f"{field} holds characters that are not valid Unicode (lone surrogates, often "
            "bytes decoded with errors='surrogateescape'); decode the text properly first."
        ) from None


# -- headers and bodies --------------------------------------------------------------
