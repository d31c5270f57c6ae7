"""What a process holds of the fleet's alert state while Redis is away.

While Redis is unreachable the ticker counts and mails in this process's memory
(``LocalStore``, seeded with the cooldowns the process last saw on Redis, so that an
error it knew was mailed is not mailed as new). What it holds that the fleet's state
does not have yet is a ``Carry``: the counts no mail reported and the times it mailed,
which the next write to Redis merges (``absorb``), so no count is reported twice and
no error is mailed twice as "first".
"""

from __future__ import annotations

import dataclasses
import heapq
import math
from dataclasses import dataclass, field
from typing import Any

from ._policy import WINDOW, Counted, FpState, merge
from ._store import MemoryStore

__all__ = ["Carry", "LocalStore", "absorb", "as_carry", "combined"]


@dataclass
class Carry:
    """What this process holds that the fleet's state on Redis does not have yet."""

    rows: dict[str, FpState] = field(default_factory=dict)  # unreported counts, last mails
    firsts: dict[str, dict[str, Any]] = field(default_factory=dict)  # never-reported firsts
    mails: int = 0  # first alerts and follow-ups sent in this window, outside Redis
    window_start: float | None = None


def absorb(row: FpState, held: FpState) -> None:
    """Add to ``row`` what ``held`` (kept apart from it) has: its occurrences, the counts
    no mail reported (digest counts too: they are reported with the row's next mail),
    and the time it was last mailed (the later wins)."""
    if held.total:
        if row.total == 0:
            row.first_at = held.first_at
        row.total += held.total
        if held.last_at >= row.last_at:
            row.detail = held.detail
        row.last_at = max(row.last_at, held.last_at)
    unreported = held.pending + held.digest
    if unreported:
        row.pending += unreported
        times = (row.pending_since, held.pending_since, held.digest_first)
        since = [t for t in times if t is not None]
        row.pending_since = min(since) if since else None
    if held.mailed_at is not None and (row.mailed_at is None or held.mailed_at > row.mailed_at):
        row.mailed_at = held.mailed_at
    row.changed = True


def combined(*carries: Carry | None) -> Carry | None:
    """One carry holding what all of ``carries`` hold (copies: they are left alone)."""
    found = [c for c in carries if c is not None]
    if not found:
        return None
    out = Carry()
    for carry in found:
        for key, held in carry.rows.items():
            if key in out.rows:
                absorb(out.rows[key], held)
            else:
                out.rows[key] = dataclasses.replace(held)
        for key, first in carry.firsts.items():
            out.firsts.setdefault(key, first)
        out.mails += carry.mails
        if carry.window_start is not None:
            out.window_start = min(out.window_start or math.inf, carry.window_start)
    return out


def as_carry(deltas: dict[str, Counted]) -> Carry:
    """Counts of a tick as a carry (their first occurrences kept for a first alert)."""
    carry = Carry()
    for key, counted in deltas.items():
        row = carry.rows[key] = FpState(key)
        carry.firsts[key] = merge(row, counted)
    return carry


class LocalStore(MemoryStore):
    """This process's alert state while Redis is unreachable: it counts and mails alone.

    Seeded with the cooldowns the process last saw on Redis; ``carry`` is what goes back
    to Redis once it answers.
    """

    def __init__(self, marks: dict[str, float], cooldown: float) -> None:
        super().__init__()
        for key, mailed in marks.items():
            self._rows[key] = FpState(key, mailed_at=mailed)
            heapq.heappush(self._cooling, (mailed + cooldown, key))

    def carry(self, now: float) -> Carry:
        """Copies of every row (counts and last mails) and the mails of this window."""
        with self._lock:
            rows = {k: dataclasses.replace(r) for k, r in self._rows.items()}
            start = self._scope.window_start
            open_window = start is not None and now < start + WINDOW
            mails = self._scope.window_mails if open_window else 0
            return Carry(rows, {}, mails, start if open_window else None)

    def absorb(self, carry: Carry | None, now: float, cooldown: float) -> None:
        """Take over ``carry`` (a closing handler reports it from here)."""
        if carry is None:
            return
        with self._lock:
            for key, held in carry.rows.items():
                before = self._rows.get(key)
                row = dataclasses.replace(before) if before is not None else FpState(key)
                absorb(row, held)
                self._keep(key, row, before, now, cooldown)
