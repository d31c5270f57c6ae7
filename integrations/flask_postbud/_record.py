"""``record_messages()``: who records, and what a recorded message holds.

Flask-Mail records through a blinker signal fired after each send; this keeps the habit
(every app of the extension, every thread, also when sending is not suppressed) without
a signal: the extension object holds the open recorders, and after each send or submit
one ``Message`` is added to each, with what postbud built (its bytes and Message-ID).
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from ._message import AddressLike, Attachment, Message

__all__ = ["Recorder"]


class Recorder:
    """The open ``record_messages()`` blocks of one extension object."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._outboxes: list[list[Message]] = []

    @contextmanager
    def record(self) -> Iterator[list[Message]]:
        """Collect what is sent while the block runs."""
        outbox: list[Message] = []
        with self._lock:
            self._outboxes.append(outbox)
        try:
            yield outbox
        finally:
            with self._lock:
                # By identity: two empty lists are equal, and list.remove would take either.
                self._outboxes = [o for o in self._outboxes if o is not outbox]

    def add(
        self, source: Message | Mapping[str, Any], data: bytes, message_id: str, sender: str
    ) -> None:
        """Record one mail in every open block (nothing is built when none is open)."""
        with self._lock:
            outboxes = list(self._outboxes)
        if outboxes:
            item = recorded(source, data, message_id, sender)
            for outbox in outboxes:
                outbox.append(item)


def recorded(
    source: Message | Mapping[str, Any], envelope_data: bytes, message_id: str, sender: str
) -> Message:
    """What ``record_messages()`` collects: a copy of the app's ``Message`` (or one made
    from ``send()``'s keyword arguments), with the sender it went from, its Message-ID
    and the bytes that were (or would have been) sent."""
    if isinstance(source, Message):
        item = copy.copy(source)
        item.alts = dict(source.alts)
    else:
        item = Message(
            subject=source["subject"],
            recipients=_as_list(source["to"]),
            body=source["text"],
            html=source["html"],
            cc=_as_list(source["cc"]),
            bcc=_as_list(source["bcc"]),
            reply_to=source["reply_to"] if isinstance(source["reply_to"], str) else None,
            extra_headers=source["headers"],
        )
    item.data = envelope_data
    item.msgId = message_id
    item.sender = item.sender or sender
    if not isinstance(source, Message):
        # The attachments as sent (postbud read the files and chose the types).
        item.attachments = [
            Attachment(part.get_filename(), part.get_content_type(), _payload(part))
            for part in item.message.iter_attachments()
        ]
    return item


def _as_list(value: Any) -> list[AddressLike]:
    if value is None:
        return []
    return [value] if isinstance(value, (str, tuple)) else list(value)


def _payload(part: Any) -> bytes:
    payload = part.get_payload(decode=True)
    return payload if isinstance(payload, bytes) else b""
