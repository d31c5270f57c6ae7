"""What both queues (memory and disk) are: the ``Queue`` protocol, ``Item`` and ``Priority``.

The outbox and its worker talk to a queue only through this protocol, so "in memory
or in the spool" is decided once, when a message is stored, not by branches in the
delivery code. The disk queue (``spool.DiskSpool``) survives ``kill -9``; the memory
queue (``memory.MemoryQueue``) is bounded by ``queue_size`` and takes what the spool
cannot (``spool=None``, a busy or unwritable file).
"""

from __future__ import annotations

import enum
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from postbud._message import Envelope

__all__ = ["Item", "Priority", "PriorityName", "Queue", "QueueBusy", "Record"]

#: How callers spell a priority (``submit(priority="alert")``).
PriorityName = Literal["normal", "alert"]


class Priority(enum.IntEnum):
    """Queue order: alerts before normal mail (the spool stores the number)."""

    ALERT = 0
    NORMAL = 1

    @classmethod
    def named(cls, name: str) -> Priority:
        """``"alert"`` or ``"normal"`` as a Priority; ValueError for anything else."""
        if name == "alert":
            return cls.ALERT
        if name == "normal":
            return cls.NORMAL
        raise ValueError(f"priority must be 'normal' or 'alert', got {name!r}.")


class QueueBusy(Exception):
    """The spool could not be written within the time allowed (or not at all)."""


#: Counts a delivery in the quota ledger; gets the spool transaction that removes the
#: sent row (one commit for both), or None for a memory item.
Record = Callable[["sqlite3.Connection | None"], None]


@dataclass(slots=True)
class Item:
    """One queued message as the worker sees it."""

    key: int  # row id (disk) or sequence number (memory)
    envelope: Envelope
    priority: int
    created: float
    attempts: int = 0
    next_try: float = 0.0
    on_disk: bool = True

    def __lt__(self, other: Item) -> bool:
        """Queue order: alerts first, then the oldest."""
        return (self.priority, self.key) < (other.priority, other.key)


class Queue(Protocol):
    """A queue of messages for one account; the worker settles what it claims."""

    def add(
        self,
        envelope: Envelope,
        priority: int,
        created: float,
        *,
        next_try: float | None = None,
        attempts: int = 0,
    ) -> Item | None:
        """Queue a message; return the item dropped to make room (memory), if any.

        Raises ``QueueBusy`` when the message could not be stored (disk).
        """
        ...

    def claim(self, now: float, *, alerts_only: bool = False) -> Item | None:
        """The next due item (alerts first, then oldest), now in flight."""
        ...

    def renew(self, item: Item, now: float) -> bool:
        """Before a further transaction of ``item``: False if it is no longer ours."""
        ...

    def sent(self, item: Item, record: Record) -> None:
        """``item`` was delivered: forget it, and run ``record`` in the same commit."""
        ...

    def retry(
        self,
        item: Item,
        recipients: tuple[str, ...],
        attempts: int,
        next_try: float,
        code: int | None,
        error: str,
    ) -> None:
        """Try ``item`` again at ``next_try``, for ``recipients`` only."""
        ...

    def dead(self, item: Item, code: int | None, error: str, hint: str | None, now: float) -> None:
        """Give up on ``item``, keeping the reason (disk: as a dead letter)."""
        ...

    def dead_copy(
        self,
        envelope: Envelope,
        priority: int,
        created: float,
        now: float,
        code: int,
        error: str,
        attempts: int = 1,
    ) -> None:
        """Store a dead letter for recipients of a sent message refused for good."""
        ...

    def expire(self, now: float, max_age: float, reason: str) -> int:
        """Dead-letter the waiting messages older than ``max_age`` (not in flight),
        with ``reason``; how many."""
        ...

    def pending(self) -> int:
        """Messages waiting or in flight."""
        ...

    def next_due(self) -> float | None:
        """When the earliest waiting message may be tried (None: nothing waits)."""
        ...

    def last_key(self) -> int:
        """The key of the newest message (for ``flush``: what was queued before)."""
        ...

    def unsettled(self, upto: int, horizon: float) -> int:
        """Messages up to key ``upto`` not settled and due before ``horizon``."""
        ...
