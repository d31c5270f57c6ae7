"""Where alert state lives: in the spool (shared by processes) or in memory.

With a spool, one tick is one write transaction: load the scope's state, add this
process's counts, decide, save, and insert the resulting mails into the outbox table
*in the same transaction*. Either all of it commits or none of it (the counts stay
in memory for the next tick), so a count is never lost or reported twice, and of
eight gunicorn workers exactly one sends each mail.
"""

from __future__ import annotations

import contextlib
import dataclasses
import heapq
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from postbud._message import Envelope
from postbud._outbox import Outbox

from ._policy import WINDOW, Counted, FpState, Mail, ScopeState, merge, next_due

__all__ = ["Decide", "MemoryStore", "SpoolStore", "Store"]

#: (scope, rows, first-occurrence details, force) -> mails; updates scope and rows.
Decide = Callable[[ScopeState, dict[str, FpState], dict[str, dict[str, Any]], bool], list[Mail]]
#: Queues an alert mail inside the store's spool transaction.
Enqueue = Callable[[Envelope], None]
#: What a store opens for one tick: (how to queue a mail in the spool transaction, or
#: None in memory; scope; rows; whether this handler is the only one of its scope
#: running; whether rows left out of ``rows`` hold digest counts).
_Open = tuple["Enqueue | None", ScopeState, dict[str, FpState], bool, bool]
#: Receives the mails inside the transaction (``enqueue``: into the spool, or None).
Commit = Callable[[list[Mail], "Enqueue | None"], None]

_COLUMNS = (
    "fingerprint, total, first_at, last_at, mailed_at, pending, pending_since, digest, "
    "digest_first, digest_last, detail"
)


def _idle(row: FpState, now: float, cooldown: float) -> bool:
    """Nothing to report and no cooldown running: the row can be forgotten."""
    cooling = row.mailed_at is not None and now < row.mailed_at + cooldown
    return row.pending == 0 and row.digest == 0 and not cooling


def _whole(scope: ScopeState, now: float, force: bool) -> bool:
    """Whether this tick sends the digest, and so needs every row that holds counts for
    it. Other ticks load only the rows with pending counts and those counted now: a
    storm of 100,000 fingerprints in an hour must not be copied and sorted every tick.
    """
    return force or (scope.window_start is not None and now >= scope.window_start + WINDOW)


#: A handler that has not looked at the spool for this long counts as gone.
PRESENCE = 15.0
#: Alert state untouched for this long is forgotten, whatever its scope: a handler
#: whose recipients or tag changed leaves its old scope behind (with masked tracebacks).
STALE = 7 * 86400.0


class Store:
    """Where one scope's alert state lives; subclasses say how it is opened and kept."""

    shared = False

    def run(
        self,
        deltas: dict[str, Counted],
        now: float,
        cooldown: float,
        decide: Decide,
        commit: Commit,
        *,
        force: bool = False,
        leaving: bool = False,
    ) -> float | None:
        """Merge ``deltas``, decide, commit; returns when to look again (or None).

        ``force`` (flush, close, exit) reports pending counts now, but on a shared
        spool only when no other process's handler of the scope is running: that one
        reports them in time, and eight gunicorn workers recycled one by one must not
        send eight digests. ``leaving``: this handler stops.
        """
        opened = self._state(deltas, now, cooldown, leaving, force)
        with opened as (enqueue, scope, rows, alone, digests_elsewhere):
            firsts = {k: merge(rows.setdefault(k, FpState(k)), d) for k, d in deltas.items()}
            commit(decide(scope, rows, firsts, force and alone), enqueue)
            return next_due(scope, rows, cooldown, digests=digests_elsewhere)

    def _state(
        self, deltas: dict[str, Counted], now: float, cooldown: float, leaving: bool, force: bool
    ) -> contextlib.AbstractContextManager[_Open]:
        """What to work on (see ``_Open``); kept only if the block succeeds."""
        raise NotImplementedError


class MemoryStore(Store):
    """Alert state of one process (``spool=None``).

    Rows are indexed by what they hold, so a tick copies only the rows it may change
    (pending counts, counted now, or all of them for a digest) and forgets cooled rows
    from a heap of cooldown ends instead of scanning every row.
    """

    def __init__(self) -> None:
        self._scope = ScopeState()
        self._rows: dict[str, FpState] = {}
        self._pending: set[str] = set()  # keys of rows with pending counts
        self._digests: set[str] = set()  # keys of rows with digest counts
        self._cooling: list[tuple[float, str]] = []  # (cooldown end, key), a heap
        self._lock = threading.RLock()

    @contextlib.contextmanager
    def _state(
        self, deltas: dict[str, Counted], now: float, cooldown: float, leaving: bool, force: bool
    ) -> Iterator[_Open]:
        with self._lock:
            self._forget_cooled(now, cooldown)
            # All or nothing, as in the spool: work on copies, keep them if commit worked.
            scope = dataclasses.replace(self._scope)
            whole = _whole(scope, now, force)
            keys = self._pending | deltas.keys()
            if whole:
                keys |= self._digests
            kept = self._rows
            rows = {k: dataclasses.replace(kept[k]) for k in keys if k in kept}
            yield None, scope, rows, True, not whole and bool(self._digests)
            self._scope = scope
            for key, row in rows.items():
                self._keep(key, row, kept.get(key), now, cooldown)

    def _keep(
        self, key: str, row: FpState, before: FpState | None, now: float, cooldown: float
    ) -> None:
        if _idle(row, now, cooldown):
            self._rows.pop(key, None)
            self._pending.discard(key)
            self._digests.discard(key)
            return
        self._rows[key] = row
        (self._pending.add if row.pending else self._pending.discard)(key)
        (self._digests.add if row.digest else self._digests.discard)(key)
        mailed = row.mailed_at
        if mailed is not None and (before is None or before.mailed_at != mailed):
            heapq.heappush(self._cooling, (mailed + cooldown, key))

    def _forget_cooled(self, now: float, cooldown: float) -> None:
        """Rows whose cooldown ended with nothing to report are forgotten."""
        while self._cooling and self._cooling[0][0] <= now:
            _, key = heapq.heappop(self._cooling)
            row = self._rows.get(key)
            if row is not None and _idle(row, now, cooldown):
                del self._rows[key]
                self._pending.discard(key)
                self._digests.discard(key)


