"""The outbox's queue in memory: without a spool (``spool=None``) or when it is busy.

Bounded by ``queue_size``. When full, ``add`` drops the oldest normal-priority message
(possibly the new one); an alert is dropped only to make room for another alert.
"""

from __future__ import annotations

import threading

from ._message import Envelope
from ._spool import NORMAL, Item

__all__ = ["MemoryQueue"]


class MemoryQueue:
    """The queue without a spool (``spool=None``) or when the spool is busy: bounded.

    When full, ``add`` drops the oldest normal-priority item (an alert only if there is
    nothing else) and returns it, so the caller can count the drop.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: list[Item] = []
        self._in_flight: dict[int, Item] = {}
        self._seq = 0
        self._lock = threading.Lock()

    def add(self, envelope: Envelope, priority: int, now: float) -> Item | None:
        """Queue ``envelope``; return the item dropped to make room, if any."""
        with self._lock:
            self._seq += 1
            item = Item(self._seq, envelope, priority, now, next_try=now, on_disk=False)
            if len(self._items) < self.size:
                self._items.append(item)
                return None
            normal = [i for i in self._items if i.priority == NORMAL]
            if item.priority == NORMAL:
                normal.append(item)  # a normal message never pushes out an alert
            dropped = min(normal or self._items, key=lambda i: i.key)
            if dropped is not item:
                self._items.remove(dropped)
                self._items.append(item)
            return dropped

    def claim(self, now: float, *, alerts_only: bool = False) -> Item | None:
        """The next due item (alerts first, then oldest), now in flight."""
        with self._lock:
            due = [
                i
                for i in self._items
                if i.next_try <= now and (not alerts_only or i.priority < NORMAL)
            ]
            if not due:
                return None
            item = min(due, key=lambda i: (i.priority, i.key))
            self._items.remove(item)
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
            self._items.append(item)

    def last_seq(self) -> int:
        with self._lock:
            return self._seq

    def unsettled(self, upto: int, horizon: float) -> int:
        with self._lock:
            waiting = sum(1 for i in self._items if i.key <= upto and i.next_try <= horizon)
            return waiting + sum(1 for key in self._in_flight if key <= upto)

    def next_due(self) -> float | None:
        with self._lock:
            return min((i.next_try for i in self._items), default=None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items) + len(self._in_flight)

    def drain(self) -> list[Item]:
        """Take every waiting item out (to move it to the spool at close)."""
        with self._lock:
            items, self._items = self._items, []
            return items

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._in_flight.clear()
