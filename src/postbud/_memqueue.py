"""The outbox's queue in memory: without a spool (``spool=None``) or when it is busy.

Bounded by ``queue_size``. When full, ``add`` drops the oldest normal-priority message
(possibly the new one); an alert is dropped only to make room for another alert.
"""

from __future__ import annotations

import heapq
import threading

from ._message import Envelope
from ._spool import NORMAL, Item

__all__ = ["MemoryQueue"]


class MemoryQueue:
    """The queue without a spool (``spool=None``) or when the spool is busy: bounded.

    Messages due now wait in a heap ordered by (priority, age), so ``add`` and
    ``claim`` stay O(log n) however long the queue gets (the caller's ``submit`` and
    the worker's ``claim`` share its lock); retries not yet due wait in a short list.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._ready: list[tuple[int, int, Item]] = []  # heap: (priority, key, item)
        self._later: list[Item] = []  # retries whose time has not come
        self._in_flight: dict[int, Item] = {}
        self._seq = 0
        self._lock = threading.Lock()

    def add(self, envelope: Envelope, priority: int, now: float) -> Item | None:
        """Queue ``envelope``; return the item dropped to make room, if any."""
        with self._lock:
            self._seq += 1
            item = Item(self._seq, envelope, priority, now, next_try=now, on_disk=False)
            if len(self._ready) + len(self._later) < self.size:
                heapq.heappush(self._ready, (priority, item.key, item))
                return None
            # Full (rare): drop the oldest normal message, the new one included; an
            # alert only goes to make room for another alert.
            waiting = [entry[2] for entry in self._ready] + self._later
            normal = [i for i in waiting if i.priority == NORMAL]
            if item.priority == NORMAL:
                normal.append(item)
            dropped = min(normal or waiting, key=lambda i: i.key)
            if dropped is not item:
                self._ready = [e for e in self._ready if e[2] is not dropped]
                self._later = [i for i in self._later if i is not dropped]
                heapq.heapify(self._ready)
                heapq.heappush(self._ready, (priority, item.key, item))
            return dropped

    def claim(self, now: float, *, alerts_only: bool = False) -> Item | None:
        """The next due item (alerts first, then oldest), now in flight."""
        with self._lock:
            if self._later:
                due = [i for i in self._later if i.next_try <= now]
                if due:
                    self._later = [i for i in self._later if i.next_try > now]
                    for i in due:
                        heapq.heappush(self._ready, (i.priority, i.key, i))
            if not self._ready or (alerts_only and self._ready[0][0] >= NORMAL):
                return None
            item = heapq.heappop(self._ready)[2]
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

    def last_seq(self) -> int:
        with self._lock:
            return self._seq

    def unsettled(self, upto: int, horizon: float) -> int:
        with self._lock:
            ready = sum(1 for _, key, _ in self._ready if key <= upto)
            later = sum(1 for i in self._later if i.key <= upto and i.next_try <= horizon)
            return ready + later + sum(1 for key in self._in_flight if key <= upto)

    def next_due(self) -> float | None:
        with self._lock:
            if self._ready:  # due already
                return self._ready[0][2].next_try
            return min((i.next_try for i in self._later), default=None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._ready) + len(self._later) + len(self._in_flight)

    def drain(self) -> list[Item]:
        """Take every waiting item out (to move it to the spool at close)."""
        with self._lock:
            items = [entry[2] for entry in self._ready] + self._later
            self._ready, self._later = [], []
            return items

    def clear(self) -> None:
        with self._lock:
            self._ready, self._later = [], []
            self._in_flight.clear()
