"""``AlertHandler``: error alerts by mail that never slow the app or flood an inbox.

``emit`` runs on the caller's thread and only fingerprints the record and counts it
in memory (a few microseconds, no I/O, never raises). A thread of the handler's own
wakes at once for a fingerprint it has not seen and otherwise about once a second:
it describes the records it was given, merges the counts into the alert state (the
spool, shared by processes, or memory), lets the policy (``_alert_policy``) decide
which mails go out, renders them and hands them to the Mailer's outbox as alerts.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from postbud import _fork
from postbud._address import parse_addresses
from postbud._config import Settings
from postbud._mailer import Mailer
from postbud._message import Envelope
from postbud._outbox import QueueBusy, at_exit_first
from postbud.errors import ConfigurationError

from ._policy import Counted, FpState, Mail, ScopeState, decide
from ._record import Fingerprint, describe, digest_key, fingerprint
from ._render import DEFAULT_SUBJECT, check_template, render
from ._store import Enqueue, MemoryStore, SpoolStore, Store

__all__ = ["AlertHandler", "recipients_of"]

log = logging.getLogger("postbud")

#: How often the handler's thread looks at its state without being woken.
TICK = 1.0
#: At most one tick per this many seconds, however many new errors arrive.
MIN_GAP = 0.1
#: How often a handler on a shared spool looks for other processes' pending counts.
LOOK = 5.0
#: After this many ticks in a row could not use the spool, alert state moves to memory;
#: the spool is tried again after RETRY_SPOOL seconds.
MAX_BUSY_TICKS = 3
RETRY_SPOOL = 60.0

_local = threading.local()  # .busy: this thread is running the handler's own code
_live: weakref.WeakSet[AlertHandler] = weakref.WeakSet()
#: Set once the interpreter exits; flush() and close() then share one deadline.
_exiting = threading.Event()
_exit_deadline = [0.0]


def _ours(record: logging.LogRecord) -> bool:
    """Records to ignore: postbud's own, and those logged while handler code runs."""
    name = record.name if isinstance(record.name, str) else ""
    return (
        name == "postbud"
        or name.startswith("postbud.")
        or getattr(_local, "busy", False)
        or threading.current_thread().name.startswith("postbud-")
    )


@dataclass
class _Delta:
    """Occurrences of one fingerprint counted by ``emit`` since the last tick."""

    count: int
    first_at: float
    last_at: float
    first: logging.LogRecord
    first_message: str
    last: logging.LogRecord
    last_message: str

    def add(self, record: logging.LogRecord, message: str, at: float) -> None:
        self.count += 1
        self.last_at = at
        self.last, self.last_message = record, message

    def merged(self, newer: _Delta) -> _Delta:
        self.count += newer.count
        self.last_at, self.last, self.last_message = newer.last_at, newer.last, newer.last_message
        return self

    def counted(self) -> Counted:
        first = _described(self.first, self.first_message, self.first_at)
        last = first
        if self.count > 1:
            last = _described(self.last, self.last_message, self.last_at)
        return Counted(self.count, self.first_at, self.last_at, first, last)


def _described(record: logging.LogRecord, message: str, at: float) -> dict[str, Any]:
    try:
        return describe(record, message, at)
    except Exception as exc:  # a record we cannot describe is still counted and mailed
        log.exception("postbud could not describe a log record")
        return {"message": f"(postbud could not describe this record: {exc!r})", "at": at}


def recipients_of(to: str | Sequence[str] | None, account: str) -> tuple[str, ...]:
    """Alert recipients from a handler's ``to`` (default: the account itself), checked
    now: a mistake is a ``ConfigurationError`` at construction, not at the first error."""
    items = [to] if isinstance(to, str) else list(to or [account])
    try:
        found = [a.addr_spec for item in items for a in parse_addresses(str(item))]
    except ValueError as exc:
        raise ConfigurationError(f"to: {exc}") from None
    if not found:
        raise ConfigurationError("to: no address given.")
    return tuple(dict.fromkeys(a.lower() for a in found))


