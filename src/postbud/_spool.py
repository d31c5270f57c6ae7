"""The outbox's storage: a SQLite spool that survives kill -9, and a bounded memory queue.

With a spool the database *is* the queue: ``submit`` writes the message in one
transaction before it returns, the worker claims a row with a lease (another process
takes it over once the lease expires, so a killed process frees its claims), deletes
it once Gmail accepted it, and keeps dead letters for 30 days. Rows belong to one
account: a Mailer only ever sees its own account's rows, whatever host it now uses.

The file is created mode 0600 (it holds mail bodies: password-reset links), in WAL
mode with ``synchronous=NORMAL``: a commit survives the process being killed, not a
power loss. Every call waits at most ~50 ms for a lock; the caller decides what to do
when it cannot (``submit`` puts the message in memory instead).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from . import _fork
from ._message import MAX_RECIPIENTS, Envelope

__all__ = ["DEAD_LETTER_DAYS", "DiskSpool", "Item", "MemoryQueue", "SpoolBusy"]

ALERT, NORMAL = 0, 1
DEAD_LETTER_DAYS = 30
#: Beyond this many bytes of mail in the file, dead letters are evicted oldest first and
#: new messages go to memory until the queue shrinks.
MAX_SPOOL_BYTES = 512 * 1024 * 1024
LOCK_WAIT = 0.05

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id          INTEGER PRIMARY KEY,
    account     TEXT    NOT NULL,
    message_id  TEXT    NOT NULL,
    mail_from   TEXT    NOT NULL,
    recipients  TEXT    NOT NULL,              -- JSON list still to deliver
    data        BLOB    NOT NULL,
    smtputf8    INTEGER NOT NULL,
    eightbit    INTEGER NOT NULL,
    priority    INTEGER NOT NULL,              -- 0 alert, 1 normal
    created     REAL    NOT NULL,
    next_try    REAL    NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    lease_until REAL    NOT NULL DEFAULT 0,
    lease_owner TEXT,
    state       TEXT    NOT NULL DEFAULT 'queued',   -- queued | dead
    dead_at     REAL,
    last_code   INTEGER,
    last_error  TEXT,
    hint        TEXT
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (account, state, priority, id);
CREATE TABLE IF NOT EXISTS ledger (
    account    TEXT    NOT NULL,
    at         REAL    NOT NULL,
    recipients INTEGER NOT NULL,
    alert      INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS ledger_window ON ledger (account, at);
CREATE TABLE IF NOT EXISTS holds (
    account TEXT PRIMARY KEY,
    until   REAL NOT NULL,
    since   REAL NOT NULL
);
"""


class SpoolBusy(Exception):
    """The spool could not be written within ~50 ms (or not at all)."""


@dataclass
class Item:
    """One queued message as the worker sees it."""

    key: int  # row id (disk) or sequence number (memory)
    envelope: Envelope
    priority: int
    created: float
    attempts: int = 0
    next_try: float = 0.0
    on_disk: bool = True


class _Handle:
    """One SQLite connection and the lock that serialises its users.

    Writers of one process also share ``writes``: waiting on a Python lock wakes the
    moment it is free, while SQLite's own busy handler sleeps 1 ms, then 2 ms, ...
    (SQLite's locks still order writers of different processes).
    """

    def __init__(self, path: str, writes: threading.RLock) -> None:
        self.path = path
        self.lock = threading.RLock()
        self.writes = writes
        self._db: sqlite3.Connection | None = None
        self.db  # noqa: B018 - connect now, so a bad path fails in the constructor

    @property
    def db(self) -> sqlite3.Connection:
        """The connection, opened again after ``close()`` (a Mailer may be reused)."""
        if self._db is None:
            db = sqlite3.connect(
                self.path, timeout=LOCK_WAIT, isolation_level=None, check_same_thread=False
            )
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            # No checkpoint inside a commit (its fsync would land on whoever commits, a
            # submit included): the worker checkpoints outside the write lock instead.
            db.execute("PRAGMA wal_autocheckpoint=0")
            # Freed pages are zeroed: a delivered password-reset link does not linger
            # in the file (SQLite's default depends on how it was compiled).
            db.execute("PRAGMA secure_delete=ON")
            self._db = db
        return self._db

    @contextlib.contextmanager
    def transaction(self, wait: float) -> Iterator[sqlite3.Connection]:
        if not self.writes.acquire(timeout=wait):
            raise SpoolBusy("the spool is in use by another thread")
        if not self.lock.acquire(timeout=wait):
            self.writes.release()
            raise SpoolBusy("the spool is in use by another thread")
        try:
            try:
                self.db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise SpoolBusy(str(exc)) from exc
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            try:
                self.db.execute("COMMIT")
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    self.db.execute("ROLLBACK")
                raise SpoolBusy(str(exc)) from exc
        finally:
            self.lock.release()
            self.writes.release()

    def checkpoint(self) -> None:
        """Copy the WAL into the database without blocking writers (PASSIVE)."""
        with self.lock:
            self.db.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def read(self, sql: str, args: tuple[object, ...]) -> list[tuple[object, ...]]:
        with self.lock:
            return self.db.execute(sql, args).fetchall()

    def close(self) -> None:
        with self.lock:
            if self._db is not None:
                self._db.close()
                self._db = None


