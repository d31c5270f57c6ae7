"""One message through a transport: recipients in envelopes Gmail accepts, one result.

Shared by ``Mailer.send()`` (the caller's connection) and the outbox worker (its own):
at most 100 recipients per transaction, the overflow of a ``452 4.5.3`` in the next
one, and a ``SendResult`` as soon as anybody got the message, so that nobody who has
it gets it twice when the rest is retried.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from ._message import MAX_RECIPIENTS, Envelope
from ._replies import enhanced_code, refusals_retryable
from ._transport import Refused, Transport
from .errors import DeliveryError, RecipientsRefusedError

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


def deliver(transport: Transport, envelope: Envelope) -> SendResult:
    """Send ``envelope`` in transactions of at most 100 recipients.

    Raises the first envelope's ``DeliveryError`` when nobody got the message; once
    somebody did, failures are reported in ``SendResult.refused`` instead.
    """
    accepted: list[str] = []
    refused: Refused = {}
    chunks = envelope.split(MAX_RECIPIENTS)
    for index, chunk in enumerate(chunks):
        try:
            done, bad = _send_chunk(transport, chunk)
        except RecipientsRefusedError as exc:
            if len(chunks) == 1:
                raise
            done, bad = [], dict(exc.refused)  # other envelopes may still go through
        except DeliveryError as exc:
            if not accepted:
                raise
            # Part of the message is out: report the rest instead of raising, so the
            # caller does not send it twice to those who have it. The connection or the
            # account failed, so the remaining envelopes are not tried.
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
    return SendResult(envelope.message_id, tuple(accepted), MappingProxyType(refused))


def _send_chunk(transport: Transport, chunk: Envelope) -> tuple[list[str], Refused]:
    accepted: list[str] = []
    refused: Refused = {}
    pending = chunk
    while True:
        try:
            bad = transport.send(pending)
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
        # 452 4.5.3: the server takes fewer per transaction than we split to; the
        # overflow goes in the next transaction as long as each one progresses.
        over = [
            r for r, (code, text) in bad.items() if code == 452 and enhanced_code(text) == "4.5.3"
        ]
        refused.update({r: v for r, v in bad.items() if r not in over})
        if not over or not ok:
            refused.update({r: bad[r] for r in over})
            return accepted, refused
        pending = pending.with_recipients(over)
