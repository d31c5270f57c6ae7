"""The disk queue: the outbox rows of one account in the spool database.

With a spool the database *is* the queue: ``submit`` writes the message in one
statement before it returns, the worker claims a row with a lease (another process
takes it over once the lease expires, so a killed process frees its claims), deletes
it once Gmail accepted it, and keeps dead letters for 30 days. Rows belong to one
account: a Mailer only ever sees its own account's rows, whatever host it now uses.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time

from postbud import _fork
from postbud._message import Envelope

from .db import SETTLE_WAIT, Database
from .queue import Item, Priority, QueueBusy, Record

__all__ = ["DEAD_LETTER_DAYS", "MAX_SPOOL_BYTES", "DiskSpool"]

DEAD_LETTER_DAYS = 30
#: Beyond this many bytes of mail in the file, dead letters are evicted oldest first and
#: new messages go to memory until the queue shrinks.
MAX_SPOOL_BYTES = 512 * 1024 * 1024
_INSERT_COLUMNS = (
    "account, message_id, mail_from, recipients, data, smtputf8, eightbit, priority, created,"
    " next_try, attempts"
)
# Built from constants only (no value is ever formatted into SQL).
_INSERT = f"INSERT INTO outbox ({_INSERT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"  # noqa: S608
#: The same, only if the pages in use plus the message's size stay within the cap (the
#: last two parameters); nothing is inserted otherwise.
_INSERT_IF_ROOM = (
    f"INSERT INTO outbox ({_INSERT_COLUMNS}) SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ? WHERE "  # noqa: S608
    "(SELECT (c.page_count - f.freelist_count) * s.page_size FROM pragma_page_count() c, "
    "pragma_freelist_count() f, pragma_page_size() s) + ? <= ?"
)
#: Pragmas as table-valued functions came with SQLite 3.16; Python may be built with an
#: older one, which then takes the transaction of several statements.
_ONE_STATEMENT = sqlite3.sqlite_version_info >= (3, 16, 0)


class DiskSpool:
    """The queue of one account in the spool database (``queue.Queue``). Thread-safe.

    Args:
        database: The spool file (shared with the ledger and the alert state).
        account: The sending account; only its rows are seen.
        lease: Seconds a claimed row stays ours (two attempt deadlines): another
            process takes it over once it expires.
    """

    def __init__(self, database: Database, account: str, *, lease: float = 60.0) -> None:
        self.database = database
        self.path = database.path
        self.account = account.lower()
        self.lease = lease
        self._owner = _owner(self)
        self._commits = 0
        self._wal_bytes, self._wal_read_at = 0, -1.0
        _fork.register(self)

    def _after_fork(self) -> None:
        self._owner = _owner(self)  # the parent's leases are the parent's

    # -- the queue -----------------------------------------------------------------------

    def add(
        self,
        envelope: Envelope,
        priority: int,
        created: float,
        *,
        next_try: float | None = None,
        attempts: int = 0,
    ) -> Item | None:
        """Store one message (one statement, ~50 ms at most). Raises QueueBusy.

        ``next_try`` and ``attempts`` carry a retry's state over (a message moved from
        memory at close). Never drops anything: returns None.
        """
        stored = False
        due = created if next_try is None else next_try
        values = self._values(envelope, priority, created, due, attempts)
        try:
            if _ONE_STATEMENT:
                # The size cap is checked by the INSERT itself: one call into SQLite.
                cursor = self.database.statement(
                    _INSERT_IF_ROOM, (*values, len(envelope.data), self._room())
                )
                if cursor.rowcount == 1:
                    return None
            with self.database.transaction(front=True) as db:
                room = self._room()
                full = _bytes(db) + len(envelope.data) > room
                if full:  # dead letters make room first
                    _evict_dead(db)
                    full = _bytes(db) + len(envelope.data) > room
                if not full:
                    db.execute(_INSERT, values)
                    stored = True
        except sqlite3.Error as exc:  # disk full, read-only file...
            raise QueueBusy(str(exc)) from exc
        if not stored:
            raise QueueBusy(f"the spool is full ({MAX_SPOOL_BYTES:,} bytes)")
        return None

    def _room(self) -> int:
        """The cap for the database's pages: what the WAL file takes counts too (its
        size read at most every 50 ms: a submit's cost, and the cap is not that exact)."""
        now = time.monotonic()
        if now - self._wal_read_at > 0.05:
            try:
                self._wal_bytes = os.stat(self.path + "-wal").st_size
            except OSError:
                self._wal_bytes = 0
            self._wal_read_at = now
        return MAX_SPOOL_BYTES - self._wal_bytes

    def insert_in(
        self, db: sqlite3.Connection, envelope: Envelope, priority: int, now: float
    ) -> int:
        """Store one message inside the caller's transaction (``database.transaction()``).

        The alert handler commits its state and the mails it decided on together.
        Raises ``QueueBusy`` when the spool is full.
        """
        if _bytes(db) + len(envelope.data) > self._room():
            raise QueueBusy(f"the spool is full ({MAX_SPOOL_BYTES:,} bytes)")
        return self._insert(db, envelope, priority, now, now)

    def claim(self, now: float, *, alerts_only: bool = False) -> Item | None:
        """The next due row (alerts first, then oldest), leased to this process.

        ``renew`` extends the lease before each further transaction. The message
        itself is read after the claim's commit, so a big row does not hold the
        write lock.
        """
        with self.database.transaction(wait=1.0) as db:
            row = db.execute(
                "SELECT id FROM outbox WHERE account = ? AND state = 'queued' "
                "AND next_try <= ? AND lease_until <= ? AND priority <= ? "
                "ORDER BY priority, id LIMIT 1",
                (self.account, now, now, Priority.ALERT if alerts_only else Priority.NORMAL),
            ).fetchone()
            if row is None:
                return None
            key = int(row[0])
            db.execute(
                "UPDATE outbox SET lease_until = ?, lease_owner = ? WHERE id = ?",
                (now + self.lease, self._owner, key),
            )
        found = self.database.read(
            "SELECT message_id, mail_from, recipients, data, smtputf8, eightbit, priority, "
            "created, attempts, next_try FROM outbox WHERE id = ?",
            key,
        )
        if not found:  # pragma: no cover - deleted by hand between the two statements
            return None
        mid, sender, rcpts, data, utf8, eightbit, priority, created, attempts, due = found[0]
        envelope = Envelope(
            str(sender),
            tuple(json.loads(str(rcpts))),
            bytes(data),  # type: ignore[call-overload]
            str(mid),
            bool(utf8),
            bool(eightbit),
        )
        return Item(
            key,
            envelope,
            int(str(priority)),
            float(str(created)),
            int(str(attempts)),
            float(str(due)),
        )

    def renew(self, item: Item, now: float) -> bool:
        """Extend our lease before another transaction; False if we lost the row."""
        with self.database.transaction(wait=SETTLE_WAIT) as db:
            cursor = db.execute(
                "UPDATE outbox SET lease_until = ? WHERE id = ? AND lease_owner = ?",
                (now + self.lease, item.key, self._owner),
            )
            return cursor.rowcount == 1

    def sent(self, item: Item, record: Record) -> None:
        """Delete a sent row; ``record`` runs in the same transaction (the ledger).

        Waits up to SETTLE_WAIT for the lock: giving up here would send the message
        again when the lease expires.
        """
        with self.database.transaction(wait=SETTLE_WAIT) as db:
            db.execute(
                "DELETE FROM outbox WHERE id = ? AND lease_owner = ?", (item.key, self._owner)
            )
            record(db)
        self._commits += 1
        if self._commits % 200 == 0:
            self.database.checkpoint()

    def retry(
        self,
        item: Item,
        recipients: tuple[str, ...],
        attempts: int,
        next_try: float,
        code: int | None,
        error: str,
    ) -> None:
        """Release the row for a retry at ``next_try``, for ``recipients`` only."""
        with self.database.transaction(wait=SETTLE_WAIT) as db:
            db.execute(
                "UPDATE outbox SET recipients = ?, attempts = ?, next_try = ?, lease_until = 0,"
                " lease_owner = NULL, last_code = ?, last_error = ? "
                "WHERE id = ? AND lease_owner = ?",
                (json.dumps(recipients), attempts, next_try, code, error, item.key, self._owner),
            )

    def dead(self, item: Item, code: int | None, error: str, hint: str | None, now: float) -> None:
        """Dead-letter the row, with its reason."""
        with self.database.transaction(wait=SETTLE_WAIT) as db:
            self._bury(
                db,
                (item.key, self._owner),
                "id = ? AND lease_owner = ?",
                item.envelope,
                now,
                code,
                error,
                hint,
                item.attempts + 1,  # the attempt that failed counts
            )

    def expire(self, now: float, max_age: float, reason: str) -> int:
        """Dead-letter the account's queued rows older than ``max_age`` that nobody
        holds a lease on, with ``reason`` (their last error follows it)."""
        with self.database.transaction(wait=1.0) as db:
            cursor = db.execute(
                "UPDATE outbox SET state = 'dead', dead_at = ?, lease_until = 0, "
                "lease_owner = NULL, last_error = ? || COALESCE(' (last error: ' || "
                "last_error || ')', '') WHERE account = ? AND state = 'queued' "
                "AND created < ? AND lease_until < ?",
                (now, reason, self.account, now - max_age, now),
            )
            return cursor.rowcount

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
        """A new dead letter for ``envelope`` (refused recipients of a sent message)."""
        with self.database.transaction(wait=SETTLE_WAIT) as db:
            key = self._insert(db, envelope, priority, created, now)
            self._bury(db, (key,), "id = ?", envelope, now, code, error, None, attempts)

    @staticmethod
    def _bury(
        db: sqlite3.Connection,
        match: tuple[object, ...],
        where: str,
        envelope: Envelope,
        now: float,
        code: int | None,
        error: str,
        hint: str | None,
        attempts: int,
    ) -> None:
        sql = (
            "UPDATE outbox SET state = 'dead', dead_at = ?, recipients = ?, "  # noqa: S608 - fixed conditions only
            "lease_until = 0, lease_owner = NULL, last_code = ?, last_error = ?, "
            "hint = ?, attempts = ? WHERE " + where  # one of two fixed conditions
        )
        values = (now, json.dumps(envelope.recipients), code, error, hint, attempts, *match)
        db.execute(sql, values)

    def _insert(
        self,
        db: sqlite3.Connection,
        envelope: Envelope,
        priority: int,
        created: float,
        next_try: float,
    ) -> int:
        cursor = db.execute(_INSERT, self._values(envelope, priority, created, next_try))
        return int(cursor.lastrowid or 0)

    def _values(
        self,
        envelope: Envelope,
        priority: int,
        created: float,
        next_try: float,
        attempts: int = 0,
    ) -> tuple[object, ...]:
        """The values of ``_INSERT_COLUMNS`` for one row."""
        return (
            self.account,
            envelope.message_id,
            envelope.mail_from,
            json.dumps(envelope.recipients),
            envelope.data,
            envelope.smtputf8,
            envelope.eightbit,
            int(priority),
            created,
            next_try,
            attempts,
        )

    # -- questions -----------------------------------------------------------------------

    def counts(self) -> tuple[int, int]:
        """(queued, dead) rows of this account (kept by triggers: O(1))."""
        rows = self.database.read(
            "SELECT state, n FROM outbox_counts WHERE account = ?", self.account
        )
        found = {str(state): int(str(n)) for state, n in rows}
        return found.get("queued", 0), found.get("dead", 0)

    def pending(self) -> int:
        """Queued rows of this account (leased ones included)."""
        return self.counts()[0]

    def next_due(self) -> float | None:
        """When the earliest queued row (leased or not) may be tried."""
        # Unleased rows (lease_until 0) by the index's order, then the few leased ones.
        rows = self.database.read(
            "SELECT MIN(due) FROM ("
            "SELECT MIN(next_try) AS due FROM outbox "
            "WHERE account = ? AND state = 'queued' AND lease_until = 0 "
            "UNION ALL SELECT MAX(next_try, lease_until) FROM outbox "
            "WHERE account = ? AND state = 'queued' AND lease_until > 0)",
            self.account,
            self.account,
        )
        value = rows[0][0] if rows else None
        return None if value is None else float(str(value))

    def last_key(self) -> int:
        """The newest row id of this account."""
        rows = self.database.read("SELECT MAX(id) FROM outbox WHERE account = ?", self.account)
        return int(str(rows[0][0])) if rows and rows[0][0] is not None else 0

    def unsettled(self, upto: int, horizon: float) -> int:
        """1 if a row up to ``upto`` is still queued and due before ``horizon``, else 0
        (for flush, which asks after every delivery: the first such row, not a count)."""
        rows = self.database.read(
            "SELECT EXISTS (SELECT 1 FROM outbox WHERE account = ? AND state = 'queued' "
            "AND id <= ? AND next_try <= ?)",
            self.account,
            upto,
            horizon,
        )
        return int(str(rows[0][0]))

    def make_due(self, now: float) -> int:
        """Make every queued row of the account due now, whatever its backoff."""
        with self.database.transaction(wait=1.0) as db:
            cursor = db.execute(
                "UPDATE outbox SET next_try = ? WHERE account = ? AND state = 'queued' "
                "AND next_try > ?",
                (now, self.account, now),
            )
            return cursor.rowcount

    def purge(self, now: float) -> None:
        """Forget dead letters older than 30 days (of every account); recount the rows
        and the ledger (hourly: the triggers keep both, but a writer outside postbud
        using REPLACE without recursive triggers would not fire them)."""
        with self.database.transaction(wait=1.0) as db:
            db.execute(
                "DELETE FROM outbox WHERE state = 'dead' AND dead_at < ?",
                (now - DEAD_LETTER_DAYS * 86400,),
            )
            db.execute("DELETE FROM outbox_counts")
            db.execute(
                "INSERT INTO outbox_counts SELECT account, state, COUNT(*) FROM outbox "
                "GROUP BY account, state"
            )
            db.execute("DELETE FROM ledger_total")
            db.execute(
                "INSERT INTO ledger_total SELECT account, SUM(recipients), "
                "SUM(recipients * alert) FROM ledger GROUP BY account"
            )


def _owner(spool: DiskSpool) -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{id(spool):x}"


def _bytes(db: sqlite3.Connection) -> int:
    """Pages in use, in O(1), unlike summing the rows' sizes."""
    pages = int(db.execute("PRAGMA page_count").fetchone()[0])
    free = int(db.execute("PRAGMA freelist_count").fetchone()[0])
    return (pages - free) * int(db.execute("PRAGMA page_size").fetchone()[0])


def _evict_dead(db: sqlite3.Connection) -> None:
    db.execute(
        "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE state = 'dead' "
        "ORDER BY dead_at LIMIT 100)"
    )
