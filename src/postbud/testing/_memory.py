"""MemoryTransport: a Transport that keeps envelopes in a list, for tests without sockets."""

from __future__ import annotations

import threading
from collections.abc import Mapping

from postbud._message import Envelope
from postbud._smtp import Refused, refusals_retryable
from postbud.errors import DeliveryError, RecipientsRefusedError

from ._records import ReceivedMessage

__all__ = ["MemoryTransport"]


class MemoryTransport:
    """Plug into ``Mailer(transport=MemoryTransport())`` to capture mail in memory.

    Args:
        refuse: ``{address: (code, reply)}`` for recipients to refuse.

    Attributes:
        messages: One ``ReceivedMessage`` per accepted envelope.
        opened: How many times ``open()`` was called (``Mailer.connect()``).
    """

    def __init__(self, refuse: Mapping[str, tuple[int, str]] | None = None) -> None:
        self.messages: list[ReceivedMessage] = []
        self.refuse = dict(refuse or {})
        self.opened = 0
        self.closed = 0
        self._failures: list[DeliveryError] = []
        self._lock = threading.Lock()

    def fail_next(self, error: DeliveryError) -> None:
        """Raise ``error`` from the next ``send``."""
        with self._lock:
            self._failures.append(error)

    def send(self, envelope: Envelope) -> Refused:
        with self._lock:
            if self._failures:
                raise self._failures.pop(0)
            refused = {r: self.refuse[r] for r in envelope.recipients if r in self.refuse}
            if len(refused) == len(envelope.recipients):
                raise RecipientsRefusedError(
                    "All recipients refused.",
                    refused=refused,
                    code=next(iter(refused.values()))[0],
                    retryable=refusals_retryable(refused),
                )
            accepted = tuple(r for r in envelope.recipients if r not in refused)
            self.messages.append(
                ReceivedMessage(
                    envelope.mail_from, accepted, envelope.data, smtputf8=envelope.smtputf8
                )
            )
            return refused

    def open(self) -> None:
        self.opened += 1

    def close(self) -> None:
        self.closed += 1
