"""The one exception tree of postbud.

Every failure a caller can see is one of these, so ``except postbud.errors.X`` works
the same whether the mail went through the blocking ``send()``, the Django backend or
the command line. Third-party exceptions (smtplib, ssl, socket, google-auth) are
translated in exactly one place (``postbud._transport``) with ``raise ... from exc``.

::

    PostbudError
    ├── ConfigurationError (also ValueError)       bad or missing settings; raised early
    │   └── MissingDependencyError (also ImportError)   names the pip extra to install
    ├── InvalidMessageError (also ValueError)      bad address, CR/LF in a header, too big
    └── DeliveryError                              the only family fail_silently swallows;
        │                                          .retryable, .retry_after, .code, .hint
        ├── AuthenticationError                    535 5.7.8, 534 5.7.9, 534 5.7.14, 454 4.7.0
        │   └── TokenRefreshError                  an OAuth2 token could not be refreshed
        ├── TransportError (also ConnectionError)  DNS, TCP, TLS, disconnects
        │   └── SMTPTimeoutError (also TimeoutError)
        ├── RefusedError                           the server said no to this message
        │   ├── SenderRefusedError
        │   ├── RecipientsRefusedError             .refused: {address: (code, message)}
        │   └── MessageRefusedError
        └── QuotaExceededError                     550 5.4.5, or our own ledger is full

``ConfigurationError`` and ``InvalidMessageError`` are deliberately outside
``DeliveryError``: retrying cannot fix them and ``fail_silently`` must not hide them.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = [
    "AuthenticationError",
    "ConfigurationError",
    "DeliveryError",
    "InvalidMessageError",
    "MessageRefusedError",
    "MissingDependencyError",
    "PostbudError",
    "QuotaExceededError",
    "RecipientsRefusedError",
    "RefusedError",
    "SMTPTimeoutError",
    "SenderRefusedError",
    "TokenRefreshError",
    "TransportError",
]


class PostbudError(Exception):
    """Base class of every error postbud raises."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.description = message

    def __str__(self) -> str:
        return self.description


class ConfigurationError(PostbudError, ValueError):
    """A setting is missing, malformed or contradicts another one.

    Raised as early as possible (when a ``Settings`` or ``Mailer`` is built) and never
    swallowed by ``fail_silently``: the message names the setting and the fix.
    """


class MissingDependencyError(ConfigurationError, ImportError):
    """An optional dependency is not installed; the message names the pip extra."""

    def __init__(self, message: str, *, package: str | None = None) -> None:
        super().__init__(message)
        self.package = package


class InvalidMessageError(PostbudError, ValueError):
    """The message cannot be sent as built: a bad address, CR/LF in a header, too big.

    Raised before any connection is made, so nothing reaches the server.
    """


class DeliveryError(PostbudError):
    """Delivery failed; the only family that ``fail_silently`` swallows.

    Attributes:
        retryable: True when the same message may succeed later unchanged.
        retry_after: Seconds to wait before that retry, when known.
        code: The SMTP reply code, when the failure came from a reply.
        message: The server's reply text (or a short description without a reply).
        hint: What the user can do about it, or None.
    """

    default_retryable = False

    def __init__(
        self,
        description: str,
        *,
        code: int | None = None,
        message: str | None = None,
        hint: str | None = None,
        retryable: bool | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(description)
        self.code = code
        self.message = message if message is not None else description
        self.hint = hint
        self.retryable = self.default_retryable if retryable is None else retryable
        self.retry_after = retry_after

    def __str__(self) -> str:
        if self.hint:
            return f"{self.description} {self.hint}"
        return self.description


class AuthenticationError(DeliveryError):
    """The server did not accept our credentials (or asked us to slow down)."""


class TokenRefreshError(AuthenticationError):
    """An OAuth2 access token could not be refreshed."""


class TransportError(DeliveryError, ConnectionError):
    """The connection failed: DNS, TCP, TLS (including an untrusted certificate), a drop."""

    default_retryable = True

    def __str__(self) -> str:  # OSError's __str__ would print "[Errno ...]"
        return DeliveryError.__str__(self)


class SMTPTimeoutError(TransportError, TimeoutError):
    """The attempt ran out of its deadline (``timeout`` seconds in all)."""


class RefusedError(DeliveryError):
    """The server refused this message (a reply with a code)."""


class SenderRefusedError(RefusedError):
    """The server refused the envelope sender (MAIL FROM)."""


class RecipientsRefusedError(RefusedError):
    """No recipient was accepted.

    Attributes:
        refused: ``{address: (code, message)}`` for every refused recipient.
    """

    def __init__(
        self,
        description: str,
        *,
        refused: Mapping[str, tuple[int, str]],
        code: int | None = None,
        message: str | None = None,
        hint: str | None = None,
        retryable: bool | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(
            description,
            code=code,
            message=message,
            hint=hint,
            retryable=retryable,
            retry_after=retry_after,
        )
        self.refused = dict(refused)


class MessageRefusedError(RefusedError):
    """The server refused the message data (after DATA): too big, policy, syntax."""


class QuotaExceededError(DeliveryError):
    """The daily sending limit is reached (Gmail's 550 5.4.5, or our own ledger).

    Retryable: the mail is held, never dropped; ``retry_after`` says when to try again.
    """

    default_retryable = True
