"""One SASL exchange over smtplib that never sends a credential twice.

smtplib's ``auth()`` calls the answer function for every ``334`` the server sends and
base64-encodes whatever it returns, so a server that asks again after the credentials
went out (Gmail never does) would get them again. The answer functions of
``AppPassword`` and ``OAuth2`` raise ``Cancel`` instead, and the exchange is ended the
way RFC 4954 says: a line with ``*``.
"""

from __future__ import annotations

import smtplib
from typing import Protocol

__all__ = ["Answer", "Cancel", "authenticate"]


class Answer(Protocol):
    """What smtplib's ``auth()`` calls: None for the initial response, else the challenge."""

    def __call__(self, challenge: bytes | None = None) -> str: ...


class Cancel(Exception):
    """Raised by an answer function: the server asked again for what was sent once."""


def authenticate(smtp: smtplib.SMTP, mechanism: str, answer: Answer) -> None:
    """Run AUTH ``mechanism`` and require 235; cancel with ``*`` if ``answer`` says so.

    Raises ``smtplib.SMTPAuthenticationError`` for any other final reply (smtplib takes
    503, "already authenticated", for a success).
    """
    try:
        code, reply = smtp.auth(mechanism, answer)
    except Cancel:
        code, reply = smtp.docmd("*")
        raise smtplib.SMTPAuthenticationError(
            code,
            b"postbud cancelled the login: the server asked again for credentials it had "
            b"already been sent (it answered the cancel with: " + reply + b")",
        ) from None
    if code != 235:
        raise smtplib.SMTPAuthenticationError(code, reply)
