"""A damaged spool: moved aside, what can still be read saved into a fresh one.

A spool can be damaged while it is in use (a disk fault, a file truncated or written
over by something else) or at rest. Using it further is worse than stopping: rows the
worker claimed but can no longer delete would be sent again every lease period. So on
SQLite's "malformed" or "not a database" errors, one process, holding an exclusive
lock file beside the spool, moves the file (and its ``-wal`` and ``-shm``) aside as
``<spool>.damaged-<time>``, reads what it can of the queued mail, the ledger and the
gates from the damaged copy, and writes it into a fresh 0600 spool at the same path.
The other processes notice that the path is another file (``st_ino``) and reopen it.
What was salvaged goes out; the damaged copy stays for the user to inspect or delete
(``postbud outbox status`` lists it).
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

from .files import identity, open_own_file, refuse_foreign

__all__ = ["Fresh", "Salvaged", "after_salvage", "damaged_copies", "is_damage", "salvage"]

log = logging.getLogger("postbud")

# SQLite's words for a file it cannot trust (SQLITE_CORRUPT, SQLITE_NOTADB), and for a
# spool whose tables are gone (the file truncated to nothing under a running process).
_DAMAGE = (
    "malformed",
    "not a database",
    "file is encrypted",
    "database corrupt",
    "no such table: outbox",
    "no such table: ledger",
    "no such table: gates",
)
# Every column a row needs again (leases are not kept: the fresh file has no claims).
ROW = (
    "account, message_id, mail_from, recipients, data, smtputf8, eightbit, priority, created,"
    " next_try, attempts, last_code, last_error, state, dead_at, hint"
)


def is_damage(exc: BaseException) -> bool:
    """Whether ``exc`` says the spool file is damaged (not busy, full or read-only)."""
    found: BaseException | None = exc
    while found is not None:
        if isinstance(found, sqlite3.DatabaseError):
            code = getattr(found, "sqlite_errorname", "")
            if code in ("SQLITE_CORRUPT", "SQLITE_NOTADB") or any(
                word in str(found).lower() for word in _DAMAGE
            ):
                return True
        found = found.__cause__
    return False


class Fresh(Protocol):
    """The fresh spool ``salvage`` writes into (a ``db.Database``)."""

    def transaction(
        self, wait: float = ...
    ) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """One write transaction."""
        ...

    def close(self) -> None:
        """Close its connections."""
        ...


@dataclass(frozen=True)
class Salvaged:
    """What ``salvage`` did: where the damaged file went, and what it saved."""

    moved_to: str | None  # None: another process had salvaged it already
    queued: int = 0  # queued messages saved into the fresh spool
    dead: int = 0  # dead letters saved
    lost: int = 0  # rows seen but not readable


def damaged_copies(path: str) -> list[str]:
    """The damaged copies kept beside the spool at ``path``, oldest first."""
    found = glob.glob(glob.escape(path) + ".damaged-*")
    return sorted(p for p in found if not p.endswith(("-wal", "-shm")))


def after_salvage(path: str) -> None:
    """Wait while a process holds the lock file of the spool at ``path`` (it is moving a
    damaged spool aside and filling a fresh one); at once when nobody does."""
    try:
        fd = os.open(path + ".lock", os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return  # no lock file: no salvage ever ran here
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _locked(path: str) -> Iterator[None]:
    fd = open_own_file(path + ".lock")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def salvage(
    path: str,
    seen: tuple[int, int] | None,
    skip: Iterable[str],
    open_fresh: Callable[[], Fresh],
) -> Salvaged:
    """Move the damaged spool at ``path`` aside and save what it can of it into a fresh
    spool there (``open_fresh()`` makes it), all under the lock file.

    ``seen``: the (device, inode) of the file this process found damaged; if the path
    is another file by the time the lock is held, another process salvaged it already.
    ``skip``: Message-IDs not to save (delivered, but the damaged file could not record
    it). Raises ``OSError`` or ``sqlite3.Error`` when the fresh spool cannot be made.
    """
    _refuse_foreign(path)  # before the lock file is made: nothing beside it either
    with _locked(path):
        try:
            now_there = identity(os.stat(path))
        except FileNotFoundError:
            now_there = None
        if seen is not None and now_there != seen:
            return Salvaged(None)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        moved_to = f"{path}.damaged-{stamp}"
        n = 1
        while os.path.exists(moved_to):
            n += 1
            moved_to = f"{path}.damaged-{stamp}-{n}"
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.rename(path + suffix, moved_to + suffix)
        fresh = open_fresh()  # at once: other processes find a sound file at the path
        try:
            return _copy(moved_to, fresh, set(skip))
        finally:
            fresh.close()


def _refuse_foreign(path: str) -> None:
    """``files.refuse_foreign`` for the file at ``path`` now (a file put there under a
    running process is never moved aside unless it is a spool of ours)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return
    try:
        refuse_foreign(path, fd, os.fstat(fd))
    finally:
        os.close(fd)