class SpoolStore(Store):
    """Alert state in the spool database, shared by every process that uses it."""

    shared = True

    def __init__(self, outbox: Outbox, scope: str, owner: str) -> None:
        self.outbox = outbox
        self.scope = scope
        self.owner = owner
        self._purged = 0.0

    @contextlib.contextmanager
    def _state(
        self, deltas: dict[str, Counted], now: float, cooldown: float, leaving: bool, force: bool
    ) -> Iterator[_Open]:
        # The outbox's transaction turns sqlite3 errors (a full disk, a damaged file)
        # into QueueBusy, like a busy spool.
        with self.outbox.shared_transaction(wait=1.0) as (db, enqueue):
            alone = self._presence(db, leaving)
            scope = self._scope_state(db)
            whole = _whole(scope, now, force)
            rows = self._load(db, deltas, whole)
            elsewhere = not whole and self._digests_held(db)
            yield enqueue, scope, rows, alone, elsewhere
            self._save(db, scope, rows, now, cooldown)

    def _presence(self, db: sqlite3.Connection, leaving: bool) -> bool:
        """Note (or end) this handler's presence; whether it is the only one running.

        Inside the transaction, so of two handlers closing at once exactly one sees
        itself alone and reports what is pending.
        """
        wall = time.time()
        if leaving:
            db.execute(
                "DELETE FROM alert_presence WHERE scope = ? AND owner = ?", (self.scope, self.owner)
            )
        else:
            db.execute(
                "INSERT OR REPLACE INTO alert_presence VALUES (?, ?, ?)",
                (self.scope, self.owner, wall),
            )
        if wall - self._purged > 3600:
            self._purged = wall
            db.execute("DELETE FROM alert_presence WHERE seen_at < ?", (wall - PRESENCE,))
            db.execute("DELETE FROM alert_state WHERE last_at < ?", (wall - STALE,))
        others = db.execute(
            "SELECT COUNT(*) FROM alert_presence WHERE scope = ? AND owner != ? AND seen_at > ?",
            (self.scope, self.owner, wall - PRESENCE),
        ).fetchone()[0]
        return not others

    def _scope_state(self, db: sqlite3.Connection) -> ScopeState:
        found = db.execute(
            "SELECT window_start, window_mails FROM alert_scope WHERE scope = ?", (self.scope,)
        ).fetchone()
        return ScopeState(*found) if found else ScopeState()

    def _digests_held(self, db: sqlite3.Connection) -> bool:
        return bool(
            db.execute(
                "SELECT EXISTS (SELECT 1 FROM alert_state WHERE scope = ? AND digest > 0)",
                (self.scope,),
            ).fetchone()[0]
        )

    def _load(
        self, db: sqlite3.Connection, deltas: dict[str, Counted], whole: bool
    ) -> dict[str, FpState]:
        """The rows this tick may change (see ``_whole``)."""
        rows = {
            r.key: r
            for r in map(
                self._row,
                db.execute(
                    f"SELECT {_COLUMNS} FROM alert_state WHERE scope = ? "  # noqa: S608 - constant
                    "AND (pending > 0 OR (digest > 0 AND ?))",
                    (self.scope, whole),
                ),
            )
        }
        for key in deltas.keys() - rows.keys():
            got = db.execute(
                f"SELECT {_COLUMNS} FROM alert_state WHERE scope = ? AND fingerprint = ?",  # noqa: S608
                (self.scope, key),
            ).fetchone()
            if got is not None:
                rows[key] = self._row(got)
        return rows

    @staticmethod
    def _row(values: tuple[Any, ...]) -> FpState:
        return FpState(*values[:10], detail=json.loads(values[10]))  # type: ignore[misc]

    def _save(
        self,
        db: sqlite3.Connection,
        scope: ScopeState,
        rows: dict[str, FpState],
        now: float,
        cooldown: float,
    ) -> None:
        db.execute(
            "INSERT OR REPLACE INTO alert_scope VALUES (?, ?, ?)",
            (self.scope, scope.window_start, scope.window_mails),
        )
        for r in rows.values():
            if not r.changed:
                continue
            if _idle(r, now, cooldown):
                db.execute(
                    "DELETE FROM alert_state WHERE scope = ? AND fingerprint = ?",
                    (self.scope, r.key),
                )
                continue
            db.execute(
                f"INSERT OR REPLACE INTO alert_state (scope, {_COLUMNS}) "  # noqa: S608 - constant
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    self.scope,
                    r.key,
                    r.total,
                    r.first_at,
                    r.last_at,
                    r.mailed_at,
                    r.pending,
                    r.pending_since,
                    r.digest,
                    r.digest_first,
                    r.digest_last,
                    json.dumps(r.detail),
                ),
            )
        # Rows whose cooldown ended with nothing to report are forgotten.
        db.execute(
            "DELETE FROM alert_state WHERE scope = ? AND pending = 0 AND digest = 0 "
            "AND (mailed_at IS NULL OR mailed_at <= ?)",
            (self.scope, now - cooldown),
        )
