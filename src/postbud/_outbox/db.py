"""The spool database: its one owner, the schema of every table, its version and migrations.

One SQLite file holds the outbox, the quota ledger, the gates (login pause, connection
backoff, daily-limit hold) and the alert state, so that one transaction can settle a row
and count its recipients, or update alert counts and queue the mail they decided on:
exactly once, across processes.
This module defines every table, stamps ``PRAGMA user_version`` and migrates older
files (each migration inside ``BEGIN IMMEDIATE``, since two processes may start at
once); a file newer than this code is refused. It also owns the two connections a
process keeps (the callers' and the worker's) and what happens to them across fork.

The file is created mode 0600 (it holds mail bodies: password-reset links), in WAL
mode with ``synchronous=NORMAL``: a commit survives the process being killed, not a
power loss. Every call waits at most ~50 ms for a lock unless told otherwise.

About 390 lines, a third of them the schema written out: every table in one place.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterable, Iterator

from postbud import _fork

from .files import SpoolRefused, identity, make_folders, open_own_file
from .queue import QueueBusy
from .salvage import after_salvage, is_damage, salvage

__all__ = [
    "LOCK_WAIT",
    "SCHEMA_VERSION",
    "SETTLE_WAIT",
    "WAL_LIMIT",
    "Database",
    "SchemaTooNew",
    "open_database",
    "salvaged",
]

log = logging.getLogger("postbud")
_warned: set[str] = set()

LOCK_WAIT = 0.05
#: How long the worker waits to record what happened to a row it sent.
SETTLE_WAIT = 30.0
#: What the WAL file is truncated to after a checkpoint (bytes).
WAL_LIMIT = 16 * 1024 * 1024

#: The schema this code writes. 0: postbud 0.1.0 (no version stamped; the alert tables
#: were made by the first alert handler). Each step below brings a file one version up.
SCHEMA_VERSION = 2

#: The schema as version 1 creates it. Never edit it: a later version adds a step to
#: MIGRATIONS (a new table, ALTER TABLE ... ADD COLUMN) and raises SCHEMA_VERSION, so
#: new files and migrated ones end up the same.
_SCHEMA_V1 = (
    """CREATE TABLE IF NOT EXISTS outbox (
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
)""",
    """CREATE INDEX IF NOT EXISTS outbox_due ON outbox (account, state, priority, id)""",
    """CREATE TABLE IF NOT EXISTS ledger (
    account    TEXT    NOT NULL,
    at         REAL    NOT NULL,
    recipients INTEGER NOT NULL,
    alert      INTEGER NOT NULL
)""",
    """CREATE INDEX IF NOT EXISTS ledger_window ON ledger (account, at)""",
    """CREATE TABLE IF NOT EXISTS holds (
    account TEXT PRIMARY KEY,
    until   REAL NOT NULL,
    since   REAL NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS alert_scope (
    scope        TEXT PRIMARY KEY,
    window_start REAL,
    window_mails INTEGER NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS alert_presence (
    scope   TEXT NOT NULL,
    owner   TEXT NOT NULL,
    seen_at REAL NOT NULL,
    PRIMARY KEY (scope, owner)
)""",
    """CREATE TABLE IF NOT EXISTS alert_state (
    scope         TEXT    NOT NULL,
    fingerprint   TEXT    NOT NULL,
    total         INTEGER NOT NULL,
    first_at      REAL    NOT NULL,
    last_at       REAL    NOT NULL,
    mailed_at     REAL,
    pending       INTEGER NOT NULL,
    pending_since REAL,
    digest        INTEGER NOT NULL,
    digest_first  REAL,
    digest_last   REAL,
    detail        TEXT    NOT NULL,
    PRIMARY KEY (scope, fingerprint)
)""",
)

#: Version 2: the gates every process of an account respects (``state.py``: the login
#: pause, the connection backoff, the daily-limit hold, formerly the table ``holds``),
#: and running totals of the ledger and of the outbox's rows, kept by triggers whoever
#: writes (an older postbud too), so that counting costs O(1) however long the queue.
_SCHEMA_V2 = (
    """CREATE TABLE IF NOT EXISTS gates (
    name       TEXT    PRIMARY KEY,  -- login:<acct>, connect:<acct>:<host>:<port>, hold:<acct>
    until      REAL    NOT NULL,     -- no attempt before this (Inf: until cleared)
    since      REAL    NOT NULL,
    step       INTEGER NOT NULL,     -- failures in a row
    reason     TEXT    NOT NULL,
    credential TEXT                  -- a refused login: a hash of the refused credential
)""",
    """INSERT OR IGNORE INTO gates
    SELECT 'hold:' || account, until, since, 1, 'Gmail''s daily-limit reply (550 5.4.5)', NULL
    FROM holds""",
    """CREATE TABLE IF NOT EXISTS ledger_total (
    account    TEXT    PRIMARY KEY,
    recipients INTEGER NOT NULL,
    alerts     INTEGER NOT NULL
)""",
    """INSERT OR REPLACE INTO ledger_total
    SELECT account, SUM(recipients), SUM(recipients * alert) FROM ledger GROUP BY account""",
    """CREATE TRIGGER IF NOT EXISTS ledger_added AFTER INSERT ON ledger BEGIN
    INSERT INTO ledger_total VALUES (NEW.account, NEW.recipients, NEW.recipients * NEW.alert)
    ON CONFLICT(account) DO UPDATE SET recipients = recipients + excluded.recipients,
    alerts = alerts + excluded.alerts;
END""",
    """CREATE TRIGGER IF NOT EXISTS ledger_removed AFTER DELETE ON ledger BEGIN
    UPDATE ledger_total SET recipients = recipients - OLD.recipients,
    alerts = alerts - OLD.recipients * OLD.alert WHERE account = OLD.account;
END""",
    """CREATE TRIGGER IF NOT EXISTS ledger_changed
    AFTER UPDATE OF account, recipients, alert ON ledger BEGIN
    UPDATE ledger_total SET recipients = recipients - OLD.recipients,
    alerts = alerts - OLD.recipients * OLD.alert WHERE account = OLD.account;
    INSERT INTO ledger_total VALUES (NEW.account, NEW.recipients, NEW.recipients * NEW.alert)
    ON CONFLICT(account) DO UPDATE SET recipients = recipients + excluded.recipients,
    alerts = alerts + excluded.alerts;
END""",
    # When the next row is due (``next_due``, on every idle poll): O(log n), not a scan
    # of the queue. ``lease_until`` is 0 except while a row is leased.
    """CREATE INDEX IF NOT EXISTS outbox_wake ON outbox (account, state, lease_until, next_try)""",
    # Rows per account and state, kept by triggers: stats() and pending() in O(1).
    """CREATE TABLE IF NOT EXISTS outbox_counts (
    account TEXT    NOT NULL,
    state   TEXT    NOT NULL,
    n       INTEGER NOT NULL,
    PRIMARY KEY (account, state)
)""",
    """INSERT OR REPLACE INTO outbox_counts
    SELECT account, state, COUNT(*) FROM outbox GROUP BY account, state""",
    """CREATE TRIGGER IF NOT EXISTS outbox_added AFTER INSERT ON outbox BEGIN
    INSERT INTO outbox_counts VALUES (NEW.account, NEW.state, 1)
    ON CONFLICT(account, state) DO UPDATE SET n = n + 1;
END""",
    """CREATE TRIGGER IF NOT EXISTS outbox_removed AFTER DELETE ON outbox BEGIN
    UPDATE outbox_counts SET n = n - 1 WHERE account = OLD.account AND state = OLD.state;
END""",
    """CREATE TRIGGER IF NOT EXISTS outbox_moved AFTER UPDATE OF account, state ON outbox
    WHEN OLD.account IS NOT NEW.account OR OLD.state IS NOT NEW.state BEGIN
    UPDATE outbox_counts SET n = n - 1 WHERE account = OLD.account AND state = OLD.state;
    INSERT INTO outbox_counts VALUES (NEW.account, NEW.state, 1)
    ON CONFLICT(account, state) DO UPDATE SET n = n + 1;
END""",
)

#: ``MIGRATIONS[n]`` brings a file from version n to n + 1. Additive only, so an older
#: postbud can still use a migrated file (see CHANGELOG.md).
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 0 -> 1: every table exists from the start (0.1.0 made the alert tables lazily).
    _SCHEMA_V1,
    # 1 -> 2: gates and the ledger's running totals.
    _SCHEMA_V2,
)


class SchemaTooNew(sqlite3.DatabaseError):
    """The file was written by a newer postbud (its ``user_version`` is higher)."""


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

    def __init__(self, path: str, writes: threading.RLock, opening: threading.RLock) -> None:
        self.path = path
        self.opening = opening  # held while the file is being salvaged
        self.lock = threading.RLock()
        self.writes = writes
        self._db: sqlite3.Connection | None = None
        self._finalizer: weakref.finalize[[], _Handle] | None = None
        self._busy_ms = -1  # the busy_timeout last set on the connection
        self._writing_now = 0  # the thread whose write on this handle is in progress

    @property
    def db(self) -> sqlite3.Connection:
        """The connection, opened on first use (and again after ``close()``)."""
        if self._db is None:
            with self.opening:  # not while the path is being moved aside and remade
                db = sqlite3.connect(
                    self.path, timeout=LOCK_WAIT, isolation_level=None, check_same_thread=False
                )
            try:  # a file that is not a database fails here: close what was opened
                db.execute("PRAGMA busy_timeout = 5000")
                _wal(db)
                db.execute("PRAGMA synchronous=NORMAL")
                # No checkpoint inside a commit (its fsync would land on whoever commits, a
                # submit included): the worker checkpoints outside the write lock instead.
                db.execute("PRAGMA wal_autocheckpoint=0")
                # Freed pages are zeroed: a delivered password-reset link does not linger
                # in the file (SQLite's default depends on how it was compiled).
                db.execute("PRAGMA secure_delete=ON")
                # The WAL shrinks back to this after a checkpoint that reset it (it grows
                # while rows wait and readers hold snapshots; the spool's cap counts it).
                db.execute(f"PRAGMA journal_size_limit = {WAL_LIMIT:d}")
                # A REPLACE that deletes a row fires its DELETE trigger only so: the
                # running counts stay exact whatever statement another writer uses.
                db.execute("PRAGMA recursive_triggers=ON")
                self._busy_ms = int(LOCK_WAIT * 1000)
                db.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
            except BaseException:
                db.close()
                raise
            self._db = db
            # A Mailer dropped without close() closes its connections when it is
            # collected (Python 3.13 warns about an unclosed database). Not at exit:
            # the exit hook still drains through them (shutdown.py closes them after).
            self._finalizer = weakref.finalize(self, db.close)
            self._finalizer.atexit = False
        return self._db

    @contextlib.contextmanager
    def _writing(self, wait: float) -> Iterator[sqlite3.Connection]:
        """The connection, with this process's write lock held (within ``wait``)."""
        if not self.writes.acquire(timeout=wait):
            raise QueueBusy("the spool is in use by another thread")
        if not self.lock.acquire(timeout=wait):
            self.writes.release()
            raise QueueBusy("the spool is in use by another thread")
        if self._writing_now:  # the same thread, inside a transaction: a bug
            self.lock.release()
            self.writes.release()
            raise RuntimeError("a spool write inside another one: pass its transaction")
        self._writing_now = threading.get_ident()
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
                raise QueueBusy(str(exc)) from exc
            yield db
        finally:
            self._writing_now = 0
            self.lock.release()
            self.writes.release()

    def statement(self, wait: float, sql: str, args: tuple[object, ...]) -> sqlite3.Cursor:
        """One write statement, its own transaction (SQLite's autocommit).

        A submit's single INSERT: each call into SQLite lets another thread take the
        GIL, and the caller then waits for that thread's turn to end, so the fewer
        calls the better. Raises QueueBusy when the spool is locked.
        """
        with self._writing(wait) as db:
            try:
                return db.execute(sql, args)
            except sqlite3.OperationalError as exc:
                raise QueueBusy(str(exc)) from exc

    @contextlib.contextmanager
    def transaction(self, wait: float) -> Iterator[sqlite3.Connection]:
        with self._writing(wait) as db:
            try:
                db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise QueueBusy(str(exc)) from exc
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
                raise QueueBusy(str(exc)) from exc

    def read(self, sql: str, args: tuple[object, ...]) -> list[tuple[object, ...]]:
        with self.lock:
            return self.db.execute(sql, args).fetchall()

    def close(self) -> None:
        with self.lock:
            if self._db is not None:
                self._db.close()
                self._db = None
            if self._finalizer is not None:
                self._finalizer.detach()
                self._finalizer = None

    def forsake(self) -> None:
        """In a forked child: never close the parent's connection (not even when the
        handle is collected): closing it could disturb the parent's locks."""
        if self._finalizer is not None:
            self._finalizer.detach()


class Database:
    """The spool file of this process: two connections, transactions, the schema.

    Raises ``OSError`` or ``sqlite3.Error`` (``SchemaTooNew`` among them) from the
    constructor when the file cannot be created, opened or migrated; the caller then
    keeps the queue in memory.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        make_folders(os.path.dirname(os.path.abspath(path)))
        self.inode = self._open_checked()
        self._missing_told = False
        _fork.register(self)

    def _open_checked(self) -> tuple[int, int]:
        """Open (or reopen) the file: ours, no link, migrated; its (device, inode)."""
        path = self.path
        fd = open_own_file(path)
        try:
            self._open_handles()
            try:
                self._migrate()
                # SQLite opens the path itself (and follows links): it must be the file
                # checked above, not one swapped in since.
                if (os.stat(path).st_dev, os.stat(path).st_ino) != identity(os.fstat(fd)):
                    raise SpoolRefused(f"{path} was replaced while it was being opened")
            except BaseException:
                self.close()
                raise
            return identity(os.fstat(fd))
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Close both connections and open none (in any thread) until the block ends."""
        with self._everything():
            self.close()
            yield

    @contextlib.contextmanager
    def _everything(self) -> Iterator[None]:
        """Every lock of this process's handles, in the order their users take them
        (the writers' lock, each handle's, then the one for opening a connection):
        taking ``_opening`` first would deadlock with a writer opening its handle."""
        front, back = self._front, self._back
        with front.writes, front.lock, back.lock, self._opening:
            yield

    def follow(self) -> None:
        """Reopen the spool if its path is another file now (another process moved a
        damaged one aside and made a fresh one); one ERROR if the file was deleted.

        The worker calls it at every poll; it raises what opening raises.
        """
        try:
            now = identity(os.stat(self.path))
        except FileNotFoundError:
            now = None
        if now == self.inode:
            return
        with self._everything():  # not while this process salvages it, nor writes
            self._follow_changed()

    def _follow_changed(self) -> None:
        after_salvage(self.path)  # another process may be moving it aside: wait for it
        try:
            now = identity(os.stat(self.path))
        except FileNotFoundError:
            if not self._missing_told:
                self._missing_told = True
                log.error(
                    "postbud's spool %s was deleted while in use; a new one is made (what "
                    "it held is gone unless it was sent).",
                    self.path,
                )
            now = None
        if now == self.inode:
            return
        self.close()
        self.inode = self._open_checked()
        self._missing_told = False

    def _migrate(self) -> None:
        # Waits for other processes' writers (many may start at once on a fresh file);
        # it is not on anybody's hot path.
        with self._back.transaction(wait=5.0) as db:  # not self.transaction: no follow()
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            if version > SCHEMA_VERSION:
                raise SchemaTooNew(
                    f"the spool {self.path} has schema version {version}, written by a newer "
                    f"postbud; this one knows up to {SCHEMA_VERSION}"
                )
            for step in MIGRATIONS[version:]:
                for statement in step:
                    db.execute(statement)
            if version < SCHEMA_VERSION:
                # Fixed integer: PRAGMA takes no parameters.
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION:d}")

    def _open_handles(self) -> None:
        # Two handles: the callers' (a submit's one INSERT) and everyone else's, so a
        # submit never queues behind a read; writes of both share one lock.
        writes = threading.RLock()
        if not hasattr(self, "_opening"):
            self._opening = threading.RLock()
        self._front = _Handle(self.path, writes, self._opening)
        self._back = _Handle(self.path, writes, self._opening)

    def transaction(
        self, wait: float = LOCK_WAIT, *, front: bool = False
    ) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE); QueueBusy if not had within ``wait``.

        The worker's handle by default; ``front=True`` for the callers' (submit).
        """
        self._follow_before_writing()
        return (self._front if front else self._back).transaction(wait)

    def statement(
        self, sql: str, args: tuple[object, ...], wait: float = LOCK_WAIT
    ) -> sqlite3.Cursor:
        """One write statement on the callers' handle, its own transaction."""
        self._follow_before_writing()
        return self._front.statement(wait, sql, args)

    def _follow_before_writing(self) -> None:
        """Never write into a file another process moved aside (a salvage): a stat
        (about a microsecond) before each write; not inside a write of this thread."""
        me = threading.get_ident()
        if me in (self._front._writing_now, self._back._writing_now):
            return
        try:
            self.follow()
        except (OSError, sqlite3.Error) as exc:
            raise QueueBusy(f"the spool cannot be reopened: {exc}") from exc

    def read(self, sql: str, *args: object) -> list[tuple[object, ...]]:
        """Run a read-only query (WAL readers never wait for writers).

        On the worker's handle: the callers' handle is kept for writes alone, so a
        submit never waits behind a query.
        """
        return self._back.read(sql, args)

    def checkpoint(self, *, truncate: bool = False) -> None:
        """Fold the WAL into the database (the worker calls it, outside any write).

        ``truncate`` (when the queue is empty) also empties the WAL file, so the bodies
        of delivered mail do not stay readable in it.
        """
        mode = "TRUNCATE" if truncate else "PASSIVE"
        with contextlib.suppress(sqlite3.Error), self._back.lock:
            self._back.db.execute(f"PRAGMA wal_checkpoint({mode})")

    def close(self) -> None:
        """Close both connections (they reopen on next use)."""
        self._front.close()
        self._back.close()

    def _after_fork(self) -> None:
        # SQLite handles must not cross fork: the child keeps the parent's alive but
        # unused (closing them could disturb the parent's locks) and opens its own,
        # lazily (nothing here may fail and stop the other fork hooks).
        for handle in (self._front, self._back):
            handle.forsake()
            _graveyard.append(handle)
        self._opening = threading.RLock()  # a parent's thread may have held it
        self._open_handles()


