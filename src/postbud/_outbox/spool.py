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

from postbud import _fork
from postbud._message import Envelope

__all__ = ["ALERT", "DEAD_LETTER_DAYS", "NORMAL", "DiskSpool", "Item", "SpoolBusy"]

ALERT, NORMAL = 0, 1
DEAD_LETTER_DAYS = 30
#: Beyond this many bytes of mail in the file, dead letters are evicted oldest first and
#: new messages go to memory until the queue shrinks.
MAX_SPOOL_BYTES = 512 * 1024 * 1024
LOCK_WAIT = 0.05
#: How long the worker waits to record what happened to a row it sent.
SETTLE_WAIT = 30.0

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


class SpoolBusy(Exception):
    """The spool could not be written within the time allowed (or not at all)."""


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


def _wal(db: sqlite3.Connection) -> None:
    """Switch to WAL. On a new file that takes an exclusive lock and SQLite answers
    "locked" at once instead of waiting: processes starting together on a fresh
    spool try again for a few seconds here, rather than fall back to memory."""
    deadline = time.monotonic() + 5.0
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


class _Handle:
    """One SQLite connection and the lock that serialises its users.

    Writers of one process also share ``writes``: waiting on a Python lock wakes the
    moment it is free, while SQLite's own busy handler sleeps 1 ms, then 2 ms, ...
    (SQLite's locks still order writers of different processes, within ``wait``).
    """

    def __init__(self, path: str, writes: threading.RLock) -> None:
        self.path = path
        self.lock = threading.RLock()
        self.writes = writes
        self._db: sqlite3.Connection | None = None
        self._busy_ms = -1  # the busy_timeout last set on the connection

    @property
    def db(self) -> sqlite3.Connection:
        """The connection, opened on first use (and again after ``close()``)."""
        if self._db is None:
            db = sqlite3.connect(
                self.path, timeout=LOCK_WAIT, isolation_level=None, check_same_thread=False
            )
            db.execute("PRAGMA busy_timeout = 5000")
            _wal(db)
            db.execute("PRAGMA synchronous=NORMAL")
            # No checkpoint inside a commit (its fsync would land on whoever commits, a
            # submit included): the worker checkpoints outside the write lock instead.
            db.execute("PRAGMA wal_autocheckpoint=0")
            # Freed pages are zeroed: a delivered password-reset link does not linger
            # in the file (SQLite's default depends on how it was compiled).
            db.execute("PRAGMA secure_delete=ON")
            self._busy_ms = int(LOCK_WAIT * 1000)
            db.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
            self._db = db
        return self._db

    @contextlib.contextmanager
    def _writing(self, wait: float) -> Iterator[sqlite3.Connection]:
        """The connection, with this process's write lock held (within ``wait``)."""
        if not self.writes.acquire(timeout=wait):
            raise SpoolBusy("the spool is in use by another thread")
        if not self.lock.acquire(timeout=wait):
            self.writes.release()
            raise SpoolBusy("the spool is in use by another thread")
        try:
            db = self.db
            try:
                if db.in_transaction:  # left open by an interruption: never write into it
                    db.execute("ROLLBACK")
                busy_ms = int(wait * 1000)
                if busy_ms != self._busy_ms:
                    # Another process's write lock is waited for up to ``wait`` as well.
                    db.execute(f"PRAGMA busy_timeout = {busy_ms}")
                    self._busy_ms = busy_ms
            except sqlite3.Error as exc:
                self._db = None  # a fresh connection next time
                with contextlib.suppress(sqlite3.Error):
                    db.close()
                raise SpoolBusy(str(exc)) from exc
            yield db
        finally:
            self.lock.release()
            self.writes.release()

    def statement(self, wait: float, sql: str, args: tuple[object, ...]) -> sqlite3.Cursor:
        """One write statement, its own transaction (SQLite's autocommit).

        A submit's single INSERT: each call into SQLite lets another thread take the
        GIL, and the caller then waits for that thread's turn to end, so the fewer
        calls the better. Raises SpoolBusy when the spool is locked.
        """
        with self._writing(wait) as db:
            try:
                return db.execute(sql, args)
            except sqlite3.OperationalError as exc:
                raise SpoolBusy(str(exc)) from exc

    @contextlib.contextmanager
    def transaction(self, wait: float) -> Iterator[sqlite3.Connection]:
        with self._writing(wait) as db:
            try:
                db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise SpoolBusy(str(exc)) from exc
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            try:
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
                raise SpoolBusy(str(exc)) from exc

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
        self._open_handles()
        # Creating the tables waits for other processes' writers (many processes may
        # start at once on a fresh file); it is not on anybody's hot path.
        with self._back.transaction(wait=5.0) as db:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
        self._commits = 0
        with contextlib.suppress(SpoolBusy, sqlite3.Error):
            self.purge(time.time())  # expired dead letters go even if no worker runs
        _fork.register(self)

    def _open_handles(self) -> None:
        # Two handles: the callers' (``add`` only) and everyone else's, so a submit never
        # queues behind a read; writes of both share one lock.
        writes = threading.RLock()
        self._front = _Handle(self.path, writes)
        self._back = _Handle(self.path, writes)

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
        # unused (closing them could disturb the parent's locks) and opens its own,
        # lazily (nothing here may fail and stop the other fork hooks).
        _graveyard.extend([self._front, self._back])
        self._open_handles()

    # -- the queue -----------------------------------------------------------------------

    def add(
        self,
        envelope: Envelope,
        priority: int,
        now: float,
        *,
        next_try: float | None = None,
        attempts: int = 0,
    ) -> int:
        """Store one message (one statement, ~50 ms at most). Raises SpoolBusy.

        ``now`` is its creation time; ``next_try`` and ``attempts`` carry a retry's
        state over (a message moved from memory at close).
        """
        key = None
        due = now if next_try is None else next_try
        values = self._values(envelope, priority, now, due, attempts)
        try:
            if _ONE_STATEMENT:
                # The size cap is checked by the INSERT itself: one call into SQLite.
                cursor = self._front.statement(
                    LOCK_WAIT, _INSERT_IF_ROOM, (*values, len(envelope.data), MAX_SPOOL_BYTES)
                )
                if cursor.rowcount == 1:
                    return int(cursor.lastrowid or 0)
            with self.transaction(front=True) as db:
                full = self._bytes(db) + len(envelope.data) > MAX_SPOOL_BYTES
                if full:  # dead letters make room first
                    self._evict_dead(db)
                    full = self._bytes(db) + len(envelope.data) > MAX_SPOOL_BYTES
                if not full:
                    key = int(db.execute(_INSERT, values).lastrowid or 0)
        except sqlite3.Error as exc:  # disk full, read-only file...
            raise SpoolBusy(str(exc)) from exc
        if key is None:
            raise SpoolBusy(f"the spool is full ({MAX_SPOOL_BYTES:,} bytes)")
        return key

    def insert(self, db: sqlite3.Connection, envelope: Envelope, priority: int, now: float) -> int:
        """Store one message inside the caller's transaction (``transaction()``).

        The alert handler commits its state and the mails it decided on together.
        Raises ``SpoolBusy`` when the spool is full.
        """
        if self._bytes(db) + len(envelope.data) > MAX_SPOOL_BYTES:
            raise SpoolBusy(f"the spool is full ({MAX_SPOOL_BYTES:,} bytes)")
        return self._insert(db, envelope, priority, now, now)

    def claim(
        self, now: float, timeout: float, owner: str, *, alerts_only: bool = False
    ) -> Item | None:
        """The next due row (alerts first, then oldest), leased to ``owner``.

        The lease lasts two attempt deadlines; ``renew`` extends it before each
        further transaction, and another process may take the row over once it
        expires (a killed worker's claim). The message itself is read after the
        claim's commit, so a big row does not hold the write lock.
        """
        with self.transaction(wait=1.0) as db:
            row = db.execute(
                "SELECT id FROM outbox WHERE account = ? AND state = 'queued' "
                "AND next_try <= ? AND lease_until <= ? AND priority <= ? "
                "ORDER BY priority, id LIMIT 1",
                (self.account, now, now, ALERT if alerts_only else NORMAL),
            ).fetchone()
            if row is None:
                return None
            key = int(row[0])
            db.execute(
                "UPDATE outbox SET lease_until = ?, lease_owner = ? WHERE id = ?",
                (now + 2 * timeout, owner, key),
            )
        found = self.read(
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

    def renew(self, key: int, owner: str, now: float, timeout: float) -> bool:
        """Extend our lease before another transaction; False if we lost the row."""
        with self.transaction(wait=SETTLE_WAIT) as db:
            cursor = db.execute(
                "UPDATE outbox SET lease_until = ? WHERE id = ? AND lease_owner = ?",
                (now + 2 * timeout, key, owner),
            )
            return cursor.rowcount == 1

    def delete(
        self, key: int, owner: str, also: Callable[[sqlite3.Connection], None] | None = None
    ) -> None:
        """Delete a sent row; ``also`` runs in the same transaction (the ledger).

        Waits up to SETTLE_WAIT for the lock: giving up here would send the message
        again when the lease expires.
        """
        with self.transaction(wait=SETTLE_WAIT) as db:
            db.execute("DELETE FROM outbox WHERE id = ? AND lease_owner = ?", (key, owner))
            if also is not None:
                also(db)
        self._commits += 1
        if self._commits % 200 == 0:
            self.checkpoint()

    def retry(
        self,
        key: int,
        owner: str,
        recipients: tuple[str, ...],
        attempts: int,
        next_try: float,
        code: int | None,
        error: str,
    ) -> None:
        with self.transaction(wait=SETTLE_WAIT) as db:
            db.execute(
                "UPDATE outbox SET recipients = ?, attempts = ?, next_try = ?, lease_until = 0,"
                " lease_owner = NULL, last_code = ?, last_error = ? "
                "WHERE id = ? AND lease_owner = ?",
                (json.dumps(recipients), attempts, next_try, code, error, key, owner),
            )

    def dead(
        self,
        key: int | None,
        owner: str,
        envelope: Envelope,
        priority: int,
        created: float,
        now: float,
        code: int | None,
        error: str,
        hint: str | None,
    ) -> None:
        """Dead-letter a row (or store a new dead letter for ``envelope``)."""
        with self.transaction(wait=SETTLE_WAIT) as db:
            if key is None:  # a new dead letter (refused recipients of a sent message)
                match: tuple[object, ...] = (self._insert(db, envelope, priority, created, now),)
                where = "id = ?"
            else:
                match, where = (key, owner), "id = ? AND lease_owner = ?"
            sql = (
                "UPDATE outbox SET state = 'dead', dead_at = ?, recipients = ?, "  # noqa: S608 - fixed conditions only
                "lease_until = 0, lease_owner = NULL, last_code = ?, last_error = ?, "
                "hint = ? WHERE " + where  # one of two fixed conditions
            )
            db.execute(sql, (now, json.dumps(envelope.recipients), code, error, hint, *match))

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
            priority,
            created,
            next_try,
            attempts,
        )

    def checkpoint(self, *, truncate: bool = False) -> None:
        """Fold the WAL into the database (the worker calls it, outside any write).

        ``truncate`` (when the queue is empty) also empties the WAL file, so the bodies
        of delivered mail do not stay readable in it.
        """
        mode = "TRUNCATE" if truncate else "PASSIVE"
        with contextlib.suppress(sqlite3.Error), self._back.lock:
            self._back.db.execute(f"PRAGMA wal_checkpoint({mode})")

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

    # -- the outbox command (``postbud outbox``) ----------------------------------------------

    def retry_now(self, now: float) -> int:
        """Make every queued row of the account due now, whatever its backoff."""
        with self.transaction(wait=1.0) as db:
            cursor = db.execute(
                "UPDATE outbox SET next_try = ? WHERE account = ? AND state = 'queued' "
                "AND next_try > ?",
                (now, self.account, now),
            )
            return cursor.rowcount

    def rows(self, state: str | None = None) -> list[dict[str, object]]:
        """The account's rows (oldest first) without their bodies; ``subject`` is parsed."""
        found = self.read(
            "SELECT id, state, message_id, recipients, priority, created, next_try, attempts,"
            " dead_at, last_code, last_error, hint, substr(data, 1, 4096) FROM outbox"
            " WHERE account = ? AND (? IS NULL OR state = ?) ORDER BY id",
            self.account,
            state,
            state,
        )
        names = _ROW_NAMES
        result = []
        for row in found:
            item = dict(zip(names, row[:-1], strict=True))
            item["recipients"] = json.loads(str(item["recipients"]))
            head = bytes(row[-1]) if isinstance(row[-1], bytes) else b""
            item["subject"] = _subject_of(head)
            result.append(item)
        return result

    def revive(self, ids: list[int] | None, now: float) -> int:
        """Put dead letters (all, or those ``ids``) back in the queue, due now.

        Their age starts again (``created``), or a letter older than ``max_age`` (the
        usual result of an outage) would die again after one try.
        """
        with self.transaction(wait=1.0) as db:
            cursor = db.execute(
                "UPDATE outbox SET state = 'queued', next_try = ?, created = ?, attempts = 0,"
                " dead_at = NULL,"
                " lease_until = 0, lease_owner = NULL WHERE account = ? AND state = 'dead'"
                " AND (? IS NULL OR id IN (SELECT value FROM json_each(?)))",
                (now, now, self.account, None if ids is None else 1, json.dumps(ids or [])),
            )
            return cursor.rowcount

    def forget_dead(self, ids: list[int] | None) -> int:
        """Delete dead letters (all, or those ``ids``)."""
        with self.transaction(wait=1.0) as db:
            cursor = db.execute(
                "DELETE FROM outbox WHERE account = ? AND state = 'dead'"
                " AND (? IS NULL OR id IN (SELECT value FROM json_each(?)))",
                (self.account, None if ids is None else 1, json.dumps(ids or [])),
            )
            return cursor.rowcount

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


_ROW_NAMES = (
    "id",
    "state",
    "message_id",
    "recipients",
    "priority",
    "created",
    "next_try",
    "attempts",
    "dead_at",
    "last_code",
    "last_error",
    "hint",
)


def _subject_of(head: bytes) -> str:
    from email.header import decode_header, make_header
    from email.parser import BytesHeaderParser

    value = BytesHeaderParser().parsebytes(head).get("Subject", "")
    try:
        return " ".join(str(make_header(decode_header(str(value)))).split())
    except Exception:  # a damaged header: show it as it is
        return str(value)


# Handles inherited across fork are kept alive here, never closed by the child.
_graveyard: list[_Handle] = []
