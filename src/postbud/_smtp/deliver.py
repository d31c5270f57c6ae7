"""One message through a transport: recipients in envelopes Gmail accepts, one result.

Shared by ``Mailer.send()`` (the caller's connection) and the outbox worker (its own):
at most 100 recipients per transaction, the overflow of a ``452 4.5.3`` in the next
one, and a ``SendResult`` as soon as anybody got the message, so that nobody who has
it gets it twice when the rest is retried.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from postbud._message import MAX_RECIPIENTS, Envelope
from postbud.errors import DeliveryError, RecipientsRefusedError

from .replies import enhanced_code, refusals_retryable
from .transport import Refused, Transport

__all__ = ["SendResult", "deliver"]


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


def deliver(
    transport: Transport, envelope: Envelope, before_each: Callable[[], None] | None = None
) -> SendResult:
    """Send ``envelope`` in transactions of at most 100 recipients.

    Raises the first envelope's ``DeliveryError`` when nobody got the message; once
    somebody did, failures are reported in ``SendResult.refused`` instead.
    ``before_each`` runs before every transaction (the outbox renews its lease there;
    raising from it stops the delivery).
    """
    accepted: list[str] = []
    refused: Refused = {}
    chunks = envelope.split(MAX_RECIPIENTS)
    for index, chunk in enumerate(chunks):
        try:
            _send_chunk(transport, chunk, accepted, refused, before_each)
        except RecipientsRefusedError as exc:
            if len(chunks) == 1:
                raise
            refused.update(exc.refused)  # other envelopes may still go through
        except DeliveryError as exc:
            if not accepted:
                raise
            # The connection or the account failed: the remaining envelopes are not
            # tried, and are reported instead of raised (see _report_rest).
            _report_rest([r for rest in chunks[index:] for r in rest.recipients], refused, exc)
            break
    if not accepted:
        raise RecipientsRefusedError(
            f"No recipient accepted the message {envelope.message_id}.",
            refused=refused,
            code=next(iter(refused.values()))[0] if refused else None,
            retryable=refusals_retryable(refused),
        )
    return SendResult(envelope.message_id, tuple(accepted), MappingProxyType(refused))


def _send_chunk(
    transport: Transport,
    chunk: Envelope,
    accepted: list[str],
    refused: Refused,
    before_each: Callable[[], None] | None,
) -> None:
    first = len(accepted)
    pending = chunk
    while True:
        if before_each is not None:
            before_each()
        try:
            bad = transport.send(pending)
        except RecipientsRefusedError as exc:
            if len(accepted) == first:
                raise
            bad = dict(exc.refused)
        except DeliveryError as exc:
            if len(accepted) == first:
                raise
            _report_rest(pending.recipients, refused, exc)
            return
        accepted += [r for r in pending.recipients if r not in bad]
        # 452 4.5.3: the server takes fewer per transaction than we split to; the
        # overflow goes in the next transaction as long as each one progresses.
        over = [
            r for r, (code, text) in bad.items() if code == 452 and enhanced_code(text) == "4.5.3"
        ]
        refused.update({r: v for r, v in bad.items() if r not in over})
        if not over or len(over) == len(pending.recipients):
            refused.update({r: bad[r] for r in over})
            return
        pending = pending.with_recipients(over)


def _report_rest(recipients: Iterable[str], refused: Refused, exc: DeliveryError) -> None:
    # Part of the message is out: the rest is reported, not raised, so that a caller
    # retrying "the message" does not send it twice to those who have it.
    for rcpt in recipients:
        refused[rcpt] = (exc.code or 0, str(exc))
