"""Mailer: the façade every adapter (logging, Django, Flask, CLI) sends through.

It validates and renders the message (``_message``), splits the recipients into
envelopes Gmail accepts, and hands them to a transport. ``send()`` makes one attempt
and never sleeps or loops; what to do about a retryable failure is the caller's (and,
later, the outbox's) decision, with ``retryable`` and ``retry_after`` to go on.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import Message
from types import MappingProxyType, TracebackType
from typing import Any

from ._config import Settings
from ._message import (
    MAX_RECIPIENTS,
    Addresses,
    AttachmentLike,
    Envelope,
    InlineLike,
    build_message,
    envelope_from_message,
    parse_address,
)
from ._replies import enhanced_code, refusals_retryable
from ._transport import Refused, SMTPTransport, Transport
from .errors import DeliveryError, RecipientsRefusedError

__all__ = ["Mailer", "SendResult"]

log = logging.getLogger("postbud")


@dataclass(frozen=True)
class SendResult:
    """What ``send()`` achieved.

    Attributes:
        message_id: The ``Message-ID`` header value, angle brackets included.
        accepted: Recipients the server accepted.
        refused: ``{address: (code, reply)}`` for recipients it refused. Codes 4xx are
            temporary (sending to those addresses again may work); 0 means the
            connection failed before that envelope got a reply.
    """

    message_id: str
    accepted: tuple[str, ...]
    refused: Mapping[str, tuple[int, str]] = field(default_factory=lambda: MappingProxyType({}))


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
        **kwargs: Settings by name (``username``, ``app_password``, ``host``...).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        /,
        *,
        transport: Transport | None = None,
        **kwargs: Any,
    ) -> None:
        if settings is None:
            settings = Settings.from_kwargs(**kwargs)
        elif kwargs:
            settings = settings.replace(**kwargs)
        self.settings = settings
        self._transport: Transport = transport or SMTPTransport(settings)
        self._lock = threading.Lock()
        self._warned_from: set[str] = set()
        self._counts = {"sent": 0}

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
        attachments: Iterable[AttachmentLike] | None = None,
        inline: Mapping[str, InlineLike] | None = None,
    ) -> SendResult:
        """Build one message and send it now (blocking, one attempt).

        Args:
            to, cc, bcc: An address or a list of them (``"Name <a@b.com>"`` works).
                Bcc recipients get the message but appear in no header.
            subject: One line.
            text, html: The bodies; both make a multipart/alternative message.
            reply_to: Where replies should go.
            sender: A ``From`` other than the account (Gmail rewrites it unless it is
                a verified "Send mail as" alias; postbud warns once).
            headers: Extra headers such as ``{"X-Job": "nightly"}``. ``Message-ID``
                may be given to keep one across retries.
            attachments: Paths, or ``(filename, bytes[, mimetype])`` tuples.
            inline: ``{content_id: path or bytes}`` for ``<img src="cid:...">``.

        Returns:
            A ``SendResult``; refused recipients are in ``.refused``.

        Raises:
            InvalidMessageError: Before connecting, naming the bad value.
            RecipientsRefusedError: When no recipient was accepted.
            DeliveryError: Any other failure, with ``retryable`` and ``retry_after``.
        """
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
        return self.deliver(envelope)

    def send_message(self, message: Message) -> SendResult:
        """Send a ready ``email.message.Message``/``EmailMessage`` now.

        Recipients are taken from To, Cc and Bcc; Bcc is stripped from what is sent;
        missing ``From`` (the account), ``Date`` and ``Message-ID`` are added to a copy.
        """
        envelope = envelope_from_message(message, mail_from=self.settings.username)
        if message["From"] is not None:
            self._warn_foreign_from(str(message["From"]))
        return self.deliver(envelope)

    def deliver(self, envelope: Envelope) -> SendResult:
        """Send a built envelope, split into transactions of at most 100 recipients."""
        accepted: list[str] = []
        refused: Refused = {}
        chunks = envelope.split(MAX_RECIPIENTS)
        for index, chunk in enumerate(chunks):
            try:
                done, bad = self._send_chunk(chunk)
            except RecipientsRefusedError as exc:
                if len(chunks) == 1:
                    raise
                done, bad = [], dict(exc.refused)  # other envelopes may still go through
            except DeliveryError as exc:
                if not accepted:
                    raise
                # Part of the message is out: report the rest instead of raising, so the
                # caller does not send it twice to those who have it. The connection or
                # the account failed, so the remaining envelopes are not tried.
                for rest in chunks[index:]:
                    for rcpt in rest.recipients:
                        refused[rcpt] = (exc.code or 0, str(exc))
                break
            accepted += done
            refused.update(bad)
        if not accepted:
            raise RecipientsRefusedError(
                f"No recipient accepted the message {envelope.message_id}.",
                refused=refused,
                code=next(iter(refused.values()))[0] if refused else None,
                retryable=refusals_retryable(refused),
            )
        self._count("sent")
        return SendResult(envelope.message_id, tuple(accepted), MappingProxyType(refused))

    def _send_chunk(self, chunk: Envelope) -> tuple[list[str], Refused]:
        accepted: list[str] = []
        refused: Refused = {}
        pending = chunk
        while True:
            try:
                bad = self._transport.send(pending)
            except RecipientsRefusedError as exc:
                if not accepted:
                    raise
                bad = dict(exc.refused)
            except DeliveryError as exc:
                if not accepted:
                    raise
                # The first part of this envelope is out: report the rest, do not raise
                # (a caller retrying the whole message would send it twice).
                refused.update({r: (exc.code or 0, str(exc)) for r in pending.recipients})
                return accepted, refused
            ok = [r for r in pending.recipients if r not in bad]
            accepted += ok
            # 452 4.5.3: the server takes fewer per transaction than we split to;
            # the overflow goes in the next transaction as long as each one progresses.
            over = [
                r
                for r, (code, text) in bad.items()
                if code == 452 and enhanced_code(text) == "4.5.3"
            ]
            refused.update({r: v for r, v in bad.items() if r not in over})
            if not over or not ok:
                refused.update({r: bad[r] for r in over})
                return accepted, refused
            pending = pending.with_recipients(over)

    # -- connection -------------------------------------------------------------------

    @contextmanager
    def connect(self) -> Iterator[Mailer]:
        """Open the connection now (failing early on bad credentials) for a batch.

        ``send()`` reuses one connection anyway; ``connect()`` adds an eager login
        and closes the connection at the end of the block::

            with mailer.connect():
                for user in users:
                    mailer.send(to=user.email, subject="News", text=body)
        """
        self._transport.open()
        try:
            yield self
        finally:
            self._transport.close()

    def close(self) -> None:
        """Close the connection. The Mailer may still be used; it reconnects."""
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

    def stats(self) -> dict[str, int]:
        """Counters since this Mailer was created: messages ``sent`` so far."""
        with self._lock:
            return dict(self._counts)

    # -- helpers ----------------------------------------------------------------------

    def _count(self, name: str) -> None:
        with self._lock:
            self._counts[name] += 1

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