class DiskSpool:
    """The SQLite spool of one account. Thread-safe; every call is one short transaction.

    Raises ``OSError`` or ``sqlite3.Error`` from the constructor when the file cannot
    be created or opened (the caller falls back to memory).
    """

    def __init__(self, path: str, account: str) -> None:
        self.path = path
        self.account = account.lower()
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, mode=0o700, exist_ok=True)
        # Create the file ourselves so it is 0600 from the first byte (SQLite gives the
        # -wal and -shm files the database file's mode).
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        os.chmod(path, 0o600)
        # Two handles: the callers' (``add`` only) and everyone else's, so a submit never
        # queues behind a read; writes of both share one lock.
        writes = threading.RLock()
        self._front = _Handle(path, writes)
        self._back = _Handle(path, writes)
        self._back.db.executescript(_SCHEMA)
        self._commits = 0
        with contextlib.suppress(SpoolBusy, sqlite3.Error):
            self.purge(time.time())  # expired dead letters go even if no worker runs
        _fork.register(self)

    def transaction(
        self, wait: float = LOCK_WAIT, *, front: bool = False
    ) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE); SpoolBusy if not had within ``wait``.

        The worker's handle by default; ``front=True`` for the callers' (submit).
        """
        return (self._front if front else self._back).transaction(wait)

    def read(self, sql: str, *args: object) -> list[tuple[object, ...]]:
        """Run a read-only query (WAL readers never wait for writers).

        On the worker's handle: the callers' handle is kept for ``add`` alone, so a
        submit never waits behind a query.
        """
        return self._back.read(sql, args)

    def close(self) -> None:
        self._front.close()
        self._back.close()

    def _after_fork(self) -> None:
        # SQLite handles must not cross fork: the child keeps the parent's alive but
        # unused (closing them could disturb the parent's locks) and opens its own.
        _graveyard.extend([self._front, self._back])
        writes = threading.RLock()
        self._front = _Handle(self.path, writes)
        self._back = _Handle(self.path, writes)

    # -- the queue -----------------------------------------------------------------------

    def add(self, envelope: Envelope, priority: int, now: float) -> int:
        """Store one message (one transaction). Raises SpoolBusy."""
        try:
            with self.transaction(front=True) as db:
                full = self._bytes(db) + len(envelope.data) > MAX_SPOOL_BYTES
                if full:  # dead letters make room first (their eviction is committed)
                    self._evict_dead(db)
                    full = self._bytes(db) + len(envelope.data) > MAX_SPOOL_BYTES
                if full:
                    cursor = None
                else:
                    cursor = db.execute(
                        "INSERT INTO outbox (account, message_id, mail_from, recipients, data, "
                        "smtputf8, eightbit, priority, created, next_try) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            self.account,
                            envelope.message_id,
                            envelope.mail_from,
                            json.dumps(envelope.recipients),
                            envelope.data,
                            envelope.smtputf8,
                            envelope.eightbit,
                            priority,
                            now,
                            now,
                        ),
                    )
        except sqlite3.Error as exc:  # disk full, read-only file...
            raise SpoolBusy(str(exc)) from exc
        if cursor is None:
            raise SpoolBusy(f"the spool is full ({MAX_SPOOL_BYTES:,} bytes)")
        return int(cursor.lastrowid or 0)

    def claim(self, now: float, timeout: float, owner: str) -> Item | None:
        """The next due row (alerts first, then oldest), leased to ``owner``.

        The lease lasts two attempt deadlines per envelope of 100 recipients; another
        process may take the row over once it expires (a killed worker's claim).
        """
        with self.transaction(wait=1.0) as db:
            row = db.execute(
                "SELECT id, message_id, mail_from, recipients, data, smtputf8, eightbit, "
                "priority, created, attempts, next_try FROM outbox "
                "WHERE account = ? AND state = 'queued' AND next_try <= ? AND lease_until <= ? "
                "ORDER BY priority, id LIMIT 1",
                (self.account, now, now),
            ).fetchone()
            if row is None:
                return None
            recipients = tuple(json.loads(row[3]))
            lease = 2 * timeout * (1 + (len(recipients) - 1) // MAX_RECIPIENTS)
            db.execute(
                "UPDATE outbox SET lease_until = ?, lease_owner = ? WHERE id = ?",
                (now + lease, owner, row[0]),
            )
        envelope = Envelope(
            str(row[2]), recipients, bytes(row[4]), str(row[1]), bool(row[5]), bool(row[6])
        )
        return Item(int(row[0]), envelope, int(row[7]), float(row[8]), int(row[9]), float(row[10]))

    def delete(self, key: int, also: Callable[[sqlite3.Connection], None] | None = None) -> None:
        """Delete a sent row; ``also`` runs in the same transaction (the ledger)."""
        with self.transaction(wait=5.0) as db:
            db.execute("DELETE FROM outbox WHERE id = ?", (key,))
            if also is not None:
                also(db)
        self._commits += 1
        if self._commits % 200 == 0:
            self.checkpoint()

    def checkpoint(self) -> None:
        """Fold the WAL into the database (the worker calls it, outside any write)."""
        with contextlib.suppress(sqlite3.Error):
            self._back.checkpoint()

    def retry(
        self,
        key: int,
        recipients: tuple[str, ...],
        attempts: int,
        next_try: float,
        code: int | None,
        error: str,
    ) -> None:
        with self.transaction(wait=5.0) as db:
            db.execute(
                "UPDATE outbox SET recipients = ?, attempts = ?, next_try = ?, lease_until = 0,"
                " lease_owner = NULL, last_code = ?, last_error = ? WHERE id = ?",
                (json.dumps(recipients), attempts, next_try, code, error, key),
            )

    def dead(
        self,
        key: int | None,
        envelope: Envelope,
        priority: int,
        created: float,
        now: float,
        code: int | None,
        error: str,
        hint: str | None,
    ) -> None:
        """Dead-letter a row (or store a new dead letter for ``envelope``)."""
        with self.transaction(wait=5.0) as db:
            if key is None:
                db.execute(
                    "INSERT INTO outbox (account, message_id, mail_from, recipients, data, "
                    "smtputf8, eightbit, priority, created, next_try, state, dead_at, "
                    "last_code, last_error, hint) VALUES (?,?,?,?,?,?,?,?,?,?,'dead',?,?,?,?)",
                    (
                        self.account,
                        envelope.message_id,
                        envelope.mail_from,
                        json.dumps(envelope.recipients),
                        envelope.data,
                        envelope.smtputf8,
                        envelope.eightbit,
                        priority,
                        created,
                        now,
                        now,
                        code,
                        error,
                        hint,
                    ),
                )
            else:
                db.execute(
                    "UPDATE outbox SET state = 'dead', dead_at = ?, recipients = ?, "
                    "lease_until = 0, lease_owner = NULL, last_code = ?, last_error = ?, "
                    "hint = ? WHERE id = ?",
                    (now, json.dumps(envelope.recipients), code, error, hint, key),
                )

    # -- questions -----------------------------------------------------------------------

    def counts(self) -> tuple[int, int]:
        """(queued, dead) rows of this account."""
        rows = self.read(
            "SELECT state, COUNT(*) FROM outbox WHERE account = ? GROUP BY state", self.account
        )
        found = {str(state): int(str(n)) for state, n in rows}
        return found.get("queued", 0), found.get("dead", 0)

    def next_due(self) -> float | None:
        """When the earliest queued row (leased or not) may be tried."""
        rows = self.read(
            "SELECT MIN(MAX(next_try, lease_until)) FROM outbox "
            "WHERE account = ? AND state = 'queued'",
            self.account,
        )
        value = rows[0][0] if rows else None
        return None if value is None else float(str(value))

    def last_id(self) -> int:
        rows = self.read("SELECT MAX(id) FROM outbox WHERE account = ?", self.account)
        return int(str(rows[0][0])) if rows and rows[0][0] is not None else 0

    def unsettled(self, upto: int, horizon: float) -> int:
        """Rows up to ``upto`` still queued and due before ``horizon`` (for flush)."""
        rows = self.read(
            "SELECT COUNT(*) FROM outbox WHERE account = ? AND state = 'queued' "
            "AND id <= ? AND next_try <= ?",
            self.account,
            upto,
            horizon,
        )
        return int(str(rows[0][0]))

    def purge(self, now: float) -> None:
        """Forget dead letters older than 30 days."""
        with self.transaction(wait=1.0) as db:
            db.execute(
                "DELETE FROM outbox WHERE state = 'dead' AND dead_at < ?",
                (now - DEAD_LETTER_DAYS * 86400,),
            )

    @staticmethod
    def _bytes(db: sqlite3.Connection) -> int:
        # Pages in use, in O(1), unlike summing the rows' sizes.
        pages = int(db.execute("PRAGMA page_count").fetchone()[0])
        free = int(db.execute("PRAGMA freelist_count").fetchone()[0])
        return (pages - free) * int(db.execute("PRAGMA page_size").fetchone()[0])

    @staticmethod
    def _evict_dead(db: sqlite3.Connection) -> None:
        db.execute(
            "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE state = 'dead' "
            "ORDER BY dead_at LIMIT 100)"
        )


# Handles inherited across fork are kept alive here, never closed by the child.
_graveyard: list[_Handle] = []


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
        with self._lock:
            self._seq += 1
            dropped = None
            if len(self._items) >= self.size:
                normal = [i for i in self._items if i.priority == NORMAL]
                dropped = min(normal or self._items, key=lambda i: i.key)
                self._items.remove(dropped)
            self._items.append(
                Item(self._seq, envelope, priority, now, next_try=now, on_disk=False)
            )
            return dropped

    def claim(self, now: float) -> Item | None:
        with self._lock:
            due = [i for i in self._items if i.next_try <= now]
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

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._in_flight.clear()
