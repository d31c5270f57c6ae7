"""The one place where smtplib, ssl, socket and google-auth errors become postbud errors.

``translate`` maps an exception raised at a stage of the SMTP exchange to the matching
``postbud.errors`` class (Gmail's replies through ``replies.classify``); ``translated``
is the same as a context manager, which also scrubs credentials from the chain of a
failed login before anything can print it.
"""

from __future__ import annotations

import contextlib
import smtplib
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass

from postbud._config import Settings
from postbud._oauth import refresh_error
from postbud.errors import (
    DeliveryError,
    InvalidMessageError,
    PostbudError,
    SMTPTimeoutError,
    TransportError,
)

from .replies import Stage, classify

__all__ = ["Step", "connection_gone", "reply_text", "scrubbed", "translate", "translated"]


def translate(
    exc: Exception, stage: Stage, settings: Settings, credential: str
) -> DeliveryError | InvalidMessageError:
    """The postbud error for ``exc``, raised at ``stage`` talking to ``settings.host``.

    ``credential`` names what logs in ("app password", "OAuth2 token") for the hints.
    Raises ``exc`` itself when it is none of the errors of a connection (a bug).
    """
    s = settings
    where = f"{s.host}:{s.port}"
    token_error = refresh_error(exc)  # google-auth, raised by OAuth2.login
    if token_error is not None:
        return token_error
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        refused = {r: (c, reply_text(m)) for r, (c, m) in exc.recipients.items()}
        code, text = next(iter(refused.values()))
        return classify(
            code,
            text,
            stage="rcpt",
            username=s.username,
            credential=credential,
            refused=refused,
        )
    if isinstance(exc, smtplib.SMTPResponseException):
        return classify(
            exc.smtp_code,
            reply_text(exc.smtp_error),
            stage=stage,
            username=s.username,
            credential=credential,
        )
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return TransportError(
            f"{where} closed the connection during {stage}.",
            hint="postbud reconnects on the next attempt.",
        )
    if isinstance(exc, ssl.SSLCertVerificationError):
        return TransportError(
            f"The TLS certificate of {where} is not trusted: {exc.verify_message}.",
            hint="If a proxy or antivirus intercepts TLS on this network, set ca_file to "
            "its CA certificate; postbud never turns verification off.",
            retryable=False,
        )
    if isinstance(exc, (TimeoutError, socket.timeout)):
        hint = "The server or the network is slow or blocked; raise timeout if needed."
        if stage == "connect" and s.security == "starttls":
            hint += (
                " A server that speaks TLS from the first byte (port 465) waits "
                "silently for a STARTTLS client: check security='ssl'."
            )
        return SMTPTimeoutError(
            f"No answer from {where} within the {s.timeout:g} s deadline (during {stage}).",
            hint=hint,
        )
    if isinstance(exc, ssl.SSLError):
        # A handshake that fails outright (not a reset) is a set-up mistake, such as
        # security='ssl' against a STARTTLS port: retrying cannot fix it.
        return TransportError(
            f"TLS failed with {where}: {exc.reason or exc}.",
            hint="Check security and port: 'ssl' is port 465, 'starttls' is port 587.",
            retryable=stage != "connect",
        )
    if isinstance(exc, socket.gaierror):
        return TransportError(
            f"Cannot resolve {s.host!r}: {exc.strerror}.",
            hint="Check host and this machine's DNS.",
        )
    if isinstance(exc, ConnectionRefusedError):
        return TransportError(
            f"{where} refused the connection.",
            hint="Check host and port, and that outgoing SMTP is "
            "allowed here (some networks block ports 465 and 587).",
        )
    if isinstance(exc, OSError):
        return TransportError(f"Network error with {where} during {stage}: {exc.strerror or exc}.")
    if isinstance(exc, smtplib.SMTPException):
        return TransportError(f"SMTP error with {where} during {stage}: {exc}.")
    raise exc


# -- connection state ---------------------------------------------------------------


@dataclass
class Step:
    """Where a ``translated`` block is in the exchange (the block moves it along)."""

    stage: Stage = "connect"


@contextlib.contextmanager
def translated(settings: Settings, credential: str, step: Step) -> Iterator[Step]:
    """Raise what ``translate`` makes of any connection error in the block.

    The block sets ``step.stage`` as the exchange goes on; postbud's own errors pass
    through unchanged. After a failed login the cause is scrubbed (see ``scrubbed``).
    """
    try:
        yield step
    except PostbudError:
        raise
    except Exception as exc:
        raise translate(exc, step.stage, settings, credential) from scrubbed(exc, step.stage)


def connection_gone(exc: Exception) -> bool:
    """Whether ``exc`` means the connection is gone (reconnect) rather than a refusal."""
    if isinstance(exc, (smtplib.SMTPServerDisconnected, ConnectionError, ssl.SSLError)):
        return True
    if isinstance(exc, smtplib.SMTPResponseException):
        return exc.smtp_code == 421 or (exc.smtp_code == 451 and b"4.4.2" in exc.smtp_error[:8])
    return False


def reply_text(reply: bytes | str) -> str:
    """A reply as smtplib gives it (bytes) as text."""
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)


def scrubbed(exc: Exception, stage: Stage) -> Exception:
    """``exc``, with the frames of its whole chain cleared if it came from the login."""
    # smtplib's auth() frames hold the encoded credentials in locals, google-auth's and
    # requests' the refresh token and client secret, ours the access token; a traceback
    # printer that shows locals (Sentry, rich) walks the whole chain, so every link
    # loses its frames. The exceptions themselves (reply codes, error texts) stay.
    if stage == "auth":
        seen: set[int] = set()
        link: BaseException | None = exc
        while link is not None and id(link) not in seen:
            seen.add(id(link))
            link.__traceback__ = None
            link = link.__cause__ or link.__context__
    return exc
