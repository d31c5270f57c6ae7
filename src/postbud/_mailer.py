"""Mailer: the façade every adapter (logging, Django, Flask, CLI) sends through.

It validates and renders the message (``_message``) and either sends it now on the
Mailer's own connection (``send``: one attempt, never sleeps or loops, raises with
``retryable`` and ``retry_after``) or queues it for the outbox worker (``submit``:
returns the Message-ID at once; the worker retries). Both count into the quota ledger.

Longer than ~350 lines on purpose: ``send``, ``build`` and ``submit`` repeat their
parameters explicitly (as httpx does), so that signatures, docs and IDEs show them.
"""

from __future__ import annotations

import functools
import logging
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from email.message import Message
from types import TracebackType
from typing import TYPE_CHECKING

from ._address import parse_address
from ._config import Settings
from ._mask import MASK, known_secrets
from ._message import (
    Addresses,
    Attachments,
    Envelope,
    InlineLike,
    build_message,
)
from ._outbox import (
    DEFAULT_POLICY,
    Outbox,
    Priority,
    PriorityName,
    RetryPolicy,
    Stats,
    credential_hash,
)
from ._ready import envelope_from_message
from ._smtp import SendResult, SMTPTransport, Transport
from .errors import InvalidMessageError

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ._config import SettingsKwargs

__all__ = ["Mailer", "SendResult"]

log = logging.getLogger("postbud")


