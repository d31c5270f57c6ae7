"""The outbox's queue in memory: without a spool (``spool=None``) or when it is busy.

Bounded by ``queue_size``. When full, ``add`` drops the oldest normal-priority message
(possibly the new one); an alert is dropped only to make room for another alert.
"""

from __future__ import annotations

import heapq
import threading
from collections import deque

from postbud._message import Envelope

from .queue import Item, Priority, Record

ALERT, NORMAL = Priority.ALERT, Priority.NORMAL

__all__ = ["MemoryQueue"]


class _Fifo:
    """Fresh messages of one priority, oldest first.

    Parallel deques of plain values (ints, floats, strings, bytes, the recipients
    tuple that messages to the same people share) rather than one of ``Item``s or
    ``Envelope``s: a queued message then keeps no object alive that the garbage
    collector tracks. While a slow server lets the queue grow, the collections such
    objects would trigger run in whichever thread allocates: the caller's ``submit``.
    The worker's ``Item`` is made when it claims the message.
    """

    FIELDS = ("keys", "created", "senders", "recipients", "data", "ids", "flags")

    def __init__(self) -> None:
        self.keys: deque[int] = deque()
        self.created: deque[float] = deque()
        self.senders: deque[str] = deque()
        self.recipients: deque[tuple[str, ...]] = deque()
        self.data: deque[bytes] = deque()
        self.ids: deque[str] = deque()
        self.flags: deque[int] = deque()  # 1: smtputf8, 2: eightbit

    def append(self, key: int, e: Envelope, created: float) -> None:
        self.keys.append(key)
        self.created.append(created)
        self.senders.append(e.mail_from)
        self.recipients.append(e.recipients)
        self.data.append(e.data)
        self.ids.append(e.message_id)
        self.flags.append(e.smtputf8 | e.eightbit << 1)

    def pop(self, priority: int) -> Item:
        """The oldest message, as the item the worker handles."""
        return self._item(priority, *(getattr(self, f).popleft() for f in self.FIELDS))

    def items(self, priority: int) -> list[Item]:
        columns = [getattr(self, f) for f in self.FIELDS]
        return [self._item(priority, *row) for row in zip(*columns, strict=True)]

    @staticmethod
    def _item(
        priority: int,
        key: int,
        created: float,
        sender: str,
        recipients: tuple[str, ...],
        data: bytes,
        message_id: str,
        flags: int,
    ) -> Item:
        envelope = Envelope(sender, recipients, data, message_id, bool(flags & 1), bool(flags & 2))
        return Item(key, envelope, priority, created, next_try=created, on_disk=False)

    def clear(self) -> None:
        for name in self.FIELDS:
            getattr(self, name).clear()

    def __len__(self) -> int:
        return len(self.keys)


