"""The alert handler's tick: what its thread does about once a second.

It takes the counts ``emit`` gathered, describes the occurrences, merges them into the
alert state (the spool, shared by processes; Redis, shared by a fleet; or memory), lets
the policy decide which mails go out, renders them (the handler's ``render_mail``) and
queues them in the Mailer's outbox as alerts, in the same spool transaction as the
state (on Redis: right after its transaction).

When the shared state cannot be used, the tick falls back to this process's memory:
after a few busy ticks for the spool (tried again after ``RETRY_SPOOL``), at once for
Redis (tried again at every tick; its circuit breaker makes that free while Redis is
away). Back on Redis, the memory's unreported counts and its mails are merged into the
fleet's state (``_redis_store``).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from postbud._message import Envelope
from postbud._outbox import QueueBusy, RedisState, StateUnavailable

from ._carry import Carry, LocalStore
from ._policy import Counted, FpState, Mail, ScopeState, decide
from ._record import Fingerprint, describe, digest_key, masked
from ._redis_store import RedisStore, Unsure
from ._store import Enqueue, MemoryStore, SpoolStore, Store

if TYPE_CHECKING:  # the handler owns its ticker; the ticker reads the handler's state
    from ._handler import AlertHandler

__all__ = ["OTHER", "Delta", "Ticker"]

log = logging.getLogger("postbud")

#: The fingerprint of what ``emit`` counted beyond ``MAX_HELD`` distinct ones in a tick.
OTHER: Fingerprint = ("(other errors)", "", 0, "")

#: In a storm of distinct errors, the tick describes them in slices of this many
#: seconds and lets the application's threads run between slices (Python's own
#: switch interval is 5 ms): a thread logging in a tight loop waits at most a slice.
SLICE = 0.0005
PAUSE = 0.02
#: How often a handler on a shared spool looks for other processes' pending counts.
LOOK = 5.0
#: After this many ticks in a row could not use the spool, alert state moves to memory;
#: the spool is tried again after RETRY_SPOOL seconds.
MAX_BUSY_TICKS = 3
RETRY_SPOOL = 60.0


@dataclass
class Delta:
    """Occurrences of one fingerprint counted by ``emit`` since the last tick."""

    count: int
    first_at: float
    last_at: float
    first: logging.LogRecord
    first_message: str
    last: logging.LogRecord
    last_message: str
    #: What the handler's ``capture`` hook kept of the first occurrence (JSON-able).
    captured: Any = None
    #: Counts what came beyond the handler's ``MAX_HELD`` distinct fingerprints.
    other: bool = False

    def add(self, record: logging.LogRecord, message: str, at: float) -> None:
        self.count += 1
        self.last_at = at
        self.last, self.last_message = record, message

    def merged(self, newer: Delta) -> Delta:
        self.count += newer.count
        self.last_at, self.last, self.last_message = newer.last_at, newer.last, newer.last_message
        return self

    def counted(self, mask: Callable[[str], str]) -> Counted:
        """The occurrences, described, every text masked with ``mask`` (the secrets the
        Mailer knows, in every spelling) before it is stored or mailed."""
        first = masked(_described(self.first, self.first_message, self.first_at), mask)
        if self.captured is not None:
            first["captured"] = self.captured
        last = first
        if self.count > 1:
            last = masked(_described(self.last, self.last_message, self.last_at), mask)
        if self.other:
            for shown in (first, last):
                shown["message"] = (
                    f"{self.count} occurrence(s) of errors of other kinds: more distinct "
                    "errors came in one second than postbud follows one by one. This one: "
                    + str(shown.get("message", ""))
                )
        return Counted(self.count, self.first_at, self.last_at, first, last)


def _memo(mask: Callable[[str], str]) -> Callable[[str], str]:
    """``mask`` remembering its answers for one tick: most texts of a description
    (host, argv, logger, level, thread) are the same in every record."""
    seen: dict[str, str] = {}

    def masked(text: str) -> str:
        found = seen.get(text)
        if found is None:
            found = seen[text] = mask(text)
        return found

    return masked


def _described(record: logging.LogRecord, message: str, at: float) -> dict[str, Any]:
    try:
        return describe(record, message, at)
    except Exception as exc:  # a record we cannot describe is still counted and mailed
        log.exception("postbud could not describe a log record")
        return {"message": f"(postbud could not describe this record: {exc!r})", "at": at}


class Ticker:
    """The tick of one AlertHandler: its alert store and what it decided last."""

    def __init__(self, handler: AlertHandler) -> None:
        self.handler = handler
        self._store: Store | None = None  # made at the first tick (see _state_store)
        self._spool_store: SpoolStore | None = None
        self._redis_store: RedisStore | None = None
        self._local: LocalStore | None = None  # while Redis is unreachable
        self._fallback_since: float | None = None
        self._next_due: float | None = None
        self._last_look = 0.0
        self._busy_ticks = 0

    @property
    def store(self) -> Store | None:
        """The alert store, once the first tick made it."""
        return self._store

    def forget(self) -> None:
        """In a forked child: the parent's memory state would be reported twice."""
        if self._redis_store is not None:
            # What the parent holds for Redis is the parent's; the child's handler is
            # another owner (its own heartbeat), made at its first tick.
            self._store = self._redis_store = self._local = None
            self._fallback_since = None
            return
        if self._store is not None and not self._store.shared:
            self._store = None
            self._fallback_since = None

    def _state_store(self) -> Store:
        """Made at the first tick: the scope includes the level and the name, which
        dictConfig sets after construction. Handlers with the same account,
        recipients, tag, level, subject and name share state on a spool."""
        if self._store is None:
            mailer = self.handler.mailer
            outbox = mailer.outbox
            state = outbox.ledger.state
            if isinstance(state, RedisState):  # with or without a spool
                self._redis_store = RedisStore(
                    state,
                    mailer.settings.username,
                    self._scope(),
                    self._owner(),
                    lambda envelope: mailer.enqueue(envelope, "alert"),
                )
                self._store = self._redis_store
            elif not outbox.shared:
                self._store = MemoryStore()
            else:
                self._spool_store = SpoolStore(outbox, self._scope(), self._owner())
                self._store = self._spool_store
        return self._store

    def _scope(self) -> str:
        s = self.handler.mailer.settings
        return "|".join(
            (
                s.username.lower(),
                ",".join(sorted(self.handler.to)),
                s.alert_tag or "",
                logging.getLevelName(self.handler.level),
                self.handler.subject,
                self.handler.name or "",
            )
        )

    def _owner(self) -> str:
        return f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"

    def run(self, force: bool, leaving: bool, paced: bool = False) -> None:
        """One tick: merge the counts, decide, render and queue the mails."""
        handler = self.handler
        deltas = handler._take_counts()
        now = handler._now()
        store = self._state_store()
        due = self._next_due is not None and now >= self._next_due
        look = store.shared and time.monotonic() - self._last_look >= LOOK
        if not (deltas or force or leaving or due or look or self._fallback_since):
            return
        try:
            # Described here, before any spool transaction: the lock stays short.
            mask = _memo(handler.mailer.masker())
            counted = {}
            slice_start = time.perf_counter()
            for fp, d in deltas.items():
                counted[digest_key(fp)] = d.counted(mask)
                if paced and time.perf_counter() - slice_start > SLICE:
                    handler._hurry.wait(PAUSE)  # the GIL goes to the application
                    slice_start = time.perf_counter()
            if self._redis_store is not None:
                self._redis_tick(self._redis_store, counted, now, force, leaving)
            else:
                self._back_to_spool(now)
                self._apply(self._state_store(), counted, now, force, leaving)
        except QueueBusy as exc:
            handler._put_back(deltas)
            self._busy_ticks += 1
            if self._busy_ticks >= MAX_BUSY_TICKS and self._spool_store is not None:
                log.warning(
                    "postbud's alert handler cannot use the spool (%s); alert state is "
                    "kept in this process's memory and the spool is tried again in %.0f s.",
                    exc,
                    RETRY_SPOOL,
                )
                self._store, self._fallback_since = MemoryStore(), time.monotonic()
                self._busy_ticks = 0
        except BaseException:
            handler._put_back(deltas)  # counted again at the next tick, never lost
            raise
        else:
            self._busy_ticks = 0
            self._last_look = time.monotonic()

    def _redis_tick(
        self,
        redis: RedisStore,
        counted: dict[str, Counted],
        now: float,
        force: bool,
        leaving: bool,
    ) -> None:
        """A tick on Redis; while it is unreachable, in memory (fail open, see above)."""
        local = self._local
        try:
            carry = None
            if local is not None:
                redis.state.ping()  # while Redis is away, memory is not copied for nothing
                carry = local.carry(now)
            self._apply(redis, counted, now, force, leaving, carry)
        except Unsure as exc:
            # This tick's counts and what memory held wait in the store until Redis
            # says whether it applied the write: memory starts again from its marks.
            local = self._fall_back(redis, now, str(exc), fresh=True)
            counted = {}
        except StateUnavailable as exc:
            local = self._fall_back(redis, now, str(exc))
        except QueueBusy:
            if not leaving:
                raise  # the counts are put back for the next tick
            local = self._fall_back(redis, now, "")
        else:
            if local is not None:
                log.info("postbud's alert handler merged its counts back into Redis.")
                self._store, self._local, self._fallback_since = redis, None, None
            return
        if leaving:  # nothing waits for a Redis that may not come back before exit
            local.absorb(redis.abandon(), now, self.handler.mailer.settings.alert_cooldown)
        self._apply(local, counted, now, force, leaving)

    def _fall_back(
        self, redis: RedisStore, now: float, why: str, fresh: bool = False
    ) -> LocalStore:
        """The memory store for the time Redis is away (made once per outage)."""
        if self._local is None or fresh:
            if self._local is None and why:
                log.warning(
                    "postbud's alert handler cannot use its shared state on Redis (%s); "
                    "this process counts and mails alerts alone until Redis answers, "
                    "then merges what it has not reported.",
                    why,
                )
            cooldown = self.handler.mailer.settings.alert_cooldown
            self._local = LocalStore(redis.marks(now), cooldown)
            self._store = self._local
            if self._fallback_since is None:
                self._fallback_since = time.monotonic()
        return self._local

    def _apply(
        self,
        store: Store,
        counted: dict[str, Counted],
        now: float,
        force: bool,
        leaving: bool,
        carry: Carry | None = None,
    ) -> None:
        s = self.handler.mailer.settings
        digests_only = self.handler.mailer.outbox.alerts_over_share()
        envelopes: list[Envelope] = []
        kinds: list[str] = []

        def decide_now(
            scope: ScopeState,
            rows: dict[str, FpState],
            firsts: dict[str, dict[str, Any]],
            forced: bool,
        ) -> list[Mail]:
            return decide(
                scope,
                rows,
                firsts,
                now,
                cooldown=s.alert_cooldown,
                cap=s.alert_cap,
                digests_only=digests_only,
                force=forced,
            )

        def commit(mails: list[Mail], enqueue: Enqueue | None) -> None:
            envelopes.clear()  # a Redis transaction that conflicted is tried again
            kinds.clear()
            for mail in mails:
                envelope = self.envelope(mail)
                if enqueue is not None:  # spool: in the state's transaction; Redis: after it
                    enqueue(envelope)
                envelopes.append(envelope)
                kinds.append(mail.kind)

        if isinstance(store, RedisStore):
            self._next_due = store.run(
                counted,
                now,
                s.alert_cooldown,
                decide_now,
                commit,
                force=force,
                leaving=leaving,
                carry=carry,
            )
        else:
            self._next_due = store.run(
                counted, now, s.alert_cooldown, decide_now, commit, force=force, leaving=leaving
            )
        self.handler._count_mails(kinds)
        if isinstance(store, RedisStore):
            pass  # queued by the store, right after Redis took the state
        elif store.shared:
            self.handler.mailer.outbox.stored(len(envelopes))
        else:
            for envelope in envelopes:
                self.handler.mailer.enqueue(envelope, "alert")

    def _back_to_spool(self, now: float) -> None:
        """After a while in memory, report what memory holds and use the spool again."""
        fallback = self._store
        if self._fallback_since is None or self._spool_store is None:
            return
        if time.monotonic() - self._fallback_since < RETRY_SPOOL:
            return
        assert fallback is not None
        self._apply(fallback, {}, now, True, False)  # pending counts go out as mails
        self._store, self._fallback_since = self._spool_store, None

    def envelope(self, mail: Mail) -> Envelope:
        """The mail as an envelope (rendered by the handler's ``render_mail``)."""
        s = self.handler.mailer.settings
        headers = {"X-Postbud-Alert": mail.kind, "X-Postbud-Count": str(mail.count)}
        if mail.key:
            headers["X-Postbud-Fingerprint"] = mail.key
        try:
            subject, text, html = self.handler.render_mail(mail)
            return self.handler.mailer.build(
                list(self.handler.to), subject, text, html, headers=headers
            )
        except Exception as exc:  # the count must still reach someone
            log.exception("postbud could not render an alert; sending a plain one")
            tag = f"[{s.alert_tag}] " if s.alert_tag else ""
            text = (
                f"postbud could not render this alert ({type(exc).__name__}). It reports "
                f"{mail.count} occurrence(s) of errors logged on {socket.gethostname()}; "
                "see the application's own logs for the details.\n"
            )
            subject = f"{tag}postbud alert ({mail.kind}, {mail.count} occurrence(s))"
            return self.handler.mailer.build(list(self.handler.to), subject, text, headers=headers)
