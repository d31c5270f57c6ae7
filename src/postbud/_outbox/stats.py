"""What ``Mailer.stats()`` reports: counters since the Mailer was made, as a TypedDict."""

from __future__ import annotations

import threading
from typing import TypedDict

from postbud import _fork

__all__ = ["Counters", "Stats"]


class Stats(TypedDict):
    """``Mailer.stats()``: counters since the Mailer was created, the queue and quota now."""

    submitted: int
    sent: int
    retried: int
    held: int
    dead: int
    dropped: int
    spilled: int
    queued: int
    quota_used: int


class Counters:
    """Thread-safe counters for ``Mailer.stats()``."""

    NAMES = ("submitted", "sent", "retried", "held", "dead", "dropped", "spilled")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values = dict.fromkeys(self.NAMES, 0)
        _fork.register(self)

    def _after_fork(self) -> None:
        self._lock = threading.Lock()

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._values[name] += n

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._values)