#: What an outbox that only reads says of a damaged spool (it never repairs one).
DAMAGED_LEFT = (
    "postbud's spool %s is damaged (%s); it is left as it is: the next postbud command "
    "that sends moves it aside and saves what it can."
)


def open_database(path: str | None, *, repair: bool = True) -> Database | None:
    """The spool at ``path``, or None (memory) when there is none or it cannot be used.

    An unusable spool is not a configuration error: one warning per path, then memory.
    ``repair=False`` (an outbox that only reads: ``postbud outbox status``): a damaged
    file is reported, never moved aside or salvaged.
    """
    if path is None:
        return None
    try:
        try:
            return Database(path)
        except sqlite3.DatabaseError as exc:
            if not is_damage(exc):
                raise
            if not repair:
                log.warning(DAMAGED_LEFT, path, exc)
                return None
            salvaged(path, identity(os.stat(path)) if os.path.exists(path) else None)
            return Database(path)
    except Exception as exc:  # OSError, sqlite3.Error: a read-only disk, a bad path...
        if path not in _warned:
            _warned.add(path)
            log.warning(
                "postbud cannot use the spool %s (%s); queued mail is kept in memory "
                "only and is lost if the process dies.",
                path,
                exc,
            )
        return None


def salvaged(path: str, seen: tuple[int, int] | None, skip: Iterable[str] = ()) -> None:
    """Move the damaged spool at ``path`` aside, save what can be read into a fresh one
    (``salvage.py``), and say so in one ERROR (nothing if another process did it)."""
    done = salvage(path, seen, skip, lambda: Database(path))
    if done.moved_to is None:
        return
    dead = f" and {done.dead} dead letter(s)" if done.dead else ""
    lost = f"; {done.lost} message(s) could not be read" if done.lost else ""
    log.error(
        "postbud's spool %s was damaged: it was moved to %s, and %d queued message(s)%s "
        "were saved into a fresh spool%s. Delete the damaged copy once you have looked "
        "at it ('postbud outbox status' lists it).",
        path,
        done.moved_to,
        done.queued,
        dead,
        lost,
    )


# Handles inherited across fork are kept alive here, never closed by the child.
_graveyard: list[_Handle] = []