class AlertHandler(logging.Handler):
    """A ``logging.Handler`` that mails errors, with storm control.

    The first occurrence of an error goes out at once; repeats within
    ``alert_cooldown`` are counted and reported in one follow-up; past ``alert_cap``
    mails an hour everything goes into one hourly digest. Counts are never dropped.

    Args:
        to: Who gets the alerts (a string, comma-separated, or a list); default: the
            sending account itself.
        subject: Template with ``{level}``, ``{logger}``, ``{message}``,
            ``{exc_type}``, ``{host}`` (default ``"[{level}] {logger}: {message}"``;
            ``alert_tag`` is put in front as ``[tag]``).
        level: Lowest level mailed (default ``ERROR``).
        mailer: A Mailer to send with (the handler never closes it). Without one the
            handler builds its own from ``**settings`` over the ``POSTBUD_*``
            environment variables (a setting given here wins), and closes it in
            ``close()``.
        clock: Seconds since the epoch for the policy (tests move time with it).
        **settings: The settings vocabulary (``username``, ``app_password``,
            ``alert_cooldown``, ``alert_cap``, ``alert_tag``, ``spool``...).

    Raises:
        ConfigurationError: At construction, for any bad value.
    """

    def __init__(
        self,
        to: str | Sequence[str] | None = None,
        subject: str | None = None,
        level: int | str = logging.ERROR,
        *,
        mailer: Mailer | None = None,
        clock: Callable[[], float] | None = None,
        **settings: Any,
    ) -> None:
        super().__init__()
        # Usable by close() and logging.shutdown() even if the checks below fail.
        self._closed = True
        self._keeping = False
        self._new_thread_state()
        try:
            self.setLevel(level)
        except (ValueError, TypeError):
            raise ConfigurationError(
                f"level: {level!r} is not a logging level; use ERROR, CRITICAL, WARNING "
                "or a number."
            ) from None
        if mailer is not None and settings:
            raise ConfigurationError(
                f"AlertHandler takes either mailer= or settings ({', '.join(settings)}), "
                "not both: set them on the Mailer."
            )
        # Everything is checked before a Mailer (and perhaps its worker) exists.
        # Settings given here win over POSTBUD_* variables, which fill in the rest:
        # the app password can stay in the environment, out of the logging config.
        config = mailer.settings if mailer is not None else Settings.from_env(**settings)
        self.to = recipients_of(to, config.username)
        self.subject = DEFAULT_SUBJECT if subject is None else subject
        check_template(self.subject)
        self._owns_mailer = mailer is None
        self.mailer = mailer if mailer is not None else Mailer(config)
        self._clock = clock or time.time
        self._store: Store | None = None  # made at the first tick (see _state_store)
        self._spool_store: SpoolStore | None = None
        self._fallback_since: float | None = None
        self._deltas: dict[Fingerprint, _Delta] = {}
        self._seen: set[Fingerprint] = set()
        self._counts = {"records": 0, "first": 0, "follow-up": 0, "digest": 0}
        self._next_due: float | None = None
        self._last_look = 0.0
        self._busy_ticks = 0
        self._flushed_at: float | None = None
        self._mails_since_flush = 0
        self._closed = False
        _fork.register(self)
        _live.add(self)

    def _new_thread_state(self) -> None:
        # Reentrant: a signal handler that logs may run inside emit() on this thread.
        self._deltas_lock = threading.RLock()
        self._start_lock = threading.RLock()
        self._tick_lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        level = logging.getLevelName(self.level)
        return f"<postbud.AlertHandler {level} to {', '.join(self.to)}>"

    # -- the caller's thread ------------------------------------------------------------

    def handle(self, record: logging.LogRecord) -> logging.LogRecord | bool:  # type: ignore[override]
        # No handler lock: emit is thread-safe on its own, and a caller must never
        # wait behind flush() or close() holding it.
        if _ours(record):
            return False
        result = self.filter(record)
        if result:
            self.emit(result if isinstance(result, logging.LogRecord) else record)
        return result

    def emit(self, record: logging.LogRecord) -> None:
        """Count ``record`` in memory; the handler's thread does the rest."""
        if self._closed:
            return
        _local.busy = True  # a record logged by a __str__ we call now is ignored
        try:
            key = fingerprint(record)
            message = record.getMessage()
            at = self._clock()
            with self._deltas_lock:
                self._counts["records"] += 1
                delta = self._deltas.get(key)
                if delta is None:
                    self._deltas[key] = _Delta(1, at, at, record, message, record, message)
                else:
                    delta.add(record, message, at)
                new = key not in self._seen
                if new:
                    if len(self._seen) > 10_000:
                        self._seen.clear()
                    self._seen.add(key)
            if new:  # a first occurrence goes out now, not at the next tick
                self._kick()
        except Exception:
            self.handleError(record)
        finally:
            _local.busy = False

    def _kick(self) -> None:
        with self._start_lock:
            if self._thread is None and not self._closed:
                thread = threading.Thread(target=self._run, name="postbud-alerts", daemon=True)
                try:
                    thread.start()
                except RuntimeError:  # Python 3.12+ at exit: close() does the work
                    return
                self._thread = thread
                if not self._keeping:
                    self._keeping = True
                    self.mailer.outbox.keep_alive(True)
        self._wake.set()

    # -- the handler's thread -----------------------------------------------------------

    def _run(self) -> None:
        while True:
            self._wake.wait(TICK)
            self._wake.clear()
            if self._closed:
                break
            started = time.monotonic()
            self.tick()
            spare = MIN_GAP - (time.monotonic() - started)
            if spare > 0:
                time.sleep(spare)

    def tick(self, *, force: bool = False) -> None:
        """Do now what the handler's thread does about once a second.

        Merges the counts, sends what is due (first alerts, follow-ups whose cooldown
        ended, the digest of a window that ended). ``force=True`` (``flush``) also
        reports pending counts before their cooldown ends and sends the digest now,
        unless other processes' handlers share the spool and still run. Tests that
        move the clock call this instead of waiting. Never raises.
        """
        self._locked_tick(force=force, leaving=False)

    def _locked_tick(self, *, force: bool, leaving: bool) -> None:
        with self._tick_lock:
            _local.busy = True
            try:
                self._tick(force, leaving)
            except Exception:  # a bug must not stop alerting for good
                log.exception("postbud's alert handler hit an unexpected error")
            finally:
                _local.busy = False

    def _state_store(self) -> Store:
        """Made at the first tick: the scope includes the level and the name, which
        dictConfig sets after construction. Handlers with the same account,
        recipients, tag, level, subject and name share state on a spool."""
        if self._store is None:
            outbox = self.mailer.outbox
            if not outbox.shared:
                self._store = MemoryStore()
            else:
                s = self.mailer.settings
                scope = "|".join(
                    (
                        s.username.lower(),
                        ",".join(sorted(self.to)),
                        s.alert_tag or "",
                        logging.getLevelName(self.level),
                        self.subject,
                        self.name or "",
                    )
                )
                owner = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
                self._spool_store = SpoolStore(outbox, scope, owner)
                self._store = self._spool_store
        return self._store

    def _tick(self, force: bool, leaving: bool) -> None:
        with self._deltas_lock:
            deltas, self._deltas = self._deltas, {}
        now = self._clock()
        store = self._state_store()
        due = self._next_due is not None and now >= self._next_due
        look = store.shared and time.monotonic() - self._last_look >= LOOK
        if not (deltas or force or leaving or due or look or self._fallback_since):
            return
        try:
            # Described here, before any spool transaction: the lock stays short.
            counted = {digest_key(fp): d.counted() for fp, d in deltas.items()}
            self._back_to_spool(now)
            self._apply(self._state_store(), counted, now, force, leaving)
        except QueueBusy as exc:
            self._put_back(deltas)
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
            self._put_back(deltas)  # counted again at the next tick, never lost
            raise
        else:
            self._busy_ticks = 0
            self._last_look = time.monotonic()

    def _apply(
        self, store: Store, counted: dict[str, Counted], now: float, force: bool, leaving: bool
    ) -> None:
        s = self.mailer.settings
        digests_only = self.mailer.outbox.alerts_over_share()
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
                envelope = self._envelope(mail)
                if enqueue is not None:  # in the transaction that updated the state
                    enqueue(envelope)
                envelopes.append(envelope)
                kinds.append(mail.kind)

        self._next_due = store.run(
            counted, now, s.alert_cooldown, decide_now, commit, force=force, leaving=leaving
        )
        with self._deltas_lock:
            for kind in kinds:
                self._counts[kind] += 1
            self._mails_since_flush += len(envelopes)
        if store.shared:
            self.mailer.outbox.stored(len(envelopes))
        else:
            for envelope in envelopes:
                self.mailer.enqueue(envelope, "alert")

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

    def _put_back(self, deltas: dict[Fingerprint, _Delta]) -> None:
        with self._deltas_lock:
            for key, old in deltas.items():
                newer = self._deltas.get(key)
                self._deltas[key] = old.merged(newer) if newer is not None else old

    def _envelope(self, mail: Mail) -> Envelope:
        s = self.mailer.settings
        headers = {"X-Postbud-Alert": mail.kind, "X-Postbud-Count": str(mail.count)}
        if mail.key:
            headers["X-Postbud-Fingerprint"] = mail.key
        try:
            subject, text, html = render(
                mail,
                template=self.subject,
                tag=s.alert_tag,
                cooldown=s.alert_cooldown,
                cap=s.alert_cap,
            )
            return self.mailer.build(list(self.to), subject, text, html, headers=headers)
        except Exception as exc:  # the count must still reach someone
            log.exception("postbud could not render an alert; sending a plain one")
            tag = f"[{s.alert_tag}] " if s.alert_tag else ""
            text = (
                f"postbud could not render this alert ({type(exc).__name__}). It reports "
                f"{mail.count} occurrence(s) of errors logged on {socket.gethostname()}; "
                "see the application's own logs for the details.\n"
            )
            subject = f"{tag}postbud alert ({mail.kind}, {mail.count} occurrence(s))"
            return self.mailer.build(list(self.to), subject, text, headers=headers)

    # -- lifecycle -----------------------------------------------------------------------

    def flush(self) -> None:
        """Send pending follow-ups and the digest now and wait up to ``exit_timeout``.

        On a spool shared with other processes whose handlers still run, the counts
        are merged and those processes send the mails when they are due.
        """
        if self._closed:
            return
        self.tick(force=True)
        self.mailer.flush(_left_at_exit())
        with self._deltas_lock:
            self._flushed_at, self._mails_since_flush = time.monotonic(), 0

    def close(self) -> None:
        """Send what is pending (as ``flush``), stop the thread, close an owned Mailer."""
        if not self._closed:
            self._closed = True
            self._wake.set()
            self._locked_tick(force=True, leaving=True)
            with self._start_lock:
                if self._keeping:
                    self._keeping = False
                    self.mailer.outbox.keep_alive(False)
            timeout = _left_at_exit()
            recent = self._flushed_at is not None and time.monotonic() - self._flushed_at < 1
            if timeout is None and recent and not self._mails_since_flush:
                timeout = 0.0  # logging.shutdown() flushed just now: do not wait twice
            if self._owns_mailer:
                self.mailer.close(timeout)
            else:
                self.mailer.flush(timeout)
        super().close()

    def stats(self) -> dict[str, int]:
        """Records counted, and mails queued by kind (``first``, ``follow-up``, ``digest``)."""
        with self._deltas_lock:
            return dict(self._counts)

    def _after_fork(self) -> None:
        # The parent's counts are the parent's to report; the child starts over.
        self._new_thread_state()
        self._deltas = {}
        self._seen = set()
        self._counts = dict.fromkeys(self._counts, 0)
        if self._store is not None and not self._store.shared:
            self._store = None  # the parent's memory state would be reported twice
            self._fallback_since = None


def _left_at_exit() -> float | None:
    """At exit, the time left of the one shared deadline; else None (exit_timeout)."""
    if not _exiting.is_set():
        return None
    return max(0.0, _exit_deadline[0] - time.monotonic())


def _report_at_exit() -> None:
    # Run by the exit hook before the outboxes drain: the last follow-ups and digests
    # are queued while the outbox workers run (they stay up for logging.shutdown(),
    # which then flushes and closes the handlers within the same deadline).
    handlers = [h for h in list(_live) if not h._closed]
    if handlers:
        wait = max(h.mailer.settings.exit_timeout for h in handlers)
        _exit_deadline[0] = time.monotonic() + wait
    for handler in handlers:
        handler.tick(force=True)
    _exiting.set()


at_exit_first(_report_at_exit)
