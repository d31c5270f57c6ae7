"""The outbox: background delivery with retries, so the caller never waits for Gmail.

``submit`` stores the message (in the spool, or in memory) and wakes one worker
thread, which owns its own connection and delivers alerts first, then oldest first.
A transient failure is retried with exponential backoff and full jitter (a known
``retry_after`` wins); a permanent one is dead-lettered with its reply and hint;
Gmail's daily limit holds delivery (nothing is dropped for quota); ``max_age`` gives
up on what never got through. ``flush``, ``close`` and the atexit hook wait for what
was submitted, within a deadline, and never raise.
"""

from __future__ import annotations

import atexit
import logging
import os
import random
import socket
import threading
import time
import weakref
from collections.abc import Callable

from postbud import _fork
from postbud._config import Settings
from postbud._message import Envelope
from postbud._smtp import SendResult, Transport, deliver, temporary
from postbud.errors import (
    AuthenticationError,
    DeliveryError,
    InvalidMessageError,
    QuotaExceededError,
)

from .ledger import Ledger
from .memory import MemoryQueue
from .spool import ALERT, DiskSpool, Item, SpoolBusy

__all__ = ["Counters", "Outbox"]

log = logging.getLogger("postbud")

#: Retry delays: full jitter over BASE_DELAY × 2ⁿ seconds, at most MAX_BACKOFF.
BASE_DELAY = 1.0
MAX_BACKOFF = 300.0
POLL = 1.0  # how often an idle worker looks for rows other processes left in the spool
#: The WAL is emptied (delivered bodies gone from it) after this long without work.
QUIET_TRUNCATE = 1.0
#: An idle worker ends after this long with nothing queued (the next submit restarts
#: it), so a Mailer dropped without close() does not keep a thread for ever.
IDLE_EXIT = 30.0
#: While callers submit, the worker waits until they pause this long (at most
#: CALLERS_MAX_WAIT per message) before it takes the next one: see _let_callers_finish.
CALLERS_QUIET = 0.002
CALLERS_MAX_WAIT = 0.02
#: After a login Gmail refuses for good, no new login for this long: a queue of 500
#: messages must not become 500 failed logins (Gmail then locks the account).
AUTH_PAUSE = 300.0


class _LostLease(Exception):
    """Another process took over the row (our lease expired): stop sending it."""


class Counters:
    """Thread-safe counters for ``Mailer.stats()``."""

    NAMES = ("submitted", "sent", "retried", "held", "dead", "dropped", "spilled")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values = dict.fromkeys(self.NAMES, 0)
        _fork.register(self)

    def _after_fork(self) -> None:
        self._lock = threading.Lock()

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._values[name] += n

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._values)


def backoff(attempts: int, retry_after: float | None) -> float:
    """Seconds until the next try: ``retry_after`` if known, else full jitter."""
    if retry_after is not None:
        return retry_after
    return random.uniform(0, min(MAX_BACKOFF, BASE_DELAY * 2.0**attempts))