def _copy(path: str, fresh: Fresh, skip: set[str]) -> Salvaged:
    """Copy what can be read of the damaged file at ``path`` into ``fresh``: rows one
    by one (a bad page loses the rows on it, not the rest), in batches (bodies are not
    all held in memory), then the ledger and the gates if they read."""
    counts = {"queued": 0, "dead": 0}
    lost = 0
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error:
        return Salvaged(path)
    try:
        try:
            ids = [int(r[0]) for r in db.execute("SELECT id FROM outbox ORDER BY id")]
        except sqlite3.Error:
            ids = _ids_one_by_one(db)
        batch: list[tuple[object, ...]] = []
        for key in ids:
            try:
                found = db.execute(
                    f"SELECT {ROW} FROM outbox WHERE id = ?",  # noqa: S608 - constants
                    (key,),
                ).fetchone()
            except sqlite3.Error:
                lost += 1
                continue
            if found is None or found[1] in skip:
                continue
            state = str(found[13])
            if state not in counts:
                continue
            counts[state] += 1
            batch.append(tuple(found))
            if len(batch) >= 200:
                _insert(fresh, batch)
                batch = []
        _insert(fresh, batch)
        ledger = _all(db, "SELECT account, at, recipients, alert FROM ledger")
        gates = _all(db, "SELECT name, until, since, step, reason, credential FROM gates")
        with fresh.transaction(wait=5.0) as out:
            out.executemany("INSERT INTO ledger VALUES (?, ?, ?, ?)", ledger)
            out.executemany("INSERT OR REPLACE INTO gates VALUES (?, ?, ?, ?, ?, ?)", gates)
        return Salvaged(path, counts["queued"], counts["dead"], lost)
    finally:
        db.close()


def _insert(fresh: Fresh, rows: list[tuple[object, ...]]) -> None:
    if rows:
        with fresh.transaction(wait=5.0) as out:
            out.executemany(
                f"INSERT INTO outbox ({ROW}) VALUES ({', '.join('?' * ROW.count(',') + '?')})",  # noqa: S608
                rows,
            )


def _ids_one_by_one(db: sqlite3.Connection) -> list[int]:
    """Row ids when the index cannot be read: probe the table by rowid ranges."""
    found: list[int] = []
    try:
        top = int(db.execute("SELECT MAX(rowid) FROM outbox").fetchone()[0] or 0)
    except sqlite3.Error:
        top = 100_000
    for key in range(1, top + 1):
        with contextlib.suppress(sqlite3.Error):
            if db.execute("SELECT 1 FROM outbox WHERE rowid = ?", (key,)).fetchone():
                found.append(key)
    return found


def _all(db: sqlite3.Connection, sql: str) -> list[tuple[object, ...]]:
    try:
        return [tuple(r) for r in db.execute(sql)]
    except sqlite3.Error:
        return []
