"""The quota ledger: accepted recipients over a rolling 24 h, and Gmail's sending holds.

Gmail suspends an account that sends to more than its daily limit (about 500
recipients for consumer accounts) for up to a day, and a suspended account cannot
send the alert about it. The ledger counts what was accepted (both ``send()`` and the
outbox worker record into it) in the spool database, so every process on one spool
shares one count; ordinary mail stops at ``1 - alert_reserve`` of the limit so alerts
still go out. After a real ``550 5.4.5`` (mail sent outside postbud counts too) the
account is held for an hour, then one message probes whether the block is over.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections import deque

from postbud import _fork
from postbud._config import Settings
from postbud.errors import QuotaExceededError

from .db import Database
from .queue import QueueBusy
from .retry import DEFAULT_POLICY, RetryPolicy

__all__ = ["Ledger"]

log = logging.getLogger("postbud")

WINDOW = 86400.0


class Ledger:
    """Recipients accepted in the last 24 h for one account, and its hold."""

    def __init__(
        self,
        settings: Settings,
        database: Database | None,
        policy: RetryPolicy = DEFAULT_POLICY,
    ) -> None:
        self.account = settings.username.lower()
        self.limit = settings.daily_limit
        self.reserve = settings.alert_reserve
        self.max_share = settings.alert_max_share
        self._db = database
        self._hold_for = policy.hold
        self._entries: deque[tuple[float, int, bool]] = deque()  # without a spool
        self._hold: tuple[float, float] | None = None  # (until, since) without a spool
        self._lock = threading.Lock()
        self._warned: set[str] = set()
        self._seen = 0  # the last count read, plus what was recorded since
        self._records = 0
        _fork.register(self)

    def _after_fork(self) -> None:
        self._lock = threading.Lock()

    # -- reading -----------------------------------------------------------------------

    def used(self, now: float) -> tuple[int, int, float | None]:
        """(recipients, alert recipients, time of the oldest entry) in the window."""
        since = now - WINDOW
        if self._db is not None:
            try:
                rows = self._db.read(
                    "SELECT COALESCE(SUM(recipients), 0), COALESCE(SUM(recipients * alert), 0),"
                    " MIN(at) FROM ledger WHERE account = ? AND at > ?",
                    self.account,
                    since,
                )
            except sqlite3.Error as exc:  # fall back to what this process counted
                self._warn_once("read", f"postbud cannot read the quota ledger ({exc}).")
            else:
                total, alerts, oldest = rows[0]
                return (
                    int(str(total)),
                    int(str(alerts)),
                    None if oldest is None else float(str(oldest)),
                )
        with self._lock:
            while self._entries and self._entries[0][0] <= since:
                self._entries.popleft()
            return (
                sum(n for _, n, _ in self._entries),
                sum(n for _, n, a in self._entries if a),
                self._entries[0][0] if self._entries else None,
            )

    def alerts_over_share(self, now: float) -> bool:
        """Whether alerts used more than ``alert_max_share`` of the daily limit.

        The alert handler then only sends digests, so one noisy error cannot eat the
        whole day's quota.
        """
        _, alerts, _ = self.used(now)
        return alerts >= self.max_share * self.limit

    def held_until(self, now: float) -> float | None:
        """End of the current hold after a 550 5.4.5, or None."""
        until = self._hold[0] if self._hold else None  # this process's own view
        if self._db is not None:
            try:
                rows = self._db.read("SELECT until FROM holds WHERE account = ?", self.account)
            except sqlite3.Error as exc:
                self._warn_once("read", f"postbud cannot read the quota ledger ({exc}).")
            else:
                if rows:
                    until = max(until or 0.0, float(str(rows[0][0])))
        return until if until is not None and until > now else None

    def check(self, recipients: int, alert: bool, now: float, *, hold: bool = True) -> None:
        """Raise ``QuotaExceededError`` (with ``retry_after``) if this send must wait.

        With ``hold=False`` only the count matters: ``send()`` makes its one attempt
        even while the outbox holds after a 550 5.4.5 (Gmail has the last word).
        """
        until = self.held_until(now) if hold else None
        if until is not None:
            raise QuotaExceededError(
                f"Sending for {self.account} is held after Gmail's daily-limit reply "
                f"(550 5.4.5); the next probe is in {until - now:.0f} s.",
                retry_after=until - now,
                hint="Gmail blocks an account for up to 24 hours after its daily limit. "
                "Nothing is lost: queued mail goes out when the block ends.",
            )
        used, _, oldest = self.used(now)
        self._seen = used
        cap = self.limit if alert else int(self.limit * (1 - self.reserve))
        if recipients > cap:  # waiting cannot help: it will never fit in one day
            raise QuotaExceededError(
                f"This message has {recipients} recipients, more than the "
                f"{cap} a day allows for {self.account}.",
                retryable=False,
                hint="Raise daily_limit if the account allows more (Workspace: 2,000), "
                "or send to fewer people at a time.",
            )
        if used + recipients > cap:
            wait = (oldest + WINDOW - now) if oldest is not None else WINDOW
            self._warn_once(
                "full",
                f"The daily limit for {self.account} leaves no room: {used} of "
                f"{self.limit} recipients used in the last 24 h"
                + ("" if alert else f" (ordinary mail stops at {cap})")
                + "; mail waits.",
            )
            raise QuotaExceededError(
                f"Sending to {recipients} more recipient(s) would pass the daily limit of "
                f"{self.account} ({used} of {self.limit} used in the last 24 h"
                + ("" if alert else f"; ordinary mail stops at {cap} to keep room for alerts")
                + ").",
                retry_after=max(1.0, wait),
                hint="Raise daily_limit if the account allows more (Workspace: 2,000), or "
                "send less; queued mail waits, it is not dropped.",
            )

    # -- writing -----------------------------------------------------------------------

    def record(
        self, recipients: int, alert: bool, now: float, db: sqlite3.Connection | None = None
    ) -> None:
        """Count ``recipients`` accepted now; the hold, if any, is over.

        ``db``: a spool transaction to record in (the worker settles a row and counts
        its recipients in one commit).
        """
        if recipients <= 0:
            return
        if db is not None:
            self._record_in(db, recipients, alert, now)
        elif self._db is not None:
            try:
                with self._db.transaction(wait=1.0) as txn:
                    self._record_in(txn, recipients, alert, now)
            except QueueBusy:
                log.warning(
                    "postbud could not record %d sent recipient(s) in the quota "
                    "ledger (the spool is busy).",
                    recipients,
                )
        else:
            with self._lock:
                self._entries.append((now, recipients, alert))
        with self._lock:
            self._hold = None
        self._warned.discard("hold")
        # The count check() just read, plus these: no second query per message.
        self._seen += recipients
        if self._seen >= 0.8 * self.limit:
            self._warn_once(
                "80",
                f"{self._seen} of {self.limit} daily recipients for "
                f"{self.account} are used (80 % or more).",
            )
        else:
            self._warned.discard("80")
            self._warned.discard("full")

    def _record_in(self, db: sqlite3.Connection, recipients: int, alert: bool, now: float) -> None:
        # Runs inside the worker's write transaction, which a submit may be waiting
        # for: only the insert every time, the housekeeping now and then.
        db.execute(
            "INSERT INTO ledger VALUES (?, ?, ?, ?)", (self.account, now, recipients, int(alert))
        )
        self._records += 1
        if self._records % 100 == 1:
            db.execute(
                "DELETE FROM ledger WHERE account = ? AND at <= ?", (self.account, now - WINDOW)
            )
        if self._hold is not None or self._records % 100 == 1:  # a hold ends with a success
            db.execute("DELETE FROM holds WHERE account = ?", (self.account,))

    def hold(self, now: float) -> float:
        """Hold delivery after a 550 5.4.5; returns when the next probe may go."""
        until = now + self._hold_for
        with self._lock:  # this process holds in any case...
            self._hold = (until, self._hold[1] if self._hold else now)
        if self._db is not None:  # ...and tells the others through the spool
            try:
                with self._db.transaction(wait=1.0) as db:
                    db.execute(
                        "INSERT INTO holds VALUES (?, ?, ?) ON CONFLICT(account) DO UPDATE "
                        "SET until = excluded.until",
                        (self.account, until, now),
                    )
            except (QueueBusy, sqlite3.Error) as exc:
                self._warn_once("write", f"postbud cannot record the hold in the spool ({exc}).")
        self._warn_once(
            "hold",
            f"Gmail refused mail for {self.account} with its daily-limit "
            "reply (550 5.4.5): delivery holds for an hour, then probes again.",
        )
        return until

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(message)