class Mailer:
    """Send mail through Gmail with one reused, verified-TLS connection.

    Build it from a ``Settings`` or from the same names as keyword arguments::

        mailer = postbud.Mailer(username="me@gmail.com", app_password="abcd efgh ijkl mnop")
        mailer.send(to="you@example.com", subject="Hi", text="Hello!")

    Configuration errors are raised here, not at the first send. A Mailer is
    thread-safe and a context manager (``close()`` on exit).

    Args:
        settings: A ``Settings``; keyword arguments then override single values.
        transport: Where envelopes go (default: ``SMTPTransport``; tests may pass
            ``postbud.testing.MemoryTransport()``).
        policy: Retry timings (internal: tests pass a faster one).
        **kwargs: Settings by name (``username``, ``app_password``, ``host``...).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        /,
        *,
        transport: Transport | None = None,
        policy: RetryPolicy = DEFAULT_POLICY,
        **kwargs: Unpack[SettingsKwargs],
    ) -> None:
        if settings is None:
            settings = Settings.from_kwargs(**kwargs)
        elif kwargs:
            settings = settings.replace(**kwargs)
        self.settings = settings
        own = SMTPTransport(settings) if transport is None else None
        caller: Transport = own or transport  # type: ignore[assignment]
        self._transport = caller
        self._warned_from: set[str] = set()

        def worker_transport() -> Transport:
            # The worker owns its own connection (same credentials and TLS context);
            # an injected transport, such as MemoryTransport, is shared. (Not a method:
            # the worker thread must not keep the Mailer alive.)
            if own is None:
                return caller
            return SMTPTransport(settings, own.credentials, ssl_context=own.ssl_context)

        self._outbox = Outbox.open(
            settings,
            transport=caller,
            worker_transport=worker_transport,
            policy=policy,
            credential=credential_hash(settings.username, getattr(caller, "credentials", None)),
        )
        if own is not None:
            # Collected without close(): its connection goes without a word (the
            # collector may run in any thread; no network I/O there). Its spool
            # connections close with their handles (_outbox/db.py).
            weakref.finalize(self, own.close, polite=False).atexit = False
        if self._outbox.pending():
            # A killed process left mail for this account: deliver it now.
            self._outbox.start()

    def mask(self, text: str) -> str:
        """``text`` with this Mailer's secrets masked, in every spelling.

        The app password (with or without Google's spaces), the OAuth2 refresh token,
        client secret and current access token, and their base64 forms as the login
        sends them, in any case. For adapters that put text into mails (alerts, job
        reports); postbud's own mails are masked with it already.
        """
        return self.masker()(text)

    def masker(self) -> Callable[[str], str]:
        """``mask`` with the secrets looked up once, for masking many texts in a row
        (the current access token included: take a new one after a login)."""
        s = self.settings
        values = [
            v.reveal() for v in (s.app_password, s.oauth_client_secret, s.oauth_refresh_token) if v
        ]
        own = getattr(self._transport, "credentials", None)
        values += getattr(own, "secret_values", tuple)()
        secrets = known_secrets(values, s.username)
        if secrets is None:
            return str
        return functools.partial(secrets.sub, MASK)

    @property
    def outbox(self) -> Outbox:
        """The outbox of this Mailer, for adapters (the command line, Django, Flask).

        Its methods are the one internal API adapters use: ``send_or_keep``,
        ``retry_pending``, ``keep_alive``, ``status``, ``rows``, ``revive``, ``purge``...
        (see ``docs/architecture.md``). Applications use ``submit`` and ``flush``.
        """
        return self._outbox

    def __repr__(self) -> str:
        s = self.settings
        return f"<postbud.Mailer {s.username} via {s.host}:{s.port}>"

    # -- sending ----------------------------------------------------------------------

    def send(
        self,
        to: Addresses,
        subject: str,
        text: str | None = None,
        html: str | None = None,
        *,
        cc: Addresses = None,
        bcc: Addresses = None,
        reply_to: Addresses = None,
        sender: str | None = None,
        headers: Mapping[str, str] | None = None,
        attachments: Attachments = None,
        inline: Mapping[str, InlineLike] | None = None,
    ) -> SendResult:
        """Build one message and send it now (blocking, one attempt).

        Args:
            to, cc, bcc: An address or a list of them (``"Name <a@b.com>"`` works).
                Bcc recipients get the message but appear in no header.
            subject: One line.
            text, html: The bodies; both make a multipart/alternative message (with
                ``html`` alone, the text part is made from it).
            reply_to: Where replies should go.
            sender: A ``From`` other than the account (Gmail rewrites it unless it is
                a verified "Send mail as" alias; postbud warns once).
            headers: Extra headers such as ``{"X-Job": "nightly"}``. ``Message-ID``
                may be given to keep one across retries.
            attachments: A path, a ``(filename, bytes[, mimetype])`` tuple, or a list
                of them (one string is one path).
            inline: ``{content_id: path or bytes}`` for ``<img src="cid:...">``.

        Returns:
            A ``SendResult``; refused recipients are in ``.refused``.

        Raises:
            InvalidMessageError: Before connecting, naming the bad value.
            RecipientsRefusedError: When no recipient was accepted.
            DeliveryError: Any other failure, with ``retryable`` and ``retry_after``.
        """
        envelope = self.build(
            to,
            subject,
            text,
            html,
            cc=cc,
            bcc=bcc,
            reply_to=reply_to,
            sender=sender,
            headers=headers,
            attachments=attachments,
            inline=inline,
        )
        return self.deliver(envelope)

    def build(
        self,
        to: Addresses,
        subject: str,
        text: str | None = None,
        html: str | None = None,
        *,
        cc: Addresses = None,
        bcc: Addresses = None,
        reply_to: Addresses = None,
        sender: str | None = None,
        headers: Mapping[str, str] | None = None,
        attachments: Attachments = None,
        inline: Mapping[str, InlineLike] | None = None,
    ) -> Envelope:
        """Validate and render a message without sending it (``send`` = ``deliver(build())``,
        ``submit`` = ``enqueue(build())``). Arguments as for ``send()``."""
        chosen_from = sender or self.settings.sender
        envelope = build_message(
            mail_from=self.settings.username,
            to=to,
            subject=subject,
            text=text,
            html=html,
            cc=cc,
            bcc=bcc,
            reply_to=reply_to,
            sender=chosen_from,
            headers=headers,
            attachments=attachments,
            inline=inline,
        )
        if chosen_from:
            self._warn_foreign_from(chosen_from)
        return envelope

    def send_message(self, message: Message, *, recipients: Addresses = None) -> SendResult:
        """Send a ready ``email.message.Message``/``EmailMessage`` now.

        Recipients are taken from To, Cc and Bcc (or are ``recipients``, the envelope's
        own, as Django's ``message.recipients()``); Bcc is stripped from what is sent;
        missing ``From`` (the account), ``Date`` and ``Message-ID`` are added to a copy.
        """
        return self.deliver(self._envelope_of(message, recipients))

    def deliver(self, envelope: Envelope, *, alert: bool = False) -> SendResult:
        """Send a built envelope now, in transactions of at most 100 recipients.

        Raises ``QuotaExceededError`` before connecting when the daily limit is used up
        (``alert=True`` may use the part kept for alerts, ``alert_reserve``).
        """
        return self._outbox.send_now(envelope, alert=alert)

    # -- queueing ---------------------------------------------------------------------

    def submit(
        self,
        to: Addresses,
        subject: str,
        text: str | None = None,
        html: str | None = None,
        *,
        cc: Addresses = None,
        bcc: Addresses = None,
        reply_to: Addresses = None,
        sender: str | None = None,
        headers: Mapping[str, str] | None = None,
        attachments: Attachments = None,
        inline: Mapping[str, InlineLike] | None = None,
        priority: PriorityName = "normal",
    ) -> str:
        """Build and queue one message; return its Message-ID without waiting.

        The message is validated here (a bad address raises ``InvalidMessageError`` at
        once) and stored in the spool before this returns; the outbox worker delivers
        it, alerts first, retrying transient failures. Nothing here waits for the
        network, and a busy or unwritable spool only moves the message to memory.

        Args:
            priority: ``"alert"`` goes before ``"normal"`` mail and may use the part of
                the daily limit kept for alerts (``alert_reserve``).
            (others): as for ``send()``.
        """
        envelope = self.build(
            to,
            subject,
            text,
            html,
            cc=cc,
            bcc=bcc,
            reply_to=reply_to,
            sender=sender,
            headers=headers,
            attachments=attachments,
            inline=inline,
        )
        return self.enqueue(envelope, priority)

    def submit_message(
        self,
        message: Message,
        *,
        recipients: Addresses = None,
        priority: PriorityName = "normal",
    ) -> str:
        """Queue a ready ``email.message.Message``; return its Message-ID.

        ``recipients`` as for ``send_message``.
        """
        return self.enqueue(self._envelope_of(message, recipients), priority)

    def enqueue(self, envelope: Envelope, priority: PriorityName = "normal") -> str:
        """Queue a built envelope for the outbox worker; return its Message-ID."""
        try:
            level = Priority.named(priority)
        except ValueError as exc:
            raise InvalidMessageError(str(exc)) from None
        self._outbox.submit(envelope, level)
        return envelope.message_id

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything submitted before this call is settled.

        Settled: delivered, dead-lettered, or waiting for a retry more than ``timeout``
        away. Returns True if so within ``timeout`` (default ``exit_timeout``); never
        raises. With ``timeout=0`` it only reports: it starts no worker.
        """
        return self._outbox.flush(self.settings.exit_timeout if timeout is None else timeout)

    # -- connection -------------------------------------------------------------------

    def open(self) -> None:
        """Connect and log in now, and keep the connection for the sends that follow
        (a no-op when it is open): a cheap check that the credentials work, before a
        batch. Raises the ``DeliveryError`` a send would (a refused login, TLS, an
        outage); no login while the account's logins are paused (see ``send``).
        ``close()`` ends it; ``connect()`` is the same for one block."""
        self._outbox.open_now()

    @contextmanager
    def connect(self) -> Iterator[Mailer]:
        """Open the connection now (failing early on bad credentials) for a batch.

        ``send()`` reuses one connection anyway; ``connect()`` adds an eager login
        (``open()``) and closes the connection at the end of the block::

            with mailer.connect():
                for user in users:
                    mailer.send(to=user.email, subject="News", text=body)
        """
        self.open()
        try:
            yield self
        finally:
            self._transport.close()

    def close(self, timeout: float | None = None) -> None:
        """Flush the outbox for up to ``timeout`` (default ``exit_timeout``), stop its
        worker, close connections.

        Mail still queued stays in the spool for the next Mailer of this account. The
        Mailer may be used again afterwards: it reconnects and restarts its worker.
        """
        self._outbox.close(self.settings.exit_timeout if timeout is None else timeout)
        self._transport.close()

    def __enter__(self) -> Mailer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def stats(self) -> Stats:
        """Counters since this Mailer was created, and the queue and quota now.

        ``submitted``, ``sent`` (by ``send`` and by the worker), ``retried``, ``held``
        (waiting for the daily limit), ``dead`` (dead-lettered), ``dropped`` (a full
        memory queue), ``spilled`` (the spool was busy: kept in memory), ``queued``
        (waiting now) and ``quota_used`` (recipients in the last 24 h).
        """
        counts = self._outbox.counters.snapshot()
        return Stats(
            submitted=counts["submitted"],
            sent=counts["sent"],
            retried=counts["retried"],
            held=counts["held"],
            dead=counts["dead"],
            dropped=counts["dropped"],
            spilled=counts["spilled"],
            queued=self._outbox.queued(),
            quota_used=self._outbox.ledger.used(time.time())[0],
        )

    # -- helpers ----------------------------------------------------------------------

    def _envelope_of(self, message: Message, recipients: Addresses = None) -> Envelope:
        envelope = envelope_from_message(
            message, mail_from=self.settings.username, recipients=recipients
        )
        if message["From"] is not None:
            self._warn_foreign_from(str(message["From"]))
        return envelope

    def _warn_foreign_from(self, value: str) -> None:
        try:
            address = parse_address(value).addr_spec
        except ValueError:
            return
        if address.lower() == self.settings.username.lower() or address in self._warned_from:
            return
        self._warned_from.add(address)
        log.warning(
            "From %s is not the account %s: Gmail rewrites it to the account unless it is a "
            "verified 'Send mail as' alias (Gmail settings, Accounts).",
            address,
            self.settings.username,
        )
