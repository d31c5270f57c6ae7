"""The one place where smtplib, ssl, socket and google-auth errors become postbud errors.

``translate`` maps an exception raised at a stage of the SMTP exchange to the matching
``postbud.errors`` class (Gmail's replies through ``replies.classify``); ``translated``
is the same as a context manager, which also scrubs credentials from the chain of a
failed login before anything can print it.
"""

from __future__ import annotations

import contextlib
import re
import smtplib
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass

from postbud._auth import Credentials
from postbud._config import Settings
from postbud._mask import known_secrets, mask_known
from postbud._oauth import refresh_error
from postbud.errors import (
    AuthenticationError,
    DeliveryError,
    InvalidMessageError,
    PostbudError,
    RecipientsRefusedError,
    SMTPTimeoutError,
    TransportError,
)

from .replies import Stage, classify

__all__ = [
    "Step",
    "connection_gone",
    "reply_text",
    "scrubbed",
    "secrets_of",
    "translate",
    "translated",
]


def translate(
    exc: Exception, stage: Stage, settings: Settings, credentials: Credentials
) -> DeliveryError | InvalidMessageError:
    """The postbud error for ``exc``, raised at ``stage`` talking to ``settings.host``.

    Every spelling of the credentials' secrets is masked in the texts it keeps (a
    server may echo the AUTH line back). Anything a login raises becomes an
    ``AuthenticationError``; elsewhere, an exception that is none of a connection's
    errors is raised as it is (a bug).
    """
    token_error = refresh_error(exc, getattr(credentials, "token_uri", None))
    error = token_error or _translate(exc, stage, settings, credentials.credential)
    secrets = secrets_of(credentials, settings.username)
    if secrets is not None:
        error.description = mask_known(error.description, secrets)
        error.args = (error.description,)  # what repr() shows
        if isinstance(error, DeliveryError):
            error.message = mask_known(error.message, secrets)
        if isinstance(error, RecipientsRefusedError):
            error.refused = {r: (c, mask_known(t, secrets)) for r, (c, t) in error.refused.items()}
    return error


def secrets_of(credentials: Credentials, username: str) -> re.Pattern[str] | None:
    """The pattern of every spelling of what ``credentials`` must never show."""
    values: tuple[str, ...] = getattr(credentials, "secret_values", tuple)()
    return known_secrets(values, username)


def _translate(
    exc: Exception, stage: Stage, settings: Settings, credential: str
) -> DeliveryError | InvalidMessageError:
    s = settings
    where = f"{s.host}:{s.port}"
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
    if stage == "auth":
        # A malformed challenge (smtplib's base64 decoding raises binascii.Error) or
        # anything else a login raises: a refused login, which pauses the outbox's
        # logins, never a raw exception whose frames hold the credentials.
        return AuthenticationError(
            f"{where} answered the login with something postbud cannot understand "
            f"({type(exc).__name__}); postbud stopped logging in.",
            hint="Gmail never does this: check host and port, and that nothing on the "
            "network (a proxy, an antivirus) intercepts SMTP.",
            retryable=True,
            retry_after=300.0,
        )
    raise exc


# -- connection state ---------------------------------------------------------------


@dataclass
class Step:
    """Where a ``translated`` block is in the exchange (the block moves it along)."""

    stage: Stage = "connect"


@contextlib.contextmanager
def translated(settings: Settings, credentials: Credentials, step: Step) -> Iterator[Step]:
    """Raise what ``translate`` makes of any connection error in the block.

    The block sets ``step.stage`` as the exchange goes on; postbud's own errors pass
    through unchanged. After a failed login the cause is scrubbed (see ``scrubbed``).
    """
    try:
        yield step
    except PostbudError:
        raise
    except Exception as exc:
        error = translate(exc, step.stage, settings, credentials)
        secrets = secrets_of(credentials, settings.username)
        raise error from scrubbed(exc, step.stage, secrets)


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


def scrubbed(exc: Exception, stage: Stage, secrets: re.Pattern[str] | None = None) -> Exception:
    """``exc`` made safe to chain: after a login, the frames of its whole chain cleared;
    everywhere, the secrets' spellings masked in the texts of every link."""
    # smtplib's auth() frames hold the encoded credentials in locals, google-auth's and
    # requests' the refresh token and client secret, ours the access token; a traceback
    # printer that shows locals (Sentry, rich) walks the whole chain, so every link
    # loses its frames. The exceptions themselves (reply codes, error texts) stay,
    # masked: a server may have echoed the AUTH line into a reply.
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        if stage == "auth":
            link.__traceback__ = None
        if secrets is not None:
            _mask_texts(link, secrets)
        link = link.__cause__ or link.__context__
    return exc


def _mask_texts(exc: BaseException, secrets: re.Pattern[str]) -> None:
    def masked(value: object) -> object:
        if isinstance(value, str):
            return mask_known(value, secrets)
        if isinstance(value, bytes):
            return mask_known(value.decode("utf-8", "replace"), secrets).encode()
        return value

    exc.args = tuple(masked(a) for a in exc.args)
    if isinstance(exc, smtplib.SMTPResponseException):
        exc.smtp_error = masked(exc.smtp_error)  # type: ignore[assignment]