class Outbox:
    """One worker thread and its queue for one Mailer."""

    def __init__(
        self,
        settings: Settings,
        transport: Callable[[], Transport],
        ledger: Ledger,
        spool: DiskSpool | None,
        counters: Counters,
    ) -> None:
        self.settings = settings
        self._make_transport = transport
        self._transport: Transport | None = None  # made when the worker first needs it
        self._ledger = ledger
        self._spool = spool
        self._counters = counters
        self._memory = MemoryQueue(settings.queue_size)
        self._owner = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._warned_spill = False
        self._paused_until = 0.0  # no login before this (after a refused one)
        # Alert handlers that rely on this worker: while any is open the worker does
        # not end when idle, nor at exit before logging.shutdown() closed them (from
        # Python 3.12 no thread may start at exit, and their last mails must go out).
        self._keepers = 0
        self._last_submit = 0.0  # time.monotonic() of the latest submit
        _fork.register(self)
        _live.add(self)

    # -- the caller's side ------------------------------------------------------------

    def submit(self, envelope: Envelope, priority: int) -> None:
        """Queue ``envelope``; never blocks on the network, never raises for the spool."""
        now = time.time()
        self._last_submit = time.monotonic()
        if not self._store(envelope, priority, now, warn=True):
            dropped = self._memory.add(envelope, priority, now)
            if dropped is not None:
                self._counters.add("dropped")
        self._counters.add("submitted")
        self.start()

    def keep(self, envelope: Envelope, priority: int) -> bool:
        """Store ``envelope`` in the spool for a later process, without starting a worker.

        The command line uses it after a failed attempt: it exits at once (75) and the
        next command, or any Mailer of the account, delivers the row.
        """
        return self._store(envelope, priority, time.time(), warn=False)

    def retry_now(self) -> int:
        """Make the account's queued rows due now and start the worker; how many there are."""
        if self._spool is None:
            return 0
        self._spool.retry_now(time.time())
        pending = self._spool.counts()[0]
        if pending:
            self.start()
        return pending

    def hold_open(self, on: bool) -> None:
        """An alert handler starts (``True``) or stops relying on this worker."""
        with self._cond:
            self._keepers = max(0, self._keepers + (1 if on else -1))

    def stored(self, count: int) -> None:
        """``count`` messages were written to the spool directly: count and deliver them."""
        if count:
            self._counters.add("submitted", count)
            self.start()

    def _store(
        self,
        envelope: Envelope,
        priority: int,
        created: float,
        *,
        warn: bool,
        retry: Item | None = None,
    ) -> bool:
        """Write to the spool; False if it did not take the message. ``retry``: a
        memory item tried before, whose attempts and next try go along."""
        if self._spool is None:
            return False
        try:
            if retry is None:
                self._spool.add(envelope, priority, created)
            else:
                self._spool.add(
                    envelope, priority, created, next_try=retry.next_try, attempts=retry.attempts
                )
        except SpoolBusy as exc:
            if warn:
                self._counters.add("spilled")
                if not self._warned_spill:
                    self._warned_spill = True
                    log.warning(
                        "postbud's spool %s could not take a message (%s); it is "
                        "kept in memory and sent from there.",
                        self._spool.path,
                        exc,
                    )
            return False
        return True

    def _keep(self, item: Item) -> bool:
        """Move a memory item to the spool, its age and retry state included."""
        return self._store(item.envelope, item.priority, item.created, warn=False, retry=item)

    def start(self) -> None:
        """Make sure a worker runs (never starts one at interpreter shutdown)."""
        with self._cond:
            self._stopping = False  # a worker winding down after close() goes on instead
            self._cond.notify_all()
            if self._thread is not None:
                return
            thread = threading.Thread(target=self._run, name="postbud-outbox", daemon=True)
            try:
                thread.start()
            except RuntimeError:  # Python 3.12+: no new thread at shutdown
                return
            self._thread = thread

    def flush(self, timeout: float, *, start: bool = True) -> bool:
        """Wait until what was queued before the call is settled; True if it is.

        Settled: delivered, dead-lettered, or waiting (a retry, a hold, a login pause)
        until more than ``timeout`` from now. Never raises. With no time to wait it
        starts no worker: ``close(timeout=0)`` (the command line, after keeping a row
        for the next run) must not leave one sending while the process exits.
        """
        start = start and timeout > 0
        try:
            deadline = time.monotonic() + max(0.0, timeout)
            horizon = time.time() + max(0.0, timeout)
            upto_disk = self._spool.last_id() if self._spool is not None else 0
            upto_memory = self._memory.last_seq()
            while self._unsettled(upto_disk, upto_memory, horizon):
                if start:
                    self.start()
                left = deadline - time.monotonic()
                if left <= 0 or self._thread is None:
                    return False
                with self._cond:
                    self._cond.wait(min(left, 0.05))
            return True
        except Exception:  # flush never raises: it only reports whether all is settled
            log.exception("postbud could not tell whether the outbox is flushed")
            return False

    def close(self, timeout: float) -> bool:
        """Flush, stop the worker, and keep what is left in the spool for later."""
        flushed = self.flush(timeout)
        self._stop(wait=min(1.0, timeout))
        self._keep_memory()
        return flushed

    def _keep_memory(self) -> None:
        """Move the mail waiting in memory (spilled, or ``spool=None``) to the spool if
        it takes it; what it does not take is dropped, counted, with a warning."""
        left = self._memory.drain()
        kept = [i for i in left if self._keep(i)]
        if len(kept) < len(left):
            log.warning(
                "postbud dropped %d message(s) held in memory at close.", len(left) - len(kept)
            )
            self._counters.add("dropped", len(left) - len(kept))
        if self._spool is not None:
            self._spool.close()  # reopened if this Mailer is used again

    def queued(self) -> int:
        on_disk = self._spool.counts()[0] if self._spool is not None else 0
        return on_disk + len(self._memory)

    # -- the worker ---------------------------------------------------------------------

    def _run(self) -> None:
        last_purge = idle_since = time.monotonic()
        while True:
            with self._cond:
                if self._stopping or (
                    time.monotonic() - idle_since > IDLE_EXIT
                    and not self._keepers
                    and not self._pending()
                ):
                    self._thread = None  # decided under the lock: start() sees it
                    break
            self._let_callers_finish()
            now = time.time()
            item = None
            try:
                if self._spool is not None and time.monotonic() - last_purge > 3600:
                    self._spool.purge(now)
                    last_purge = time.monotonic()
                item = self._next(now)
                if item is None:
                    if self._spool is not None:
                        # TRUNCATE blocks writers (a submit) while it syncs the file:
                        # only once the queue has been quiet for a while, not in the
                        # gaps of a burst. PASSIVE never blocks anybody.
                        quiet = time.monotonic() - idle_since > QUIET_TRUNCATE
                        self._spool.checkpoint(truncate=quiet and not self._pending())
                    self._idle(now)
                    continue
                idle_since = time.monotonic()
                self._handle(item)
            except Exception:  # a bug or a broken spool must not kill delivery for good
                log.exception("postbud's outbox worker hit an unexpected error")
                if item is not None and not item.on_disk:
                    item.next_try = time.time() + POLL  # a disk row's lease frees it
                    self._memory.put_back(item)
                self._sleep(POLL)
            with self._cond:
                self._cond.notify_all()
        if self._transport is not None:  # the worker owns its connection
            self._transport.close()

    def _let_callers_finish(self) -> None:
        """Wait while callers submit (a few ms at most), so they keep the GIL.

        Each call a submit makes into SQLite lets another thread take the GIL, and the
        caller then waits until that thread's turn ends: a worker busy sending next to
        a burst of submits would make each one wait for it. A short pause after the
        latest submit keeps the callers' latency the same whatever the server's speed,
        and costs delivery at most CALLERS_MAX_WAIT per message.
        """
        deadline = time.monotonic() + CALLERS_MAX_WAIT
        while True:
            now = time.monotonic()
            quiet = self._last_submit + CALLERS_QUIET - now
            if quiet <= 0 or now >= deadline or self._stopping:
                return
            time.sleep(min(quiet, deadline - now))

    def _pending(self) -> bool:
        return bool(len(self._memory) or (self._spool is not None and self._spool.counts()[0]))

    def _next(self, now: float) -> Item | None:
        if now < self._paused_until or self._ledger.held_until(now) is not None:
            return None
        # Alerts first, then the oldest; of each, memory first (a crash would lose it).
        for alerts_only in (True, False):
            item = self._memory.claim(now, alerts_only=alerts_only)
            if item is None and self._spool is not None:
                item = self._spool.claim(
                    now, self.settings.timeout, self._owner, alerts_only=alerts_only
                )
            if item is not None:
                return item
        return None

    def _idle(self, now: float) -> None:
        paused = self._paused_until if self._paused_until > now else None
        dues = [self._memory.next_due(), self._ledger.held_until(now), paused]
        if self._spool is not None:
            dues.append(self._spool.next_due())
        soonest = min((d for d in dues if d is not None), default=now + POLL)
        self._sleep(min(POLL, max(0.01, soonest - now)))

    def _sleep(self, seconds: float) -> None:
        with self._cond:
            if not self._stopping:
                self._cond.wait(seconds)

    def _handle(self, item: Item) -> None:
        envelope = item.envelope
        alert = item.priority == ALERT
        now = time.time()
        try:
            self._ledger.check(len(envelope.recipients), alert, now)
            if self._transport is None:
                self._transport = self._make_transport()
            result = deliver(self._transport, envelope, self._renewer(item))
        except _LostLease:
            log.warning(
                "postbud: another process took over %s (its lease expired during "
                "delivery); it finishes the delivery.",
                envelope.message_id,
            )
        except QuotaExceededError as exc:
            if not exc.retryable:  # more recipients than a whole day allows
                self._dead(item, exc.code, exc.description, exc.hint)
                return
            until = self._ledger.hold(now) if exc.code == 550 else now + (exc.retry_after or 60)
            self._counters.add("held")
            self._retry(item, envelope.recipients, item.attempts, until, exc.code, str(exc))
        except InvalidMessageError as exc:
            self._dead(item, None, str(exc), None)
        except DeliveryError as exc:
            self._failed(item, exc, now)
        else:
            self._settle(item, result, alert, now)

    def _renewer(self, item: Item) -> Callable[[], None] | None:
        spool = self._spool
        if not item.on_disk or spool is None:
            return None
        first = [True]

        def renew() -> None:  # before every transaction but the first (just claimed)
            if first[0]:
                first[0] = False
            elif not spool.renew(item.key, self._owner, time.time(), self.settings.timeout):
                raise _LostLease

        return renew

    def _failed(self, item: Item, exc: DeliveryError, now: float) -> None:
        if isinstance(exc, AuthenticationError):
            # One refused or throttled login stops logins for the account for a while:
            # trying again for every queued message gets accounts locked.
            pause = AUTH_PAUSE if not exc.retryable else (exc.retry_after or POLL)
            self._paused_until = max(self._paused_until, now + pause)
            if not exc.retryable:
                log.warning(
                    "postbud pauses delivery for %s for %.0f s after a refused login; "
                    "fix the credentials and restart: %s",
                    self.settings.username,
                    pause,
                    exc,
                )
        if not exc.retryable:
            self._dead(item, exc.code, exc.description, exc.hint)
        elif now - item.created > self.settings.max_age:
            self._dead(
                item,
                exc.code,
                f"gave up after max_age ({self.settings.max_age:g} s): {exc.description}",
                exc.hint,
            )
        else:
            self._counters.add("retried")
            attempts = item.attempts + 1
            when = now + backoff(attempts, exc.retry_after)
            self._retry(item, item.envelope.recipients, attempts, when, exc.code, str(exc))

    def _settle(self, item: Item, result: SendResult, alert: bool, now: float) -> None:
        self._counters.add("sent")
        accepted = len(result.accepted)
        retry = [r for r, (code, text) in result.refused.items() if temporary(code, text)]
        final = {r: v for r, v in result.refused.items() if r not in retry}
        if final:  # those recipients will never get it: a dead letter says why
            code, text = next(iter(final.values()))
            self._counters.add("dead")
            if self._spool is not None:
                copy = item.envelope.with_recipients(tuple(final))
                self._spool.dead(None, "", copy, item.priority, item.created, now, code, text, None)
            log.warning(
                "postbud: %s was refused for %s: %s",
                item.envelope.message_id,
                ", ".join(final),
                text,
            )
        if retry:  # a split message retries only the recipients not yet accepted
            self._ledger.record(accepted, alert, now)
            self._counters.add("retried")
            codes = [result.refused[r] for r in retry]
            quota = any(code == 550 for code, _ in codes)
            when = self._ledger.hold(now) if quota else now + backoff(item.attempts + 1, None)
            self._retry(item, tuple(retry), item.attempts + 1, when, codes[0][0], codes[0][1])
        elif item.on_disk:
            assert self._spool is not None
            # One commit: the row is gone and its recipients are counted, or neither.
            self._spool.delete(
                item.key, self._owner, lambda db: self._ledger.record(accepted, alert, now, db)
            )
        else:
            self._ledger.record(accepted, alert, now)
            self._memory.done(item)

    def _retry(
        self,
        item: Item,
        recipients: tuple[str, ...],
        attempts: int,
        when: float,
        code: int | None,
        error: str,
    ) -> None:
        if item.on_disk:
            assert self._spool is not None
            self._spool.retry(item.key, self._owner, recipients, attempts, when, code, error)
        else:
            item.envelope = item.envelope.with_recipients(recipients)
            item.attempts, item.next_try = attempts, when
            # close() moved what waited in memory to the spool, but not this message,
            # then being tried: after close() it goes there itself.
            if self._stopping and self._keep(item):
                self._memory.done(item)
                return
            self._memory.put_back(item)

    def _dead(self, item: Item, code: int | None, error: str, hint: str | None) -> None:
        self._counters.add("dead")
        log.warning(
            "postbud gave up on %s to %s: %s",
            item.envelope.message_id,
            ", ".join(item.envelope.recipients),
            error,
        )
        if item.on_disk:
            assert self._spool is not None
            self._spool.dead(
                item.key,
                self._owner,
                item.envelope,
                item.priority,
                item.created,
                time.time(),
                code,
                error,
                hint,
            )
        else:
            self._memory.done(item)

    # -- lifecycle ----------------------------------------------------------------------

    def _unsettled(self, upto_disk: int, upto_memory: int, horizon: float) -> int:
        now = time.time()
        held = max(self._ledger.held_until(now) or 0.0, self._paused_until)
        if held > horizon:
            return 0  # everything waits (daily-limit hold, login pause) beyond the horizon
        on_disk = self._spool.unsettled(upto_disk, horizon) if self._spool is not None else 0
        return on_disk + self._memory.unsettled(upto_memory, horizon)

    def _stop(self, wait: float = 1.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            # A send in progress finishes within its own deadline; the worker closes
            # its connection when it leaves, so close() does not wait for that.
            thread.join(max(0.0, min(wait, self.settings.timeout)))

    def _after_fork(self) -> None:
        # The child has no worker thread; what the parent had in memory is the
        # parent's to send (sending it here too would double it).
        self._cond = threading.Condition()
        self._thread = None
        self._stopping = False
        self._memory = MemoryQueue(self.settings.queue_size)
        self._owner = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"


_live: weakref.WeakSet[Outbox] = weakref.WeakSet()


@atexit.register
def _drain_at_exit() -> None:
    # One deadline for all Mailers, not one after the other. Python 3.12+ cannot start
    # a thread at shutdown: only workers already running drain.
    # A worker already told to stop (close()) is not waited for a second time.
    running = [o for o in list(_live) if o._thread is not None and not o._stopping]
    if not running:
        return
    deadline = time.monotonic() + max(o.settings.exit_timeout for o in running)
    for outbox in running:
        outbox.flush(max(0.0, deadline - time.monotonic()), start=False)
    for outbox in running:
        if not outbox._keepers:  # an alert handler's close() stops the others later
            outbox._stop(wait=max(0.0, deadline - time.monotonic()))
