"""Credentials: how a connection proves who it is (app passwords here, OAuth2 in _oauth).

The transport opens and encrypts the connection, then hands it to a ``Credentials``
object whose ``login`` runs the SASL exchange. An app password and OAuth2 (XOAUTH2)
are two implementations of the same small protocol, so the transport does not know
which one it has; error translation stays in the transport.
"""

from __future__ import annotations

import smtplib
from typing import ClassVar, Protocol, runtime_checkable

from ._sasl import Cancel, authenticate
from ._secret import Secret, as_secret, bare_password
from .errors import AuthenticationError, ConfigurationError

__all__ = ["AppPassword", "Credentials"]


@runtime_checkable
class Credentials(Protocol):
    """What the transport needs from a credentials object.

    ``login`` is called on a connection that is already encrypted and has seen EHLO;
    it must raise ``smtplib.SMTPAuthenticationError`` (or ``postbud.errors``) when the
    server says no, and must never log or put the secret in an exception.
    """

    #: How the hints name this credential ("app password", "OAuth2 token").
    credential: ClassVar[str]

    # Optional: ``secret_values() -> tuple[str, ...]``, the values postbud masks in
    # alert mails, reports and reply texts (AppPassword and OAuth2 have it); and
    # ``identity() -> str``, what changes when the long-lived credential changes (the
    # outbox keeps only a hash of it, to pause logins until the credentials change).

    def login(self, smtp: smtplib.SMTP, username: str) -> None:
        """Authenticate ``username`` on ``smtp``."""
        ...


class AppPassword:
    """A Google app password, sent with AUTH PLAIN (or LOGIN if PLAIN is not offered).

    Google shows app passwords as four groups of four letters; the spaces are removed.
    The value is kept in a ``Secret`` and never appears in reprs or errors.
    """

    credential: ClassVar[str] = "app password"

    def __init__(self, password: str | Secret) -> None:
        secret = as_secret(password)
        if secret is None:
            raise ConfigurationError("The app password is empty.")
        plain, _ = bare_password(secret.reveal())
        if not plain or not plain.isascii() or not plain.isprintable():
            raise ConfigurationError(
                "The app password must be printable ASCII (Google's are 16 letters); "
                "check that it was copied whole."
            )
        self._password = Secret(plain)

    def __repr__(self) -> str:
        return "AppPassword(********)"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AppPassword) and self._password == other._password

    __hash__ = None  # type: ignore[assignment]

    def login(self, smtp: smtplib.SMTP, username: str) -> None:
        """Run AUTH PLAIN (preferred) or AUTH LOGIN and require 235."""
        if not username.isascii():
            raise ConfigurationError(f"The username {username!r} must be ASCII to log in.")
        offered = smtp.esmtp_features.get("auth", "").upper().split()
        sent = [False]  # the password went out: a further challenge is cancelled
        if "PLAIN" in offered:
            mechanism = "PLAIN"

            def answer(challenge: bytes | None = None) -> str:
                if sent[0]:  # PLAIN is one step: a 334 after it is not a Gmail server
                    raise Cancel
                sent[0] = True
                return f"\0{username}\0{self._password.reveal()}"

        elif "LOGIN" in offered:
            mechanism = "LOGIN"

            def answer(challenge: bytes | None = None) -> str:
                # The initial response (no challenge) and "Username:" get the user.
                if challenge is None or challenge.lower().startswith(b"user"):
                    return username
                if sent[0]:
                    raise Cancel
                sent[0] = True
                return self._password.reveal()

        else:
            raise AuthenticationError(
                f"The server offers no password login (AUTH {' '.join(offered) or 'none'}).",
                hint="Gmail offers PLAIN and LOGIN; check host and port.",
            )
        authenticate(smtp, mechanism, answer)

    def secret_values(self) -> tuple[str, ...]:
        """What must never be shown, in postbud's masking of alert mails and replies."""
        return (self._password.reveal(),)

    def identity(self) -> str:
        """The password as it is sent, spaces removed (the outbox hashes it; it is never
        stored): any change to what goes to Gmail, case included, is a new credential."""
        return self._password.reveal()
