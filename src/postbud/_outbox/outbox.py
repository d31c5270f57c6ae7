"""The outbox: background delivery with retries, so the caller never waits for Gmail.

``submit`` stores the message (in the spool, or in memory) and wakes one worker
thread (``worker.Worker``), which owns its own connection and delivers alerts first,
then oldest first. ``flush``, ``close`` and the exit hook (``shutdown``) wait for
what was submitted, within a deadline, and never raise.

This class is also the one internal API the adapters use (the command line, crash
alerts, the alert handler, the Django and Flask packages), reached through
``Mailer.outbox``: send now or keep for later, retry what earlier runs left, keep the
worker alive for an alert handler, administer the spool, and share its transactions.

Longer than the ~350 lines of a module here, on purpose: it is the adapters' one
API, one method per operation, each a few lines; the work is in ``worker``,
``spool``, ``admin`` and ``ledger``.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator

from postbud import _fork
from postbud._config import Settings
from postbud._message import Envelope
from postbud._smtp import SendResult, Transport, deliver, summary, temporary
from postbud.errors import (
    AuthenticationError,
    ConfigurationError,
    DeliveryError,
    InvalidMessageError,
    PostbudError,
    QuotaExceededError,
    TransportError,
)

from . import admin, shutdown
from .admin import OutboxRow, OutboxStatus
from .db import open_database, salvaged
from .gates import Gates
from .ledger import Ledger
from .memory import MemoryQueue
from .queue import Item, Priority, PriorityName, QueueBusy
from .redis_state import RedisState
from .retry import DEFAULT_POLICY, RetryPolicy
from .salvage import is_damage
from .spool import DiskSpool
from .state import Gate, MemoryState, SQLiteState, StateStore
from .stats import Counters
from .worker import Worker

__all__ = ["Outbox"]

log = logging.getLogger("postbud")

#: Seconds after this process remade a damaged spool in which a damage error seen by
#: another of its threads is taken for the old file's (the new one is not salvaged).
RECOVERED_RECENTLY = 10.0
#: flush() asks whether the queue is settled at most this often (seconds).
FLUSH_RECHECK = 0.02


class Outbox:
    """One worker thread and its queues for one Mailer (and the adapters' API).

    Args:
        settings: The Mailer's settings.
        transport: The caller's transport (``send_now``; the Mailer's connection).
        worker_transport: Makes the worker's own transport when it first needs one.
        ledger: The quota ledger, shared with ``send_now``.
        spool: The disk queue, or None for memory only.
        policy: Retry and timing figures (tests pass their own).
        gates: The account's login pause and connection backoff (on the ledger's
            store), for the worker and ``send_now``.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        transport: Transport | None,
        worker_transport: Callable[[], Transport] | None,
        ledger: Ledger,
        spool: DiskSpool | None,
        policy: RetryPolicy = DEFAULT_POLICY,
        gates: Gates | None = None,
    ) -> None:
        self.settings = settings
        self.policy = policy
        self.ledger = ledger
        self.gates = gates or Gates(settings, ledger.state, None, policy)
        self.spool = spool
        self.counters = Counters()
        self.memory = MemoryQueue(settings.queue_size)
        self.cond = threading.Condition()
        self.thread: threading.Thread | None = None
        self.stopping = False
        # Alert handlers that rely on this worker: while any is open the worker does
        # not end when idle, nor at exit before logging.shutdown() closed them (from
        # Python 3.12 no thread may start at exit, and their last mails must go out).
        self.keepers = 0
        self.last_submit = 0.0  # time.monotonic() of the latest submit
        self._transport = transport if transport is not None else _NO_TRANSPORT
        # An outbox without a worker transport only reads the spool: it never starts one.
        self._reader = worker_transport is None
        self._worker = Worker(self, worker_transport or (lambda: _NO_TRANSPORT))
        self._warned_spill = False
        self._recovering = threading.Lock()
        # Held by the worker from a delivery until it is settled (or its Message-ID is
        # in delivered_ids): a salvage by another thread (a flush) waits for it, so a
        # message Gmail accepted a moment ago is never saved into the fresh spool.
        self.delivering = threading.RLock()
        self._recovered_at = -RECOVERED_RECENTLY
        # Message-IDs Gmail accepted that the spool could not record as sent: never
        # saved by a salvage, never sent again (bounded: the newest 10,000).
        self.delivered_ids: set[str] = set()
        _fork.register(self)
        shutdown.track(self)

    @classmethod
    def open(
        cls,
        settings: Settings,
        *,
        transport: Transport | None = None,
        worker_transport: Callable[[], Transport] | None = None,
        policy: RetryPolicy = DEFAULT_POLICY,
        credential: str | None = None,
    ) -> Outbox:
        """The outbox of ``settings``' account on its spool (or in memory).

        Without transports it can only read and administer the spool (``postbud
        outbox status``): nothing is sent and no worker starts; what it revives goes
        out with the next Mailer of the account. ``credential``: the hash of the
        credentials' long-lived part (``gates.credential_hash``): a login pause set
        for other credentials does not stop these.
        """
        database = open_database(settings.spool, repair=worker_transport is not None)
        spool = None
        state: StateStore
        if settings.state is not None:  # a fleet's: every host on one Redis
            state = RedisState(settings)
        else:
            state = MemoryState() if database is None else SQLiteState(database)
        if database is not None:
            spool = DiskSpool(database, settings.username, lease=2 * settings.timeout)
            if worker_transport is not None:  # an outbox that only reads writes nothing
                with contextlib.suppress(QueueBusy, sqlite3.Error):
                    spool.purge(time.time())  # expired dead letters go, even if no row waits
        return cls(
            settings,
            transport=transport,
            worker_transport=worker_transport,
            ledger=Ledger(settings, state, policy),
            spool=spool,
            policy=policy,
            gates=Gates(settings, state, credential, policy),
        )

    # -- sending now (the caller's connection) ---------------------------------------------

    def send_now(self, envelope: Envelope, *, alert: bool = False) -> SendResult:
        """Send on the caller's connection now, in transactions of at most 100 recipients.

        Raises ``QuotaExceededError`` before connecting when the daily limit is used up
        (``alert=True`` may use the part kept for alerts, ``alert_reserve``), and
        ``AuthenticationError`` without logging in while the account's logins are
        paused for these credentials. A connection backoff does not stop this one
        attempt; its failure or success feeds it.
        """
        now = time.time()
        self._refuse_a_paused_login(now)
        reservation = self.ledger.reserve(len(envelope.recipients), alert, now, hold=False)
        try:
            result = deliver(self._transport, envelope)
        except BaseException as exc:
            if isinstance(exc, PostbudError):  # raised before anyone got it
                self.ledger.settle(reservation, 0, time.time())
            if isinstance(exc, QuotaExceededError) and exc.code == 550:
                self.ledger.hold(time.time(), warn=False)  # Gmail's own daily-limit reply
            elif isinstance(exc, DeliveryError) and not isinstance(exc, QuotaExceededError):
                self.gates.failed(exc, time.time(), warn=False)
            raise
        self.gates.succeeded()
        self.ledger.settle(reservation, len(result.accepted), time.time())
        self.counters.add("sent")
        return result

    def open_now(self) -> None:
        """Connect and log in on the caller's connection now, and keep it (a no-op if
        it is open). The same rules as ``send_now``: no login while the account's
        logins are paused for these credentials; a failure or success feeds the gates."""
        self._refuse_a_paused_login(time.time())
        try:
            self._transport.open()
        except DeliveryError as exc:
            self.gates.failed(exc, time.time(), warn=False)
            raise
        self.gates.succeeded()

    def _refuse_a_paused_login(self, now: float) -> None:
        pause = self.gates.login_pause(now, refused_only=True)
        if pause is not None:
            raise AuthenticationError(
                f"postbud did not log in: {self.gates.describe(pause)}.",
                hint="Gmail locks accounts that keep failing to log in, so postbud tries "
                "the same credentials only once.",
            )

    def send_or_keep(
        self, envelope: Envelope, priority: PriorityName = "normal"
    ) -> tuple[SendResult | None, str | None]:
        """Send now; keep in the spool, for the next process, what failed for now.

        For the command line and crash alerts: the whole message, or the recipients
        refused only for now, is kept. Returns (the result or None, why something was
        kept or None). Raises the ``DeliveryError`` when the message cannot be kept (a
        permanent failure of the message, or no spool). A refused login or a TLS
        failure keeps the message too: ``waits()`` then tells that the user must act.
        """
        try:
            level = Priority.named(priority)
        except ValueError as exc:
            raise InvalidMessageError(str(exc)) from None
        try:
            result = self.send_now(envelope, alert=level == Priority.ALERT)
        except DeliveryError as exc:
            # A refused login or a TLS failure is the account's: the message waits
            # with the queue for the fix (``waits()`` says so), it is not lost.
            account = isinstance(exc, (AuthenticationError, TransportError))
            if (exc.retryable or account) and self.keep(envelope, level):
                # The hint too: "check security='ssl'" is the diagnosis a user needs.
                return None, exc.description + (f"; {exc.hint}" if exc.hint else "")
            raise
        later = [r for r, (code, text) in result.refused.items() if temporary(code, text)]
        if later and self.keep(envelope.with_recipients(later), level):
            code, text = result.refused[later[0]]
            return result, f"{', '.join(later)} refused for now: {code} {summary(text)}"
        return result, None

    def kept_line(self, what: str, why: str) -> str:
        """The one line that tells a user ``what`` waits in the spool, and why."""
        return (
            f"{what} was not sent ({why.rstrip('.')}); it is kept in the spool "
            f"{self.settings.spool} "
            "and goes out with the next postbud command or Mailer of this account."
        )

    # -- the caller's side of the queue ---------------------------------------------------

    def submit(self, envelope: Envelope, priority: int) -> None:
        """Queue ``envelope``; never blocks on the network, never raises for the spool."""
        now = time.time()
        self.last_submit = time.monotonic()
        if not self._store(envelope, priority, now, warn=True):
            dropped = self.memory.add(envelope, priority, now)
            if dropped is not None:
                self.counters.add("dropped")
        self.counters.add("submitted")
        self.start()

    def keep(self, envelope: Envelope, priority: int) -> bool:
        """Store ``envelope`` in the spool for a later process, without starting a worker.

        The command line uses it after a failed attempt: it exits at once (75) and the
        next command, or any Mailer of the account, delivers the row.
        """
        return self._store(envelope, priority, time.time(), warn=False)

    def retry_pending(self, *, clear_pauses: bool = False) -> int:
        """Make the account's queued rows due now and start the worker; how many there are.

        The worker still honours the daily-limit hold, the login pause and the
        connection backoff, unless ``clear_pauses`` (``postbud outbox retry``: the
        user fixed the password or the network) ends the last two.
        """
        if clear_pauses:
            self.gates.clear()
            self._worker.gate = None  # not what the worker saw last any more
        if self.spool is None:
            return 0
        self.spool.make_due(time.time())
        pending = self.spool.pending()
        if pending:
            self.start()
        return pending

    def waits(self) -> tuple[str, Gate] | None:
        """What keeps this account's mail waiting now: ("login" or "connect", the gate)."""
        now = time.time()
        pause = self.gates.login_pause(now)
        if pause is not None:
            return "login", pause
        backoff = self.gates.get(self.gates.connect)
        # Ours: not a TLS failure of another set-up (another ca_file).
        if backoff is not None and backoff.holds(now, self.gates.tls):
            return "connect", backoff
        return None

    def keep_alive(self, on: bool) -> None:
        """An alert handler starts (``True``) or stops relying on this worker."""
        with self.cond:
            self.keepers = max(0, self.keepers + (1 if on else -1))

    def stored(self, count: int) -> None:
        """``count`` messages were written to the spool directly (``shared_transaction``):
        count and deliver them."""
        if count:
            self.counters.add("submitted", count)
            self.start()

    def alerts_over_share(self) -> bool:
        """Whether alerts used more than ``alert_max_share`` of the daily limit (the
        alert handler then sends digests only)."""
        return self.ledger.alerts_over_share(time.time())

    @property
    def shared(self) -> bool:
        """Whether the queue and the state live in a spool other processes can share."""
        return self.spool is not None

    @contextlib.contextmanager
    def shared_transaction(
        self, wait: float = 1.0
    ) -> Iterator[tuple[sqlite3.Connection, Callable[[Envelope], None]]]:
        """A write transaction on the spool, and a function that queues an alert in it.

        The alert handler's state and the mails it decides on commit together (or not
        at all); call ``stored(n)`` afterwards. Raises ``QueueBusy`` when the spool
        cannot be written; only for a shared outbox.
        """
        spool = self.spool
        assert spool is not None, "shared_transaction needs a spool"
        try:
            with spool.database.transaction(wait=wait) as db:

                def enqueue(envelope: Envelope) -> None:
                    spool.insert_in(db, envelope, Priority.ALERT, time.time())

                yield db, enqueue
        except sqlite3.Error as exc:  # a full disk, a damaged file: like a busy spool
            raise QueueBusy(str(exc)) from exc

    def _store(self, envelope: Envelope, priority: int, created: float, *, warn: bool) -> bool:
        """Write to the spool; False if it did not take the message."""
        if self.spool is None:
            return False
        try:
            self.spool.add(envelope, priority, created)
        except QueueBusy as exc:
            if warn:
                self.counters.add("spilled")
                if not self._warned_spill:
                    self._warned_spill = True
                    log.warning(
                        "postbud's spool %s could not take a message (%s); it is "
                        "kept in memory and sent from there.",
                        self.spool.path,
                        exc,
                    )
            return False
        return True

    def keep_item(self, item: Item) -> bool:
        """Move a memory item to the spool, its age and retry state included."""
        if self.spool is None:
            return False
        try:
            self.spool.add(
                item.envelope,
                item.priority,
                item.created,
                next_try=item.next_try,
                attempts=item.attempts,
            )
        except QueueBusy:
            return False
        return True

    # -- the spool, for ``postbud outbox`` and the framework commands ----------------------

    def status(self) -> OutboxStatus:
        """Counts, the oldest message, the next try and the quota (reads only)."""
        return admin.status(self.settings, self.spool, len(self.memory), self.ledger)

    def rows(self, state: str | None = None) -> list[OutboxRow]:
        """The spool's messages of this account (oldest first), without bodies."""
        return admin.rows(self.spool, state) if self.spool is not None else []

    def revive(self, ids: list[int] | None = None) -> int:
        """Put dead letters (all, or ``ids``) back in the queue; the worker sends them."""
        if self.spool is None:
            return 0
        count = admin.revive(self.spool, ids, time.time())
        if count:
            self.start()
        return count

    def purge(self, ids: list[int] | None = None) -> int:
        """Delete dead letters (all, or ``ids``); how many went."""
        return admin.forget_dead(self.spool, ids) if self.spool is not None else 0

    # -- the worker's lifecycle -------------------------------------------------------------

    def start(self) -> None:
        """Make sure a worker runs (never starts one at interpreter shutdown, nor for an
        outbox opened only to read the spool)."""
        if self._reader:
            return
        with self.cond:
            self.stopping = False  # a worker winding down after close() goes on instead
            self.cond.notify_all()
            if self.thread is not None:
                return
            thread = threading.Thread(target=self._worker.run, name="postbud-outbox", daemon=True)
            try:
                thread.start()
            except RuntimeError:  # Python 3.12+: no new thread at shutdown
                return
            self.thread = thread

    def sleep(self, seconds: float) -> None:
        """The worker's pause; ``start``, ``close`` and a submit end it early."""
        with self.cond:
            if not self.stopping:
                self.cond.wait(seconds)

    def pending(self) -> bool:
        """Whether anything waits, in memory or in the spool."""
        try:
            return bool(len(self.memory) or (self.spool is not None and self.spool.pending()))
        except sqlite3.DatabaseError as exc:
            if not is_damage(exc):
                raise
            self.recover(exc)
            return bool(len(self.memory) or (self.spool is not None and self.spool.pending()))

    def recover(self, exc: BaseException, skip: Iterable[str] = ()) -> None:
        """The spool is damaged (``exc``): move it aside, save what can be read into a
        fresh one and go on with it (``salvage.py``); memory only if no fresh file can
        be made. ``skip``: Message-IDs delivered that the damaged file could not record
        (``delivered_ids`` too)."""
        spool = self.spool
        if spool is None:
            return
        database = spool.database
        try:
            with self.delivering, self._recovering:
                # Another thread of this process (the worker, a flush) may have hit the
                # same damage and remade the file a moment ago: the fresh file is not
                # damaged, only this thread's view of the old one was.
                skip = self.delivered_ids | set(skip)
                if time.monotonic() - self._recovered_at > RECOVERED_RECENTLY:
                    with database.paused():  # no handle of ours opens the path meanwhile
                        salvaged(database.path, database.inode, skip)
                    self._recovered_at = time.monotonic()
                database.follow()  # our handles, on the fresh file
                if skip:  # another process may have saved them: never sent again
                    with database.transaction(wait=5.0) as db:
                        db.executemany(
                            "DELETE FROM outbox WHERE account = ? AND state = 'queued' "
                            "AND message_id = ?",
                            [(spool.account, m) for m in skip],
                        )
        except Exception as error:
            log.error(
                "postbud's spool %s is damaged (%s) and no fresh one can be made there "
                "(%s); queued mail is kept in memory only from now on.",
                database.path,
                exc,
                error,
            )
            self.spool = None
            if isinstance(self.ledger.state, SQLiteState):  # a Redis store stays
                state = MemoryState()
                self.ledger.state = state
                self.gates.state = state

    def flush(self, timeout: float, *, start: bool = True) -> bool:
        """Wait until what was queued before the call is settled; True if it is.

        Settled: delivered, dead-lettered, or waiting (a retry, a hold, a login pause)
        until more than ``timeout`` from now. Never raises. With no time to wait it
        starts no worker: ``close(timeout=0)`` (the command line, after keeping a row
        for the next run) must not leave one sending while the process exits.
        """
        start = start and timeout > 0
        deadline = time.monotonic() + max(0.0, timeout)
        horizon = time.time() + max(0.0, timeout)
        for attempt in range(3):
            try:
                return self._flush(deadline, horizon, start)
            except sqlite3.DatabaseError as exc:
                if is_damage(exc) and attempt < 2:
                    self.recover(exc)  # what was saved has new ids: wait for all of it
                    continue
                log.exception("postbud could not tell whether the outbox is flushed")
            except Exception:  # flush never raises: it only reports whether all is settled
                log.exception("postbud could not tell whether the outbox is flushed")
            break
        return False

    def _flush(self, deadline: float, horizon: float, start: bool) -> bool:
        upto_disk = self.spool.last_key() if self.spool is not None else 0
        upto_memory = self.memory.last_key()
        while self._unsettled(upto_disk, upto_memory, horizon):
            if start:
                self.start()
            checked = time.monotonic()
            left = deadline - checked
            if left <= 0 or self.thread is None:
                return False
            with self.cond:
                self.cond.wait(min(left, 0.05))
            # The worker wakes us after every delivery; asking the spool each time
            # would take its handle from the worker (0.83x the unwaited drain rate).
            pause = FLUSH_RECHECK - (time.monotonic() - checked)
            if pause > 0:
                time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
        return True

    def _unsettled(self, upto_disk: int, upto_memory: int, horizon: float) -> int:
        now = time.time()
        # The gates as the store has them now (not as the worker last saw them: a
        # pause may have just been cleared by 'postbud outbox retry').
        waits = self.waits()
        gate = waits[1].until if waits is not None else 0.0
        held = max(self.ledger.held_until(now) or 0.0, self._worker.paused_until, gate)
        if held > horizon:
            return 0  # everything waits (daily-limit hold, login pause) beyond the horizon
        on_disk = self.spool.unsettled(upto_disk, horizon) if self.spool is not None else 0
        return on_disk + self.memory.unsettled(upto_memory, horizon)

    def close(self, timeout: float) -> bool:
        """Flush, stop the worker, and keep what is left in the spool for later."""
        flushed = self.flush(timeout)
        self.stop(wait=min(1.0, timeout))
        self._keep_memory()
        return flushed

    def _keep_memory(self) -> None:
        """Move the mail waiting in memory (spilled, or ``spool=None``) to the spool if
        it takes it; what it does not take is dropped, counted, with a warning."""
        left = self.memory.drain()
        kept = [i for i in left if self.keep_item(i)]
        if len(kept) < len(left):
            log.warning(
                "postbud dropped %d message(s) held in memory at close.", len(left) - len(kept)
            )
            self.counters.add("dropped", len(left) - len(kept))
        if self.spool is not None:
            self.spool.database.close()  # reopened if this Mailer is used again
        if isinstance(self.ledger.state, RedisState):
            self.ledger.state.close()  # reconnects if this Mailer is used again

    def release(self) -> None:
        """Close the spool's connections now (they reopen when next needed)."""
        if self.spool is not None:
            self.spool.database.close()

    def queued(self) -> int:
        """Messages waiting now (spool and memory)."""
        on_disk = self.spool.pending() if self.spool is not None else 0
        return on_disk + len(self.memory)

    def stop(self, wait: float = 1.0) -> None:
        """Tell the worker to stop and wait up to ``wait`` for it."""
        with self.cond:
            self.stopping = True
            self.cond.notify_all()
            thread = self.thread
        if thread is not None and thread is not threading.current_thread():
            # A send in progress finishes within its own deadline; the worker closes
            # its connection when it leaves, so close() does not wait for that.
            thread.join(max(0.0, min(wait, self.settings.timeout)))

    def _after_fork(self) -> None:
        # The child has no worker thread; what the parent had in memory is the
        # parent's to send (sending it here too would double it).
        self.cond = threading.Condition()
        self.thread = None
        self.stopping = False
        self.memory = MemoryQueue(self.settings.queue_size)
        self._recovering = threading.Lock()  # a parent's thread may have held it
        self.delivering = threading.RLock()


class _NoTransport:
    """The transport of an outbox opened only to read the spool: it never sends."""

    def send(self, envelope: Envelope) -> dict[str, tuple[int, str]]:
        raise ConfigurationError("This outbox was opened to read the spool; it cannot send.")

    def open(self) -> None:
        self.send(None)  # type: ignore[arg-type]

    def close(self) -> None:
        pass


_NO_TRANSPORT = _NoTransport()
