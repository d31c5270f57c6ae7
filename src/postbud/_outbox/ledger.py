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

import contextlib
import logging
import sqlite3
import threading
from dataclasses import dataclass

from postbud import _fork
from postbud._config import Settings
from postbud.errors import QuotaExceededError

from .retry import DEFAULT_POLICY, RetryPolicy
from .state import WINDOW, Gate, MemoryState, Reserved, StateStore, StateUnavailable, hold_gate

__all__ = ["Ledger", "Reservation"]

log = logging.getLogger("postbud")


@dataclass(frozen=True)
class Reservation:
    """Recipients ``Ledger.reserve`` counted for a send, until ``Ledger.settle``.

    Attributes:
        stored: The store's reservation; None when the store could not be reached
            (the count then happens at ``settle``, in this process if need be).
        recipients: How many were reserved.
        alert: Whether they are alert recipients.
        at: When.
    """

    stored: Reserved | None
    recipients: int
    alert: bool
    at: float


class Ledger:
    """Recipients accepted in the last 24 h for one account, and its hold.

    The counts and the hold live in the ``StateStore`` (the spool's, shared by its
    processes); when the store cannot be read or written, this process counts in
    memory and merges what it counted once the store works again.
    """

    def __init__(
        self,
        settings: Settings,
        state: StateStore,
        policy: RetryPolicy = DEFAULT_POLICY,
    ) -> None:
        self.account = settings.username.lower()
        self.limit = settings.daily_limit
        self.alert_reserve = settings.alert_reserve
        self.max_share = settings.alert_max_share
        self.state = state
        self._hold_for = policy.hold
        #: Seconds a claimed probe holds the others back (its attempt, with room).
        self.probe_window = max(60.0, 4 * settings.timeout)
        self._local = MemoryState()  # what the store could not take, until it can
        self._unmerged: list[tuple[int, bool, float]] = []
        self._hold: tuple[float, float] | None = None  # this process's (until, since)
        self._hold_seen = False  # another process's hold was read: a success ends it
        self._lock = threading.Lock()
        self._warned: set[str] = set()
        self._seen = 0  # the last count read, plus what was recorded since
        _fork.register(self)

    def _after_fork(self) -> None:
        self._lock = threading.Lock()

    # -- reading -----------------------------------------------------------------------

    def used(self, now: float) -> tuple[int, int, float | None]:
        """(recipients, alert recipients, time of the oldest entry) in the window."""
        try:
            self._merge()
            total, alerts, oldest = self.state.used(self.account, now)
        except StateUnavailable as exc:  # fall back to what this process counted
            self._warn_once("read", f"postbud cannot read the quota ledger ({exc}).")
            return self._local.used(self.account, now)
        with self._lock:
            unmerged = sum(n for n, _, at in self._unmerged if at > now - WINDOW)
            unmerged_alerts = sum(n for n, a, at in self._unmerged if a and at > now - WINDOW)
        return total + unmerged, alerts + unmerged_alerts, oldest

    def alerts_over_share(self, now: float) -> bool:
        """Whether alerts used more than ``alert_max_share`` of the daily limit.

        The alert handler then only sends digests, so one noisy error cannot eat the
        whole day's quota.
        """
        _, alerts, _ = self.used(now)
        return alerts >= self.max_share * self.limit

    def held_until(self, now: float, *, probe: bool = False) -> float | None:
        """End of the current hold after a 550 5.4.5, or None.

        ``probe``: this process is about to send. When the hold has just ended, it
        claims the probe in the store (the hold moves ``probe_window`` seconds on for
        the others), so of every process sharing the store one probes whether Gmail's
        block is over, not one per process. A probe that never reports (its process
        died) frees the next one when that window ends.
        """
        until = self._hold[0] if self._hold else None  # this process's own view
        try:
            gate = self.state.gate(hold_gate(self.account))
            if gate is not None and probe and gate.until <= now:
                claimed = Gate(now + self.probe_window, gate.since, gate.step + 1, gate.reason)
                if not self.state.claim(hold_gate(self.account), gate.until, claimed):
                    gate = self.state.gate(hold_gate(self.account))  # another one probes
        except StateUnavailable as exc:
            self._warn_once("read", f"postbud cannot read the quota ledger ({exc}).")
        else:
            if gate is not None:
                self._hold_seen = True
                if not (probe and gate.until <= now):
                    until = max(until or 0.0, gate.until)
        return until if until is not None and until > now else None

    def reserve(
        self, recipients: int, alert: bool, now: float, *, hold: bool = True
    ) -> Reservation:
        """Count ``recipients`` before sending to them, or raise ``QuotaExceededError``
        (with ``retry_after``) if this send must wait. ``settle`` says how many were
        accepted once the send is over (0 if it failed).

        The check and the count are one atomic step in the store, so processes that
        share it never pass the limit between them. With ``hold=False`` only the count
        matters: ``send()`` makes its one attempt even while the outbox holds after a
        550 5.4.5 (Gmail has the last word), and nothing is logged: its caller gets
        the error, and nothing was queued.
        """
        until = self.held_until(now, probe=True) if hold else None
        if until is not None:
            raise QuotaExceededError(
                f"Sending for {self.account} is held after Gmail's daily-limit reply "
                f"(550 5.4.5); the next probe is in {until - now:.0f} s.",
                retry_after=until - now,
                hint="Gmail blocks an account for up to 24 hours after its daily limit. "
                "Nothing is lost: queued mail goes out when the block ends.",
            )
        cap = self.limit if alert else int(self.limit * (1 - self.alert_reserve))
        if recipients > cap:  # waiting cannot help: it will never fit in one day
            raise QuotaExceededError(
                f"This message has {recipients} recipients, more than the "
                f"{cap} a day allows for {self.account}.",
                retryable=False,
                hint="Raise daily_limit if the account allows more (Workspace: 2,000), "
                "or send to fewer people at a time.",
            )
        try:
            self._merge()
            with self._lock:  # what the store has not taken yet counts too
                waiting = sum(n for n, _, at in self._unmerged if at > now - WINDOW)
            got = self.state.reserve(self.account, recipients, alert, cap - waiting, now)
        except StateUnavailable as exc:  # fall back to what this process counted
            self._warn_once("read", f"postbud cannot read the quota ledger ({exc}).")
            used, _, oldest = self._local.used(self.account, now)
            if used + recipients > cap:
                raise self._full(recipients, alert, cap, used, oldest, now, hold) from None
            self._seen = used
            return Reservation(None, recipients, alert, now)
        used = got.used + waiting
        if not got.granted:
            raise self._full(recipients, alert, cap, used, got.oldest, now, hold)
        self._seen = used
        return Reservation(got, recipients, alert, now)

    def _full(
        self,
        recipients: int,
        alert: bool,
        cap: int,
        used: int,
        oldest: float | None,
        now: float,
        hold: bool,
    ) -> QuotaExceededError:
        wait = (oldest + WINDOW - now) if oldest is not None else WINDOW
        if self.state.blind:  # Redis away: a share, not a count
            return self._share_used(recipients, alert, hold, wait)
        if hold:  # the outbox's worker: the message stays queued
            self._warn_once(
                "full",
                f"The daily limit for {self.account} leaves no room: {used} of "
                f"{self.limit} recipients used in the last 24 h"
                + ("" if alert else f" (ordinary mail stops at {cap})")
                + "; queued mail waits.",
            )
        return QuotaExceededError(
            f"Sending to {recipients} more recipient(s) would pass the daily limit of "
            f"{self.account} ({used} of {self.limit} used in the last 24 h"
            + ("" if alert else f"; ordinary mail stops at {cap} to keep room for alerts")
            + ").",
            retry_after=max(1.0, wait),
            hint="Raise daily_limit if the account allows more (Workspace: 2,000), or "
            + (
                "send less; queued mail waits, it is not dropped."
                if hold
                else "send less; this message was not sent (submit() would queue it)."
            ),
        )

    # -- writing -----------------------------------------------------------------------

    def record(
        self, recipients: int, alert: bool, now: float, db: sqlite3.Connection | None = None
    ) -> None:
        """Count ``recipients`` accepted now; the hold, if any, is over.

        ``db``: a spool transaction to record in (the worker settles a row and counts
        its recipients in one commit). When the store cannot take the count (a full
        or read-only disk), this process keeps it and merges it later.
        """
        if recipients <= 0:
            return
        self._local.record(self.account, recipients, alert, now)
        try:
            self.state.record(self.account, recipients, alert, now, db)
        except StateUnavailable as exc:
            self._keep(recipients, alert, now, exc)
        self._succeeded(recipients, db)

    def settle(
        self,
        reservation: Reservation,
        accepted: int,
        now: float,
        db: sqlite3.Connection | None = None,
    ) -> None:
        """The send that ``reservation`` counted is over: ``accepted`` recipients got it
        (0: none, and the reservation is given back). ``db`` as for ``record``."""
        stored = reservation.stored
        if stored is None:  # the store could not count it: this process does now
            self.record(accepted, reservation.alert, now, db)
            return
        if accepted > 0:
            self._local.record(self.account, accepted, reservation.alert, now)
        try:
            self.state.settle(self.account, stored, accepted, db)
        except StateUnavailable as exc:  # a correction, at the reservation's time
            self._keep(accepted - reservation.recipients, reservation.alert, stored.at, exc)
        if accepted > 0:
            self._succeeded(accepted, db)

    def _share_used(
        self, recipients: int, alert: bool, hold: bool, wait: float
    ) -> QuotaExceededError:
        """The refusal while the shared state (Redis) is unreachable: this
        process spent its share of the daily limit, whatever the fleet's count is."""
        kind = "alert" if alert else "ordinary"
        if hold:
            self._warn_once(
                "full",
                f"postbud's shared state is unreachable and this process has used its "
                f"share of the daily limit of {self.account} for {kind} mail; queued "
                "mail waits until Redis answers.",
            )
        return QuotaExceededError(
            f"Sending to {recipients} more recipient(s) would pass this process's share "
            f"of the daily limit of {self.account} while its shared state (Redis) is "
            "unreachable.",
            retry_after=max(1.0, wait),
            hint="Each process may spend only its part of what was left at its last contact "
            "with Redis (see 'Running on several machines'); "
            + (
                "queued mail waits, it is not dropped."
                if hold
                else "this message was not sent (submit() would queue it)."
            ),
        )

    def _keep(self, recipients: int, alert: bool, at: float, exc: StateUnavailable) -> None:
        """An entry the store could not take: this process keeps it, merged later."""
        with self._lock:
            self._unmerged.append((recipients, alert, at))
        self._warn_once(
            "write",
            f"postbud could not record sent recipients in the quota ledger ({exc}); "
            "this process counts them and records them when it can.",
        )

    def _succeeded(self, recipients: int, db: sqlite3.Connection | None) -> None:
        """After an accepted send: a hold is over; the 80 % warning, once."""
        if self._hold is not None or self._hold_seen:  # a hold ends with a success
            with self._lock:
                self._hold, self._hold_seen = None, False
            with contextlib.suppress(StateUnavailable):
                self.state.clear_gate(hold_gate(self.account), db)
        self._warned.discard("hold")
        # The count reserve() just read, plus these: no second query per message.
        self._seen += recipients
        if self.state.blind:
            pass  # a share of the limit, not the fleet's count: no "80 % used" from it
        elif self._seen >= 0.8 * self.limit:
            self._warn_once(
                "80",
                f"{self._seen} of {self.limit} daily recipients for "
                f"{self.account} are used (80 % or more).",
            )
        else:
            self._warned.discard("80")
            self._warned.discard("full")

    def _merge(self) -> None:
        """Record in the store what it could not take before (raises StateUnavailable)."""
        if not self._unmerged:
            return
        with self._lock:
            waiting, self._unmerged = self._unmerged, []
        for k, (recipients, alert, at) in enumerate(waiting):
            try:
                self.state.record(self.account, recipients, alert, at)
            except StateUnavailable:
                with self._lock:
                    self._unmerged[:0] = waiting[k:]
                raise
        self._warned.discard("write")

    def hold(self, now: float, *, warn: bool = True) -> float:
        """Hold delivery after a 550 5.4.5; returns when the next probe may go.

        ``warn=False``: a blocking ``send()`` got the reply; its caller has the error
        and nothing of it was queued, so no line says that delivery "holds"."""
        until = now + self._hold_for
        with self._lock:  # this process holds in any case...
            since = self._hold[1] if self._hold else now
            self._hold = (until, since)
        try:  # ...and tells the others through the store
            self.state.set_gate(
                hold_gate(self.account),
                Gate(until, since, 1, "Gmail's daily-limit reply (550 5.4.5)"),
            )
        except StateUnavailable as exc:
            self._warn_once("write", f"postbud cannot record the hold in the spool ({exc}).")
        if warn:
            self._warn_once(
                "hold",
                f"Gmail refused mail for {self.account} with its daily-limit "
                "reply (550 5.4.5): queued mail is held for an hour, then a probe goes.",
            )
        return until

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(message)
