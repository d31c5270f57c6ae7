"""What Gmail's SMTP replies mean, and what the user should do about each.

Replies are classified on the reply code plus the enhanced status code ("5.7.8"),
never on the prose, which Google rewords every few years. The table below is the one
place that knows Gmail's replies; ``postbud._transport`` calls ``classify`` for every
reply that is not a success, and the docs' troubleshooting table mirrors it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from postbud.errors import (
    AuthenticationError,
    DeliveryError,
    MessageRefusedError,
    QuotaExceededError,
    RecipientsRefusedError,
    RefusedError,
    SenderRefusedError,
    TransportError,
)

__all__ = ["Stage", "classify", "enhanced_code", "refusals_retryable", "summary", "temporary"]

Stage = Literal["connect", "helo", "starttls", "auth", "mail", "rcpt", "data"]

APP_PASSWORDS_URL = "https://myaccount.google.com/apppasswords"
_ENHANCED = re.compile(r"^\s*([245]\.\d{1,3}\.\d{1,3})\b")
_TAIL = re.compile(r"\s+\S+ - gsmtp$")


@dataclass(frozen=True)
class _Meaning:
    kind: type[DeliveryError]
    retryable: bool
    hint: str
    retry_after: float | None = None
    only_at: Stage | None = None  # the meaning holds only as a reply to this command


# (code, enhanced code) -> meaning. The hint may use {username} and {credential}.
_KNOWN: Mapping[tuple[int, str], _Meaning] = {
    (535, "5.7.8"): _Meaning(
        AuthenticationError,
        False,
        "Gmail did not accept the {credential} for {username}. {fix_credentials}",
    ),
    (534, "5.7.9"): _Meaning(
        AuthenticationError,
        False,
        "Gmail wants an app password: this account uses 2-Step Verification, so its "
        f"normal password does not work over SMTP. Create one at {APP_PASSWORDS_URL} "
        "and set app_password to it.",
    ),
    (534, "5.7.14"): _Meaning(
        AuthenticationError,
        False,
        "Gmail wants a sign-in in a web browser first: sign in to {username} at "
        "https://mail.google.com/ (from the network this program runs on if you can), "
        "then use an app password (https://support.google.com/mail/answer/78754).",
    ),
    (454, "4.7.0"): _Meaning(
        AuthenticationError,
        True,
        "Gmail is throttling logins for {username} (too many login attempts, or a "
        "temporary problem): wait several minutes before trying again. postbud reuses one "
        "connection per Mailer, so many processes each logging in can cause this.",
        retry_after=300.0,
        only_at="auth",
    ),
    (530, "5.7.0"): _Meaning(
        AuthenticationError,
        False,
        "The server wanted authentication or TLS before this command. postbud always "
        "authenticates over TLS first, so this is a bug: please report it.",
    ),
    (504, "5.7.4"): _Meaning(
        AuthenticationError,
        False,
        "The server does not support this login mechanism.",
    ),
    (421, "4.7.0"): _Meaning(
        TransportError,
        True,
        "Gmail closed the connection (try again later, too many connections, or the "
        "connection expired); postbud reconnects on the next attempt.",
    ),
    (451, "4.4.2"): _Meaning(
        TransportError,
        True,
        "Gmail closed the idle connection; postbud reconnects on the next attempt.",
    ),
    (452, "4.5.3"): _Meaning(
        RecipientsRefusedError,
        True,
        "Too many recipients in one transaction; send the rest in another envelope "
        "(postbud splits at 100, Gmail's limit).",
    ),
    (550, "5.4.5"): _Meaning(
        QuotaExceededError,
        True,
        "Gmail's daily sending limit for {username} is reached (about 500 recipients a "
        "rolling 24 h for consumer accounts, 2,000 messages for Workspace). Sending is "
        "blocked for up to 24 hours; nothing was lost, try again later.",
        retry_after=3600.0,
    ),
    (552, "5.3.4"): _Meaning(
        MessageRefusedError,
        False,
        "The message is bigger than Gmail accepts (25 MB of attachments). Send a link "
        "to the file instead.",
    ),
    (553, "5.1.3"): _Meaning(
        RecipientsRefusedError,
        False,
        "Gmail says a recipient address is not a valid RFC 5321 address; check it for typos.",
    ),
    (553, "5.1.7"): _Meaning(
        SenderRefusedError,
        False,
        "Gmail says the sender address is not a valid RFC 5321 address; check username and sender.",
    ),
    (555, "5.5.2"): _Meaning(
        RefusedError,
        False,
        "Gmail could not parse a MAIL or RCPT command (an address with spaces or brackets?).",
    ),
}

_BY_STAGE: Mapping[Stage, type[DeliveryError]] = {
    "connect": TransportError,
    "helo": RefusedError,
    "starttls": TransportError,
    "auth": AuthenticationError,
    "mail": SenderRefusedError,
    "rcpt": RecipientsRefusedError,
    "data": MessageRefusedError,
}

_WHAT: Mapping[Stage, str] = {
    "connect": "The server refused the connection",
    "helo": "The server refused the greeting (EHLO)",
    "starttls": "The server refused to start TLS, so postbud did not log in",
    "auth": "Gmail refused the login for {username}",
    "mail": "The server refused the sender {username}",
    "rcpt": "The server refused the recipients",
    "data": "The server refused the message",
}

_FIX_CREDENTIALS = {
    "app password": (
        "Check that username is the full address and create a new app password at "
        f"{APP_PASSWORDS_URL} (changing the account password revokes app passwords)."
    ),
    "OAuth2 token": (
        "The access token lacks the https://mail.google.com/ scope, belongs to another "
        "account than the username, or was revoked; authorise again."
    ),
}


def temporary(code: int, text: str) -> bool:
    """Whether a recipient refused with this reply may get the message later.

    0 means no reply (the connection failed); 4xx is temporary; Gmail's daily limit
    (550 5.4.5) ends within a day.
    """
    return code == 0 or 400 <= code < 500 or (code == 550 and enhanced_code(text) == "5.4.5")


def refusals_retryable(refused: Mapping[str, tuple[int, str]]) -> bool:
    """Whether sending again may reach some of these refused recipients."""
    return any(temporary(code, text) for code, text in refused.values())


def enhanced_code(text: str) -> str:
    """The enhanced status code ("5.7.8") at the start of a reply text, or ""."""
    match = _ENHANCED.match(text)
    return match.group(1) if match else ""


def summary(text: str) -> str:
    """A multi-line reply as one line: the enhanced code once, no session-id tail.

    ``"5.7.8 Username ... go to\n5.7.8  https://...BadCredentials x12 - gsmtp"`` becomes
    ``"5.7.8 Username ... go to https://...BadCredentials"``.
    """
    lines = text.strip().splitlines()
    code = enhanced_code(text)
    rest = [_ENHANCED.sub("", line).strip() if code else line.strip() for line in lines]
    joined = " ".join(part for part in rest if part)
    joined = _TAIL.sub("", joined)
    return f"{code} {joined}".strip() if code else joined


def classify(
    code: int,
    text: str,
    *,
    stage: Stage,
    username: str = "",
    credential: str = "app password",
    refused: Mapping[str, tuple[int, str]] | None = None,
) -> DeliveryError:
    """Turn one SMTP reply into the matching ``DeliveryError``.

    Args:
        code: The three-digit reply code.
        text: The reply text as smtplib returns it (code prefixes stripped).
        stage: Which command the reply answered.
        username: The account, for the message and hints.
        credential: "app password" or "OAuth2 token", for the hints.
        refused: For recipient refusals, ``{address: (code, text)}``.
    """
    meaning = _KNOWN.get((code, enhanced_code(text)))
    transient = 400 <= code < 500
    if meaning is not None and meaning.only_at not in (None, stage):
        meaning = None
    if meaning is not None and not (
        # Stage wins over the table when the table would name another command's class,
        # except for replies that mean the same wherever they come (quota, 421, 451).
        meaning.kind in (RecipientsRefusedError, SenderRefusedError) and stage == "data"
    ):
        kind, retryable, retry_after = meaning.kind, meaning.retryable, meaning.retry_after
        hint: str | None = meaning.hint
    else:
        kind, retryable, retry_after, hint = _BY_STAGE[stage], transient, None, None
        if code == 421:
            kind, retryable = TransportError, True
    if kind is RecipientsRefusedError and refused is None:
        kind = RefusedError
    elif refused is not None and kind not in (QuotaExceededError, TransportError):
        kind = RecipientsRefusedError  # every recipient refused: callers need .refused
        retryable = refusals_retryable(refused)  # whatever order the replies came in
    fields = {
        "username": username or "this account",
        "credential": credential,
        "fix_credentials": _FIX_CREDENTIALS.get(credential, ""),
    }
    what = _WHAT[stage]
    if kind is QuotaExceededError:
        what = "Gmail's sending limit is reached for {username}"
    elif kind is TransportError and code in (421, 451):
        what = "The server is closing the connection"
    what = what.format(**fields)
    description = f"{what}: {code} {summary(text)}".rstrip()
    hint = hint.format(**fields) if hint else None
    if kind is RecipientsRefusedError:
        return RecipientsRefusedError(
            description,
            refused=refused or {},
            code=code,
            message=text,
            hint=hint,
            retryable=retryable,
            retry_after=retry_after,
        )
    return kind(
        description,
        code=code,
        message=text,
        hint=hint,
        retryable=retryable,
        retry_after=retry_after,
    )
