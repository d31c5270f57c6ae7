"""The alert handler's tick: what its thread does about once a second.

It takes the counts ``emit`` gathered, describes the occurrences, merges them into the
alert state (the spool, shared by processes, or memory), lets the policy decide which
mails go out, renders them (the handler's ``render_mail``) and queues them in the
Mailer's outbox as alerts, in the same spool transaction as the state.
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
from postbud._outbox import QueueBusy

from ._policy import Counted, FpState, Mail, ScopeState, decide
from ._record import Fingerprint, describe, digest_key, masked
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
        if self._store is not None and not self._store.shared:
            self._store = None
            self._fallback_since = None

    def _state_store(self) -> Store:
        """Made at the first tick: the scope includes the level and the name, which
        dictConfig sets after construction. Handlers with the same account,
        recipients, tag, level, subject and name share state on a spool."""
        if self._store is None:
            outbox = self.handler.mailer.outbox
            if not outbox.shared:
                self._store = MemoryStore()
            else:
                s = self.handler.mailer.settings
                scope = "|".join(
                    (
                        s.username.lower(),
                        ",".join(sorted(self.handler.to)),
                        s.alert_tag or "",
                        logging.getLevelName(self.handler.level),
                        self.handler.subject,
                        self.handler.name or "",
                    )
                )
                owner = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
                self._spool_store = SpoolStore(outbox, scope, owner)
                self._store = self._spool_store
        return self._store

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

    def _apply(
        self, store: Store, counted: dict[str, Counted], now: float, force: bool, leaving: bool
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
            for mail in mails:
                envelope = self.envelope(mail)
                if enqueue is not None:  # in the transaction that updated the state
                    enqueue(envelope)
                envelopes.append(envelope)
                kinds.append(mail.kind)

        self._next_due = store.run(
            counted, now, s.alert_cooldown, decide_now, commit, force=force, leaving=leaving
        )
        self.handler._count_mails(kinds)
        if store.shared:
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
