"""The state every process of an account shares: gates (waits) and the quota ledger.

A *gate* is a wait that every process sending for an account must respect, stored
where they all see it: a refused login pauses the account's logins (until the
credentials change), a failed connection backs off the account's endpoint, Gmail's
daily-limit reply holds the account. The *ledger* counts accepted recipients over a
rolling 24 h.

``StateStore`` is the small protocol the rest of the outbox uses; ``SQLiteState``
keeps it in the spool database (shared by the processes of one machine) and
``MemoryState`` in this process (``spool=None``); ``redis_state.RedisState`` keeps it
on a Redis server for a fleet of machines (``state="redis://..."``). Every method may
raise ``StateUnavailable``; the callers then keep what they know in this process.

The ledger's count is O(1) whatever the window holds: SQLite triggers keep a running
total per account (``ledger_total``) as entries are inserted and deleted, whoever
writes them, so a read is the total minus the few entries that left the window since
the last write deleted them (an index range), and the oldest entry (an index seek).
"""

from __future__ import annotations

import math
import sqlite3
import threading
from collections import deque
from dataclasses import dataclass
from typing import Protocol

from .db import Database
from .queue import QueueBusy

__all__ = [
    "WINDOW",
    "Gate",
    "MemoryState",
    "Reserved",
    "SQLiteState",
    "StateStore",
    "StateUnavailable",
    "connect_gate",
    "hold_gate",
    "login_gate",
]

#: The quota ledger's rolling window.
WINDOW = 86400.0


class StateUnavailable(Exception):
    """The store cannot be read or written now (busy, full, read-only, damaged)."""


@dataclass(frozen=True)
class Gate:
    """No attempt of its kind before ``until`` (``math.inf``: until it is cleared).

    Attributes:
        until: When the wait ends; ``math.inf`` for a refused login, which waits for
            new credentials (or ``postbud outbox retry``).
        since: When the first failure of this run of failures happened.
        step: Failures in a row (the connection backoff's exponent).
        reason: The reply or error that set it, for ``postbud check`` and ``status``.
        credential: What the gate is about, as a hash (never a secret): for a refused
            login the credential refused, for a TLS failure the TLS set-up (host,
            security, ca_file). A process with another one is not stopped by it.
    """

    until: float
    since: float
    step: int
    reason: str
    credential: str | None = None

    @property
    def needs_user(self) -> bool:
        """Whether only the user can end it (a refused login, a TLS failure), not time."""
        return self.credential is not None or math.isinf(self.until)

    def holds(self, now: float, credential: str | None = None) -> bool:
        """Whether this gate stops an attempt now, made with ``credential`` (None: by
        anybody, as ``postbud outbox status`` asks)."""
        if self.until <= now:
            return False
        return credential is None or self.credential in (None, credential)


def login_gate(account: str) -> str:
    return f"login:{account.lower()}"


def connect_gate(account: str, host: str, port: int) -> str:
    return f"connect:{account.lower()}:{host.lower()}:{port}"


def hold_gate(account: str) -> str:
    return f"hold:{account.lower()}"


class StateStore(Protocol):
    """Gates and the ledger, shared by every process that uses the same store."""

    @property
    def blind(self) -> bool:
        """Whether the ledger's counts are now this process's share of the limit rather
        than a count (a Redis store while Redis is unreachable)."""
        ...

    def gate(self, name: str) -> Gate | None: ...

    def set_gate(self, name: str, gate: Gate) -> None: ...

    def clear_gate(self, name: str, txn: sqlite3.Connection | None = None) -> None:
        """Remove the gate (in ``txn``, a spool transaction, if given)."""
        ...

    def claim(self, name: str, until: float, gate: Gate) -> bool:
        """Replace the gate ``name`` by ``gate`` if it still ends at ``until``: of the
        processes that saw it end, one wins (and makes the next attempt)."""
        ...

    def used(self, account: str, now: float) -> tuple[int, int, float | None]:
        """(recipients, alert recipients, time of the oldest entry) in the window."""
        ...

    def record(
        self,
        account: str,
        recipients: int,
        alert: bool,
        now: float,
        txn: sqlite3.Connection | None = None,
    ) -> None:
        """Count ``recipients`` accepted now (in ``txn``, a spool transaction, if given).

        ``recipients`` may be negative: a correction of an earlier entry (see
        ``settle``), counted at that entry's time so that both leave the window together.
        """
        ...

    def reserve(self, account: str, recipients: int, alert: bool, cap: int, now: float) -> Reserved:
        """Count ``recipients`` now if the window's count plus them stays within ``cap``,
        in one atomic step (of two processes that both fit only one more, one wins)."""
        ...

    def settle(
        self,
        account: str,
        reserved: Reserved,
        accepted: int,
        txn: sqlite3.Connection | None = None,
    ) -> None:
        """Make a reservation count the ``accepted`` recipients only (0: none), in
        ``txn`` if given. A no-op when all were accepted."""
        ...


