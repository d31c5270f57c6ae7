"""The outbox worker: claim → deliver → settle, retry or dead-letter, in its own thread.

One worker per Outbox, with a connection of its own. It takes alerts first, then the
oldest message, from memory first (a crash would lose it) then from the spool. A
transient failure is retried with the policy's backoff (a known ``retry_after``
wins); a permanent one is dead-lettered with its reply and hint; Gmail's daily limit
holds delivery (nothing is dropped for quota); ``max_age`` gives up on what never got
through. Messages are claimed and settled through the ``Queue`` protocol, whichever
queue holds them (the spool's housekeeping, purge and checkpoints, is the only
disk-specific work here).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from postbud._smtp import SendResult, Transport, deliver, summary, temporary
from postbud.errors import (
    ConfigurationError,
    DeliveryError,
    InvalidMessageError,
    PostbudError,
    QuotaExceededError,
)

from .ledger import Reservation
from .queue import Item, Priority, Queue
from .salvage import is_damage
from .state import Gate

if TYPE_CHECKING:  # the outbox owns the worker; the worker only reads its state
    from .outbox import Outbox

__all__ = ["Worker"]

log = logging.getLogger("postbud")


class _LostLease(Exception):
    """Another process took over the row (our lease expired): stop sending it."""


class Worker:
    """The delivery loop of one Outbox (``run`` is the thread's target)."""

    def __init__(self, outbox: Outbox, make_transport: Callable[[], Transport]) -> None:
        self.outbox = outbox
        self.policy = outbox.policy
        self._make_transport = make_transport
        self._transport: Transport | None = None  # made when first needed
        self.paused_until = 0.0  # this process sends nothing before this (a set-up error)
        self.gate: Gate | None = None  # the account's gate that stopped the last claim
        self._swept = 0.0  # when rows past max_age were last swept while gated
        # Spool rows Gmail accepted that the spool could not record as sent (busy for
        # too long, or damaged): never sent again by this process.
        self._delivered: dict[int, Callable[[Any], None]] = {}  # row id: its ledger count

    # -- the loop -----------------------------------------------------------------------

    def run(self) -> None:
        outbox, policy = self.outbox, self.policy
        last_purge = idle_since = last_followed = time.monotonic()
        while True:
            with outbox.cond:
                if outbox.stopping or (
                    time.monotonic() - idle_since > policy.idle_exit
                    and not outbox.keepers
                    and not outbox.pending()
                ):
                    outbox.thread = None  # decided under the lock: start() sees it
                    break
            self.let_callers_finish()
            now = time.time()
            item = None
            try:
                spool = outbox.spool
                if spool is not None and time.monotonic() - last_followed > policy.poll:
                    spool.database.follow()  # replaced by another process, or deleted
                    last_followed = time.monotonic()
                if spool is not None and time.monotonic() - last_purge > 3600:
                    spool.purge(now)
                    last_purge = time.monotonic()
                item = self._next(now)
                if item is None:
                    if spool is not None:
                        # TRUNCATE blocks writers (a submit) while it syncs the file:
                        # only once the queue has been quiet for a while, not in the
                        # gaps of a burst. PASSIVE never blocks anybody.
                        quiet = time.monotonic() - idle_since > policy.quiet_truncate
                        spool.database.checkpoint(truncate=quiet and not outbox.pending())
                    self._idle(now)
                    continue
                idle_since = time.monotonic()
                with outbox.delivering:  # a salvage waits until this one is settled
                    self._handle(item)
            except Exception as exc:  # a bug or a broken spool must not kill delivery
                if is_damage(exc):  # the file: moved aside, what it held saved
                    outbox.recover(exc)
                    self._delivered.clear()  # row ids of the old file: nothing to settle
                else:
                    log.exception("postbud's outbox worker hit an unexpected error")
                if item is not None and not item.on_disk:
                    item.next_try = time.time() + policy.poll  # a disk row's lease frees it
                    outbox.memory.put_back(item)
                outbox.sleep(policy.poll)
            with outbox.cond:
                outbox.cond.notify_all()
        if self._transport is not None:  # the worker owns its connection
            self._transport.close()

    def let_callers_finish(self) -> None:
        """Wait while callers submit (a few ms at most), so they keep the GIL.

        Each call a submit makes into SQLite lets another thread take the GIL, and the
        caller then waits until that thread's turn ends: a worker busy sending next to
        a burst of submits would make each one wait for it. A short pause after the
        latest submit keeps the callers' latency the same whatever the server's speed,
        and costs delivery at most ``callers_max_wait`` per message.
        """
        outbox, policy = self.outbox, self.policy
        deadline = time.monotonic() + policy.callers_max_wait
        while True:
            now = time.monotonic()
            quiet = outbox.last_submit + policy.callers_quiet - now
            if quiet <= 0 or now >= deadline or outbox.stopping:
                return
            time.sleep(min(quiet, deadline - now))

    def _queues(self) -> list[Queue]:
        # Memory first: a crash would lose what it holds.
        spool = self.outbox.spool
        return [self.outbox.memory] if spool is None else [self.outbox.memory, spool]

    def _queue_of(self, item: Item) -> Queue:
        spool = self.outbox.spool
        return spool if item.on_disk and spool is not None else self.outbox.memory

    def _next(self, now: float) -> Item | None:
        if now < self.paused_until or self.outbox.ledger.held_until(now) is not None:
            return None
        self.gate = self.outbox.gates.blocked(now)
        if self.gate is not None:
            self._sweep(now)
            return None
        # Alerts first, then the oldest.
        for alerts_only in (True, False):
            for queue in self._queues():
                item = queue.claim(now, alerts_only=alerts_only)
                if item is not None:
                    return item
        return None

    def blocked_until(self, now: float) -> float:
        """Until when nothing can be tried (a set-up error, a login pause, a backoff)."""
        gate = self.gate if self.gate is not None and self.gate.holds(now) else None
        return max(self.paused_until, gate.until if gate is not None else 0.0)

    def _sweep(self, now: float) -> None:
        """While a gate holds, what passed ``max_age`` becomes a dead letter (every 10
        polls, at most once a minute): any process on the spool does it."""
        if now - self._swept < min(60.0, 10 * self.policy.poll) or self.gate is None:
            return
        self._swept = now
        max_age = self.outbox.settings.max_age
        why = f"gave up after max_age ({max_age:g} s); {self.outbox.gates.describe(self.gate)}"
        for queue in self._queues():
            swept = queue.expire(now, max_age, why)
            if swept:
                self.outbox.counters.add("dead", swept)
                log.warning("postbud gave up on %d queued message(s): %s", swept, why)

    def _idle(self, now: float) -> None:
        dues = [q.next_due() for q in self._queues()]
        dues += [self.outbox.ledger.held_until(now)]
        blocked = self.blocked_until(now)
        if blocked > now:
            dues = [blocked]
        soonest = min((d for d in dues if d is not None), default=now + self.policy.poll)
        self.outbox.sleep(min(self.policy.poll, max(0.01, soonest - now)))

    # -- one message --------------------------------------------------------------------

    def _handle(self, item: Item) -> None:
        envelope = item.envelope
        alert = item.priority == Priority.ALERT
        now = time.time()
        ledger = self.outbox.ledger
        if item.on_disk and item.key in self._delivered:  # sent already: settle it only
            self._sent(self._queue_of(item), item, self._delivered[item.key])
            return
        reservation: Reservation | None = None
        try:
            try:  # the recipients are counted first: no other process passes the limit
                reservation = ledger.reserve(len(envelope.recipients), alert, now)
                if self._transport is None:
                    self._transport = self._make_transport()
                result = deliver(self._transport, envelope, self._renewer(item))
            except BaseException as exc:
                # postbud's errors come before anyone got the message (deliver raises
                # only then): the count is given back. A lost lease (raised before a
                # later transaction) or an interrupt may come after some recipients got
                # it: the count stays, the safe side.
                if reservation is not None and isinstance(exc, PostbudError):
                    ledger.settle(reservation, 0, time.time())
                raise
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
            until = ledger.hold(now) if exc.code == 550 else now + (exc.retry_after or 60)
            self.outbox.counters.add("held")
            self._retry(item, envelope.recipients, item.attempts, until, exc.code, str(exc))
        except InvalidMessageError as exc:
            self._dead(item, None, str(exc), None)
        except ConfigurationError as exc:
            # A set-up the worker cannot send with (an SSL context loosened after it was
            # given, an outbox opened only to read): hold the queue, warn, try later.
            self._hold_for_configuration(item, exc, now)
        except DeliveryError as exc:
            self._failed(item, exc, now)
        else:
            self.outbox.gates.succeeded()
            self._settle(item, result, reservation, now)

    def _renewer(self, item: Item) -> Callable[[], None]:
        queue = self._queue_of(item)
        first = [True]

        def renew() -> None:  # before every transaction but the first (just claimed)
            if first[0]:
                first[0] = False
            elif not queue.renew(item, time.time()):
                raise _LostLease

        return renew

    def _hold_for_configuration(self, item: Item, exc: ConfigurationError, now: float) -> None:
        pause = self.policy.setup_pause
        if now >= self.paused_until:
            log.warning(
                "postbud cannot deliver for %s (%s); queued mail waits %.0f s before the next try.",
                self.outbox.settings.username,
                exc,
                pause,
            )
        self.paused_until = max(self.paused_until, now + pause)
        self._retry(item, item.envelope.recipients, item.attempts, now + pause, None, str(exc))

    def _failed(self, item: Item, exc: DeliveryError, now: float) -> None:
        settings = self.outbox.settings
        # A refused login, a failed connection or a TLS failure is the account's, not
        # the message's: the row waits behind the gate (every row, every process) and
        # is never dead-lettered for it; only max_age ends it.
        gate = self.outbox.gates.failed(exc, now)
        old = now - item.created > settings.max_age
        if gate is not None and not old:
            self.gate = gate
            self.outbox.counters.add("retried")
            # Due at once: the gate sets the time (a process with other credentials or
            # another TLS set-up, which the gate does not stop, may send it now).
            recipients = item.envelope.recipients
            self._retry(item, recipients, item.attempts + 1, now, exc.code, str(exc))
        elif gate is not None or (exc.retryable and old):
            because = self.outbox.gates.describe(gate) if gate is not None else exc.description
            why = f"gave up after max_age ({settings.max_age:g} s): {because}"
            self._dead(item, exc.code, why, exc.hint)
        elif not exc.retryable:
            self._dead(item, exc.code, exc.description, exc.hint)
        else:
            self.outbox.counters.add("retried")
            attempts = item.attempts + 1
            when_next = now + self.policy.delay(attempts, exc.retry_after)
            self._retry(item, item.envelope.recipients, attempts, when_next, exc.code, str(exc))

    def _settle(self, item: Item, result: SendResult, reservation: Reservation, now: float) -> None:
        outbox = self.outbox
        accepted = len(result.accepted)
        retry = [r for r, (code, text) in result.refused.items() if temporary(code, text)]
        final = {r: v for r, v in result.refused.items() if r not in retry}
        queue = self._queue_of(item)
        if final:  # those recipients will never get it: a dead letter says why
            code, text = next(iter(final.values()))
            outbox.counters.add("dead")
            copy = item.envelope.with_recipients(tuple(final))
            # Kept in the spool whenever there is one, even for a message sent from
            # memory (the spool was busy at submit): memory keeps no dead letters.
            keeper: Queue = outbox.spool if outbox.spool is not None else outbox.memory
            reply = f"{code} {summary(text)}"
            keeper.dead_copy(copy, item.priority, item.created, now, code, reply, item.attempts + 1)
            log.warning(
                "postbud: %s was refused for %s: %s",
                item.envelope.message_id,
                ", ".join(final),
                reply,
            )
        if retry:  # a split message retries only the recipients not yet accepted
            outbox.ledger.settle(reservation, accepted, now)
            outbox.counters.add("retried")
            codes = [result.refused[r] for r in retry]
            quota = any(code == 550 for code, _ in codes)
            when = (
                outbox.ledger.hold(now)
                if quota
                else now + self.policy.delay(item.attempts + 1, None)
            )
            self._retry(item, tuple(retry), item.attempts + 1, when, codes[0][0], codes[0][1])
        else:
            outbox.counters.add("sent")  # once a message, when it is settled
            # One commit on disk: the row is gone and its recipients are counted, or neither.
            self._sent(queue, item, lambda db: outbox.ledger.settle(reservation, accepted, now, db))

    def _sent(self, queue: Queue, item: Item, record: Callable[[Any], None]) -> None:
        """Settle a delivered row; if the spool cannot take it, remember the row so
        that this process never sends it again (a damaged file is salvaged without it)."""
        try:
            queue.sent(item, record)
        except Exception:
            if item.on_disk:
                self._delivered[item.key] = record
                ids = self.outbox.delivered_ids
                if len(ids) >= 10_000:
                    ids.pop()
                ids.add(item.envelope.message_id)
            raise
        self._delivered.pop(item.key, None)

    def _retry(
        self,
        item: Item,
        recipients: tuple[str, ...],
        attempts: int,
        when: float,
        code: int | None,
        error: str,
    ) -> None:
        outbox = self.outbox
        if not item.on_disk and outbox.stopping:
            # close() moved what waited in memory to the spool, but not this message,
            # then being tried: after close() it goes there itself.
            item.envelope = item.envelope.with_recipients(recipients)
            item.attempts, item.next_try = attempts, when
            if outbox.keep_item(item):
                outbox.memory.done(item)
                return
        self._queue_of(item).retry(item, recipients, attempts, when, code, error)

    def _dead(self, item: Item, code: int | None, error: str, hint: str | None) -> None:
        self.outbox.counters.add("dead")
        log.warning(
            "postbud gave up on %s to %s: %s",
            item.envelope.message_id,
            ", ".join(item.envelope.recipients),
            error,
        )
        self._queue_of(item).dead(item, code, error, hint, time.time())
