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
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from postbud._message import Envelope
from postbud._outbox import Outbox

from ._policy import Counted, FpState, Mail, ScopeState, merge, next_due

__all__ = ["Decide", "MemoryStore", "SpoolStore", "Store"]

#: (scope, rows, first-occurrence details, force) -> mails; updates scope and rows.
Decide = Callable[[ScopeState, dict[str, FpState], dict[str, dict[str, Any]], bool], list[Mail]]
#: Queues an alert mail inside the store's spool transaction.
Enqueue = Callable[[Envelope], None]
#: What a store opens for one tick: (how to queue a mail in the spool transaction, or
#: None in memory; scope; rows; whether this handler is the only one of its scope running).
_Open = tuple["Enqueue | None", ScopeState, dict[str, FpState], bool]
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
        with self._state(deltas, now, cooldown, leaving) as (enqueue, scope, rows, alone):
            firsts = {k: merge(rows.setdefault(k, FpState(k)), d) for k, d in deltas.items()}
            commit(decide(scope, rows, firsts, force and alone), enqueue)
            return next_due(scope, rows, cooldown)

    def _state(
        self, deltas: dict[str, Counted], now: float, cooldown: float, leaving: bool
    ) -> contextlib.AbstractContextManager[_Open]:
        """(db or None, scope, rows, alone) to work on; kept only if the block succeeds."""
        raise NotImplementedError


class MemoryStore(Store):
    """Alert state of one process (``spool=None``)."""

    def __init__(self) -> None:
        self._scope = ScopeState()
        self._rows: dict[str, FpState] = {}
        self._lock = threading.RLock()

    @contextlib.contextmanager
    def _state(
        self, deltas: dict[str, Counted], now: float, cooldown: float, leaving: bool
    ) -> Iterator[_Open]:
        with self._lock:
            # All or nothing, as in the spool: work on copies, keep them if commit worked.
            scope = dataclasses.replace(self._scope)
            rows = {k: dataclasses.replace(r) for k, r in self._rows.items()}
            yield None, scope, rows, True
            self._scope = scope
            self._rows = {k: r for k, r in rows.items() if not _idle(r, now, cooldown)}


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
        self, deltas: dict[str, Counted], now: float, cooldown: float, leaving: bool
    ) -> Iterator[_Open]:
        # The outbox's transaction turns sqlite3 errors (a full disk, a damaged file)
        # into QueueBusy, like a busy spool.
        with self.outbox.shared_transaction(wait=1.0) as (db, enqueue):
            alone = self._presence(db, leaving)
            scope, rows = self._load(db, deltas)
            yield enqueue, scope, rows, alone
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

    def _load(
        self, db: sqlite3.Connection, deltas: dict[str, Counted]
    ) -> tuple[ScopeState, dict[str, FpState]]:
        found = db.execute(
            "SELECT window_start, window_mails FROM alert_scope WHERE scope = ?", (self.scope,)
        ).fetchone()
        scope = ScopeState(*found) if found else ScopeState()
        rows = {
            r.key: r
            for r in map(
                self._row,
                db.execute(
                    f"SELECT {_COLUMNS} FROM alert_state WHERE scope = ? "  # noqa: S608 - constant
                    "AND (pending > 0 OR digest > 0)",
                    (self.scope,),
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
        return scope, rows

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
