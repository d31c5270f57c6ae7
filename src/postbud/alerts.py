"""``AlertHandler``: error alerts by mail that never slow the app or flood an inbox.

``emit`` runs on the caller's thread and only fingerprints the record and counts it
in memory (a few microseconds, no I/O, never raises). A thread of the handler's own
wakes at once for a fingerprint it has not seen and otherwise about once a second:
it merges the counts into the alert state (the spool, shared by processes, or
memory), lets the policy (``_alert_policy``) decide which mails go out, renders
them and hands them to the Mailer's outbox as ``priority="alert"``.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from . import _fork
from ._alert_policy import Delta, FpState, Mail, ScopeState, decide
from ._alert_record import Fingerprint, digest_key, fingerprint
from ._alert_render import DEFAULT_SUBJECT, check_template, render
from ._alert_store import MemoryStore, SpoolStore, Store
from ._config import Settings
from ._mailer import Mailer
from ._message import Envelope, parse_addresses
from ._spool import ALERT, SpoolBusy
from .errors import ConfigurationError

__all__ = ["AlertHandler"]

log = logging.getLogger("postbud")

#: How often the handler's thread looks at its state without being woken.
TICK = 1.0
#: How often a handler on a shared spool looks for other processes' pending counts.
LOOK = 5.0
#: After this many ticks in a row could not use the spool, alert state moves to memory.
MAX_BUSY_TICKS = 3

_local = threading.local()  # .busy: this thread is running the handler's own code
_live: weakref.WeakSet[AlertHandler] = weakref.WeakSet()
#: Set once the interpreter exits: flush() and close() then no longer wait.
_exiting = threading.Event()


def _ours(record: logging.LogRecord) -> bool:
    """Records the handler must ignore: postbud's own, and those its own threads emit."""
    name = record.name if isinstance(record.name, str) else ""
    return (
        name == "postbud"
        or name.startswith("postbud.")
        or getattr(_local, "busy", False)
        or threading.current_thread().name.startswith("postbud-")
    )


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
        self._owns_mailer = mailer is None
        if mailer is None:
            # Settings given here win over POSTBUD_* variables, which fill in the rest:
            # the app password can stay in the environment, out of the logging config.
            mailer = Mailer(Settings.from_env(**settings))
        self.mailer = mailer
        s = mailer.settings
        self.to = self._recipients(to, s.username)
        self.subject = DEFAULT_SUBJECT if subject is None else subject
        check_template(self.subject)
        self._clock = clock or time.time
        spool = mailer._spool
        scope = "|".join((s.username.lower(), ",".join(sorted(self.to)), s.alert_tag or ""))
        self._store: Store = SpoolStore(spool, scope) if spool is not None else MemoryStore()
        self._deltas: dict[Fingerprint, Delta] = {}
        self._seen: set[Fingerprint] = set()
        self._counts = {"records": 0, "first": 0, "follow-up": 0, "digest": 0}
        self._next_due: float | None = None
        self._last_look = 0.0
        self._busy_ticks = 0
        self._closed = False
        _fork.register(self)
        _live.add(self)

    def _new_thread_state(self) -> None:
        self._deltas_lock = threading.Lock()
        self._tick_lock = threading.Lock()
        self._start_lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def _recipients(to: str | Sequence[str] | None, account: str) -> tuple[str, ...]:
        items = [to] if isinstance(to, str) else list(to or [account])
        try:
            found = [a.addr_spec for item in items for a in parse_addresses(str(item))]
        except ValueError as exc:
            raise ConfigurationError(f"to: {exc}") from None
        if not found:
            raise ConfigurationError("to: no address given.")
        return tuple(dict.fromkeys(a.lower() for a in found))

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
        try:
            key = fingerprint(record)
            message = record.getMessage()
            at = self._clock()
            with self._deltas_lock:
                self._counts["records"] += 1
                delta = self._deltas.get(key)
                if delta is None:
                    self._deltas[key] = Delta(1, at, at, record, message, record, message)
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

    def _kick(self) -> None:
        if self._thread is None and not self._closed:
            with self._start_lock:
                if self._thread is None:
                    thread = threading.Thread(target=self._run, name="postbud-alerts", daemon=True)
                    try:
                        thread.start()
                    except RuntimeError:  # Python 3.12+ at exit: close() does the work
                        return
                    self._thread = thread
                    if not self._keeping:
                        self._keeping = True
                        self.mailer._outbox.keepers += 1
        self._wake.set()

    # -- the handler's thread -----------------------------------------------------------

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(TICK)
            self._wake.clear()
            if not self._closed:
                self.tick()

    def tick(self, *, force: bool = False) -> None:
        """Do now what the handler's thread does about once a second.

        Merges the counts, sends what is due (first alerts, follow-ups whose cooldown
        ended, the digest of a window that ended). ``force=True`` (``flush``) also
        reports pending counts before their cooldown ends and sends the digest now.
        Tests that move the clock call this instead of waiting. Never raises.
        """
        with self._tick_lock:
            _local.busy = True
            try:
                self._tick(force)
            except Exception:  # a bug must not stop alerting for good
                log.exception("postbud's alert handler hit an unexpected error")
            finally:
                _local.busy = False

    def _tick(self, force: bool) -> None:
        with self._deltas_lock:
            deltas, self._deltas = self._deltas, {}
        now = self._clock()
        due = self._next_due is not None and now >= self._next_due
        look = self._store.shared and time.monotonic() - self._last_look >= LOOK
        if not (deltas or force or due or look):
            return
        s = self.mailer.settings
        digests_only = self.mailer._ledger.alerts_over_share(time.time())
        envelopes: list[Envelope] = []

        def decide_now(
            scope: ScopeState, rows: dict[str, FpState], firsts: dict[str, dict[str, Any]]
        ) -> list[Mail]:
            return decide(
                scope,
                rows,
                firsts,
                now,
                cooldown=s.alert_cooldown,
                cap=s.alert_cap,
                digests_only=digests_only,
                force=force,
            )

        def commit(mails: list[Mail], db: Any) -> None:
            for mail in mails:
                envelope = self._envelope(mail)
                envelopes.append(envelope)
                if db is not None:  # in the transaction that updated the state
                    assert isinstance(self._store, SpoolStore)
                    self._store.spool.insert(db, envelope, ALERT, time.time())
                self._counts[mail.kind] += 1

        keyed = {digest_key(fp): d for fp, d in deltas.items()}
        try:
            self._next_due = self._store.run(keyed, now, s.alert_cooldown, decide_now, commit)
        except SpoolBusy as exc:
            self._put_back(deltas)
            self._busy_ticks += 1
            if self._busy_ticks >= MAX_BUSY_TICKS:
                log.warning(
                    "postbud's alert handler cannot use the spool (%s); alert state is "
                    "kept in this process's memory from now on.",
                    exc,
                )
                self._store = MemoryStore()
            return
        self._busy_ticks = 0
        self._last_look = time.monotonic()
        if self._store.shared:
            self.mailer._outbox.stored(len(envelopes))
        else:
            for envelope in envelopes:
                self.mailer.enqueue(envelope, "alert")

    def _put_back(self, deltas: dict[Fingerprint, Delta]) -> None:
        with self._deltas_lock:
            for key, old in deltas.items():
                newer = self._deltas.get(key)
                if newer is not None:  # counted since: one delta with both counts
                    old.count += newer.count
                    old.last_at, old.last, old.last_message = (
                        newer.last_at,
                        newer.last,
                        newer.last_message,
                    )
                self._deltas[key] = old

    def _envelope(self, mail: Mail) -> Envelope:
        s = self.mailer.settings
        subject, text, html = render(
            mail, template=self.subject, tag=s.alert_tag, cooldown=s.alert_cooldown, cap=s.alert_cap
        )
        headers = {"X-Postbud-Alert": mail.kind, "X-Postbud-Count": str(mail.count)}
        if mail.key:
            headers["X-Postbud-Fingerprint"] = mail.key
        return self.mailer.build(list(self.to), subject, text, html, headers=headers)

    # -- lifecycle -----------------------------------------------------------------------

    def flush(self) -> None:
        """Send pending follow-ups and the digest now, and wait up to ``exit_timeout``."""
        if self._closed:
            return
        self.tick(force=True)
        self.mailer.flush(0.0 if _exiting.is_set() else None)

    def close(self) -> None:
        """Send what is pending (as ``flush``), stop the thread, close an owned Mailer."""
        if not self._closed:
            self._closed = True
            self._wake.set()
            self.tick(force=True)
            if self._keeping:
                self._keeping = False
                self.mailer._outbox.keepers -= 1
            timeout = 0.0 if _exiting.is_set() else None
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


@atexit.register
def _report_at_exit() -> None:
    # Registered after the outbox's own hook, so it runs first: the last follow-ups and
    # digests are queued while the outbox worker still runs and drains them. Later,
    # logging.shutdown() calls flush()/close(), which then do not wait a second time.
    for handler in list(_live):
        if not handler._closed:
            handler.tick(force=True)
    _exiting.set()