class MemoryQueue:
    """The queue without a spool (``spool=None``) or when the spool is busy: bounded.

    Fresh messages wait in one FIFO per priority (their keys grow with time, so the
    head of each is its oldest); retries wait as items, in a heap once due (ordered by
    priority, then age) and in a short list before. ``claim`` takes the smallest
    (priority, key) of the heads, so alerts go first, then the oldest. ``add`` and
    ``claim`` are O(log n) however long the queue (the caller's ``submit`` and the
    worker's ``claim`` share its lock).
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._fresh: dict[int, _Fifo] = {ALERT: _Fifo(), NORMAL: _Fifo()}
        self._due: list[Item] = []  # heap of retries whose time has come
        self._later: list[Item] = []  # retries whose time has not come
        self._in_flight: dict[int, Item] = {}
        self._seq = 0
        self._lock = threading.Lock()

    def add(
        self,
        envelope: Envelope,
        priority: int,
        created: float,
        *,
        next_try: float | None = None,
        attempts: int = 0,
    ) -> Item | None:
        """Queue ``envelope``; return the item dropped to make room, if any.

        ``next_try`` and ``attempts`` carry a retry's state over.
        """
        now = created
        with self._lock:
            self._seq += 1
            if next_try is not None or attempts:  # a retry's state carried over
                due = created if next_try is None else next_try
                self._later.append(
                    Item(self._seq, envelope, priority, created, attempts, due, on_disk=False)
                )
                return None
            if self._waiting() < self.size:
                self._fresh[priority].append(self._seq, envelope, now)
                return None
            # Full (rare): drop the oldest normal message, the new one included; an
            # alert only goes to make room for another alert.
            item = Item(self._seq, envelope, priority, now, next_try=now, on_disk=False)
            fresh, retries = self._fresh_items(), self._due + self._later
            waiting = fresh + retries
            normal = [i for i in waiting if i.priority == NORMAL]
            if item.priority == NORMAL:
                normal.append(item)
            dropped = min(normal or waiting, key=lambda i: i.key)
            if dropped is not item:
                keep = [i for i in fresh if i is not dropped] + [item]
                self._set(keep, [i for i in retries if i is not dropped])
            return dropped

    def claim(self, now: float, *, alerts_only: bool = False) -> Item | None:
        """The next due item (alerts first, then oldest), now in flight."""
        with self._lock:
            if self._later:
                due = [i for i in self._later if i.next_try <= now]
                if due:
                    self._later = [i for i in self._later if i.next_try > now]
                    for i in due:
                        heapq.heappush(self._due, i)
            heads = [(p, f.keys[0]) for p, f in self._fresh.items() if f]
            if self._due:
                heads.append((self._due[0].priority, self._due[0].key))
            if not heads:
                return None
            priority, key = min(heads)
            if alerts_only and priority != ALERT:
                return None
            fifo = self._fresh[priority]
            fresh = bool(fifo) and fifo.keys[0] == key
            item = fifo.pop(priority) if fresh else heapq.heappop(self._due)
            self._in_flight[item.key] = item
            return item

    def done(self, item: Item) -> None:
        """The worker settled ``item`` (sent or dead)."""
        with self._lock:
            self._in_flight.pop(item.key, None)

    def put_back(self, item: Item) -> None:
        """Queue ``item`` again (for a retry at ``item.next_try``)."""
        with self._lock:
            self._in_flight.pop(item.key, None)
            self._later.append(item)

    # -- the rest of the Queue protocol ---------------------------------------------

    def renew(self, item: Item, now: float) -> bool:
        """A memory item is never taken over by another process."""
        return True

    def sent(self, item: Item, record: Record) -> None:
        """``item`` was delivered: count it (``record``) and forget it."""
        record(None)
        self.done(item)

    def retry(
        self,
        item: Item,
        recipients: tuple[str, ...],
        attempts: int,
        next_try: float,
        code: int | None,
        error: str,
    ) -> None:
        """Wait until ``next_try``, for ``recipients`` only."""
        item.envelope = item.envelope.with_recipients(recipients)
        item.attempts, item.next_try = attempts, next_try
        self.put_back(item)

    def dead(self, item: Item, code: int | None, error: str, hint: str | None, now: float) -> None:
        """Give up on ``item`` (memory keeps no dead letters; the worker logged why)."""
        self.done(item)

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
        """Memory keeps no dead letters (the worker logged the refusal)."""

    def expire(self, now: float, max_age: float, reason: str) -> int:
        """Drop what waits longer than ``max_age`` (the worker logs why)."""
        with self._lock:
            fresh, retries = self._fresh_items(), self._due + self._later
            keep_fresh = [i for i in fresh if now - i.created <= max_age]
            keep_retries = [i for i in retries if now - i.created <= max_age]
            gone = len(fresh) + len(retries) - len(keep_fresh) - len(keep_retries)
            if gone:
                self._set(keep_fresh, keep_retries)
            return gone

    def pending(self) -> int:
        """Messages waiting or in flight."""
        return len(self)

    def last_key(self) -> int:
        """The newest sequence number (for ``flush``)."""
        with self._lock:
            return self._seq

    def unsettled(self, upto: int, horizon: float) -> int:
        with self._lock:
            fresh = sum(1 for f in self._fresh.values() for key in f.keys if key <= upto)
            due = sum(1 for i in self._due if i.key <= upto)
            later = sum(1 for i in self._later if i.key <= upto and i.next_try <= horizon)
            return fresh + due + later + sum(1 for key in self._in_flight if key <= upto)

    def next_due(self) -> float | None:
        with self._lock:
            ready = [f.created[0] for f in self._fresh.values() if f]
            ready += [i.next_try for i in self._due]
            if ready:  # due already
                return min(ready)
            return min((i.next_try for i in self._later), default=None)

    def __len__(self) -> int:
        with self._lock:
            return self._waiting() + len(self._in_flight)

    def drain(self) -> list[Item]:
        """Take every waiting item out (to move it to the spool at close)."""
        with self._lock:
            items = self._fresh_items() + self._due + self._later
            self._set([], [])
            return items

    def clear(self) -> None:
        with self._lock:
            self._set([], [])
            self._in_flight.clear()

    # -- under the lock ---------------------------------------------------------------

    def _waiting(self) -> int:
        return sum(map(len, self._fresh.values())) + len(self._due) + len(self._later)

    def _fresh_items(self) -> list[Item]:
        return [i for p, f in self._fresh.items() for i in f.items(p)]

    def _set(self, fresh: list[Item], retries: list[Item]) -> None:
        """Replace what waits (the rare full-queue case, drain, clear); ``fresh`` in
        order of key. Retries wait in the list until ``claim`` finds them due."""
        for fifo in self._fresh.values():
            fifo.clear()
        for item in fresh:
            self._fresh[item.priority].append(item.key, item.envelope, item.created)
        self._due, self._later = [], retries