@dataclass(frozen=True)
class Reserved:
    """The answer of ``StateStore.reserve``.

    Attributes:
        entry: What the store needs to settle the reservation (a spool row, a Redis
            member), or None when it was refused.
        used: Recipients counted in the window before this reservation.
        oldest: Time of the oldest entry in the window (when a refused send may fit).
        at: When the reservation was counted.
        recipients: How many it counts.
        alert: Whether they are alert recipients.
    """

    entry: object
    used: int
    oldest: float | None
    at: float
    recipients: int
    alert: bool

    @property
    def granted(self) -> bool:
        return self.entry is not None


def reserve_with(
    store: StateStore, account: str, recipients: int, alert: bool, cap: int, now: float
) -> Reserved:
    """``reserve`` for a store whose read and write are one atomic step by other means
    (one process's memory, under its lock): the count, then the entry if it fits."""
    used, _, oldest = store.used(account, now)
    if used + recipients > cap:
        return Reserved(None, used, oldest, now, recipients, alert)
    store.record(account, recipients, alert, now)
    return Reserved(True, used, oldest, now, recipients, alert)


def settle_with(
    store: StateStore,
    account: str,
    reserved: Reserved,
    accepted: int,
    txn: sqlite3.Connection | None = None,
) -> None:
    """``settle`` as a correction entry at the reservation's time."""
    if reserved.granted and accepted != reserved.recipients:
        store.record(account, accepted - reserved.recipients, reserved.alert, reserved.at, txn)


class MemoryState:
    """The state of one process (``spool=None``)."""

    blind = False  # its counts are always this process's own

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reserving = threading.Lock()
        self._gates: dict[str, Gate] = {}
        # Per account: entries (at, recipients, alert) and their running sums.
        self._entries: dict[str, deque[tuple[float, int, bool]]] = {}
        self._sums: dict[str, list[int]] = {}

    def gate(self, name: str) -> Gate | None:
        return self._gates.get(name)

    def set_gate(self, name: str, gate: Gate) -> None:
        self._gates[name] = gate

    def clear_gate(self, name: str, txn: sqlite3.Connection | None = None) -> None:
        self._gates.pop(name, None)

    def claim(self, name: str, until: float, gate: Gate) -> bool:
        with self._lock:
            old = self._gates.get(name)
            if old is None or old.until != until:
                return False
            self._gates[name] = gate
            return True

    def used(self, account: str, now: float) -> tuple[int, int, float | None]:
        with self._lock:
            entries = self._entries.get(account)
            if not entries:
                return 0, 0, None
            sums = self._sums[account]
            self._prune(entries, sums, now)
            return sums[0], sums[1], entries[0][0] if entries else None

    @staticmethod
    def _prune(entries: deque[tuple[float, int, bool]], sums: list[int], now: float) -> None:
        """Drop what left the window (each entry once: O(1) amortised)."""
        while entries and entries[0][0] <= now - WINDOW:
            _, n, alert = entries.popleft()
            sums[0] -= n
            sums[1] -= n if alert else 0

    def record(
        self,
        account: str,
        recipients: int,
        alert: bool,
        now: float,
        txn: sqlite3.Connection | None = None,
    ) -> None:
        with self._lock:
            entries = self._entries.setdefault(account, deque())
            entries.append((now, recipients, alert))
            sums = self._sums.setdefault(account, [0, 0])
            sums[0] += recipients
            sums[1] += recipients if alert else 0
            self._prune(entries, sums, now)

    def reserve(self, account: str, recipients: int, alert: bool, cap: int, now: float) -> Reserved:
        with self._reserving:  # the count and the entry, with no reservation between
            return reserve_with(self, account, recipients, alert, cap, now)

    def settle(
        self,
        account: str,
        reserved: Reserved,
        accepted: int,
        txn: sqlite3.Connection | None = None,
    ) -> None:
        settle_with(self, account, reserved, accepted)


#: Ledger entries written by callers (blocking sends) between two WAL checkpoints.
CHECKPOINT_EVERY = 200
# A ledger entry (the trigger adds it to ledger_total).
_RECORD = "INSERT INTO ledger VALUES (?, ?, ?, ?)"
# (recipients, alert recipients, oldest entry, recipients that left the window) of an
# account: the running total minus what left the window. Arguments: account, since,
# account, since, account.
_USED = (
    "SELECT t.recipients - COALESCE(e.recipients, 0), t.alerts - COALESCE(e.alerts, 0),"
    " (SELECT MIN(at) FROM ledger WHERE account = ? AND at > ?), e.recipients"
    " FROM ledger_total AS t, (SELECT SUM(recipients) AS recipients,"
    " SUM(recipients * alert) AS alerts FROM ledger WHERE account = ? AND at <= ?)"
    " AS e WHERE t.account = ?"
)


class SQLiteState:
    """The state in the spool database, shared by the processes that use the file."""

    blind = False  # a count read from the file, or StateUnavailable

    def __init__(self, database: Database) -> None:
        self.database = database
        self._writes = 0  # ledger entries written outside the worker's transactions
        # Accounts whose last used() saw entries that left the 24 h window: only then
        # does a record() outside a transaction delete some (they no longer count
        # anyway; deleting is cleanup), so a send's record is one INSERT otherwise.
        self._expired: set[str] = set()

    # -- gates ------------------------------------------------------------------------

    def gate(self, name: str) -> Gate | None:
        rows = self._read(
            "SELECT until, since, step, reason, credential FROM gates WHERE name = ?", name
        )
        return _gate(rows[0]) if rows else None

    def set_gate(self, name: str, gate: Gate) -> None:
        self._write(
            "INSERT INTO gates VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET "
            "until = excluded.until, since = excluded.since, step = excluded.step, "
            "reason = excluded.reason, credential = excluded.credential",
            (name, gate.until, gate.since, gate.step, gate.reason, gate.credential),
        )

    def clear_gate(self, name: str, txn: sqlite3.Connection | None = None) -> None:
        if txn is not None:
            txn.execute("DELETE FROM gates WHERE name = ?", (name,))
        else:
            self._write("DELETE FROM gates WHERE name = ?", (name,))

    def claim(self, name: str, until: float, gate: Gate) -> bool:
        return (
            self._write(
                "UPDATE gates SET until = ?, since = ?, step = ?, reason = ?, credential = ? "
                "WHERE name = ? AND until = ?",
                (gate.until, gate.since, gate.step, gate.reason, gate.credential, name, until),
            )
            == 1
        )

    # -- the ledger -------------------------------------------------------------------

    def used(self, account: str, now: float) -> tuple[int, int, float | None]:
        since = now - WINDOW
        rows = self._read(_USED, account, since, account, since, account)
        if not rows:
            return 0, 0, None
        total, alerts, oldest, expired = rows[0]
        if expired is None:
            self._expired.discard(account)
        else:
            self._expired.add(account)
        return (
            int(str(total)),
            int(str(alerts)),
            None if oldest is None else float(str(oldest)),
        )

    def record(
        self,
        account: str,
        recipients: int,
        alert: bool,
        now: float,
        txn: sqlite3.Connection | None = None,
    ) -> None:
        if txn is not None:
            self._record_in(txn, account, recipients, alert, now)
            return
        try:
            if account not in self._expired:  # one statement: SQLite's autocommit
                self.database.statement(_RECORD, (account, now, recipients, int(alert)), 1.0)
            else:
                with self.database.transaction(wait=1.0) as db:
                    self._record_in(db, account, recipients, alert, now)
                self._expired.discard(account)
        except (QueueBusy, sqlite3.Error) as exc:
            raise StateUnavailable(_why(exc)) from exc
        self._wrote()

    def _wrote(self) -> None:
        # Blocking sends write here with no worker to checkpoint the WAL (the spool
        # turns autocheckpoint off): without this, a site that only sends blocking
        # grows the WAL by ~13 KB a message, without end. PASSIVE, outside the lock.
        self._writes += 1
        if self._writes % CHECKPOINT_EVERY == 0:
            self.database.checkpoint()

    def reserve(self, account: str, recipients: int, alert: bool, cap: int, now: float) -> Reserved:
        # One write transaction (BEGIN IMMEDIATE): no other process can count between
        # this read and this insert.
        try:
            with self.database.transaction(wait=1.0) as db:
                rows = db.execute(_USED, (account, now - WINDOW) * 2 + (account,)).fetchall()
                first, _, earliest, _ = rows[0] if rows else (0, 0, None, None)
                used = int(str(first))
                oldest = None if earliest is None else float(str(earliest))
                if used + recipients > cap:
                    return Reserved(None, used, oldest, now, recipients, alert)
                row = self._record_in(db, account, recipients, alert, now)
        except (QueueBusy, sqlite3.Error) as exc:
            raise StateUnavailable(_why(exc)) from exc
        self._expired.discard(account)
        self._wrote()
        return Reserved(row, used, oldest, now, recipients, alert)

    def settle(
        self,
        account: str,
        reserved: Reserved,
        accepted: int,
        txn: sqlite3.Connection | None = None,
    ) -> None:
        if not reserved.granted or accepted == reserved.recipients:
            return
        # The entry itself (the trigger moves the total), if still in the window.
        where = (reserved.entry, account, reserved.at)
        sql = "UPDATE ledger SET recipients = ? WHERE rowid = ? AND account = ? AND at = ?"
        args: tuple[object, ...] = (accepted, *where)
        if accepted == 0:
            sql, args = "DELETE FROM ledger WHERE rowid = ? AND account = ? AND at = ?", where
        if txn is not None:
            txn.execute(sql, args)
        else:
            self._write(sql, args)

    def _record_in(
        self, db: sqlite3.Connection, account: str, recipients: int, alert: bool, now: float
    ) -> int:
        # Runs inside the worker's write transaction, which a submit may be waiting
        # for: the insert (the trigger adds it to the total), and the entries that left
        # the window (the trigger takes them off): few at a time, each deleted once.
        row = db.execute(_RECORD, (account, now, recipients, int(alert))).lastrowid
        db.execute(
            "DELETE FROM ledger WHERE rowid IN (SELECT rowid FROM ledger "
            "WHERE account = ? AND at <= ? LIMIT 100)",
            (account, now - WINDOW),
        )
        return int(row or 0)

    # -- plumbing ---------------------------------------------------------------------

    def _read(self, sql: str, *args: object) -> list[tuple[object, ...]]:
        try:
            return self.database.read(sql, *args)
        except sqlite3.Error as exc:
            raise StateUnavailable(_why(exc)) from exc

    def _write(self, sql: str, args: tuple[object, ...]) -> int:
        try:
            with self.database.transaction(wait=1.0) as db:
                return db.execute(sql, args).rowcount
        except (QueueBusy, sqlite3.Error) as exc:
            raise StateUnavailable(_why(exc)) from exc


def _gate(row: tuple[object, ...]) -> Gate:
    until, since, step, reason, credential = row
    return Gate(
        until=float(str(until)),
        since=float(str(since)),
        step=int(str(step)),
        reason=str(reason),
        credential=None if credential is None else str(credential),
    )


def _why(exc: BaseException) -> str:
    """The reason a store failed, in the words a user acts on."""
    text = str(exc)
    cause = exc.__cause__ if isinstance(exc, QueueBusy) and exc.__cause__ else exc
    lowered = f"{text} {cause}".lower()
    if "full" in lowered:
        return f"the disk or the spool is full ({text})"
    if "readonly" in lowered or "read-only" in lowered:
        return f"the spool is read-only ({text})"
    if "locked" in lowered or "busy" in lowered or "in use" in lowered:
        return f"the spool is busy ({text})"
    return text
